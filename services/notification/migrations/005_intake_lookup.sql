-- Intake's first round trip: the transaction locks on what a notification is matched on (taken in
-- one order by everyone, so two intakes cannot wait on each other in a circle), then, under them, the
-- notification's earlier result, the cases matched by its NHS number and by its name and dates, and
-- the last reference number given in `year`. A PL/pgSQL function, because its query takes its
-- snapshot after the locks are held: one statement doing both would read what it saw before waiting
-- for them, and miss the case a concurrent intake of the same person has just opened.
CREATE FUNCTION intake_lookup(
    lock_keys text[], asked uuid, nhs text, name_and_dates text, skip_nhs_cases boolean, year int
) RETURNS TABLE (
    outcome text, case_id uuid, review_type text, focused_reasons text[], flags text[], reference text,
    by_nhs_number uuid, by_name_and_dates uuid, last_number int
) LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
BEGIN
    PERFORM pg_advisory_xact_lock(n)
    FROM (SELECT DISTINCT hashtextextended(k, 0) AS n FROM unnest(lock_keys) AS k ORDER BY n) AS sorted;
    RETURN QUERY
    SELECT n.outcome, n.case_id, c.review_type, c.focused_reasons, c.flags, c.reference,
        (SELECT p.case_id FROM person_index p JOIN cases pc USING (case_id)
         WHERE p.match_kind = 'nhs_number' AND p.match_value = nhs
         ORDER BY pc.notified_at LIMIT 1),
        (SELECT p.case_id FROM person_index p JOIN cases pc USING (case_id)
         WHERE p.match_kind = 'name_and_dates' AND p.match_value = intake_lookup.name_and_dates
           AND NOT (skip_nhs_cases AND EXISTS (
               SELECT 1 FROM person_index q WHERE q.case_id = p.case_id AND q.match_kind = 'nhs_number'))
         ORDER BY pc.notified_at LIMIT 1),
        (SELECT r.last_number FROM case_references r WHERE r.year = intake_lookup.year)
    FROM (SELECT asked AS notification_id) AS a
    LEFT JOIN notifications n ON n.notification_id = a.notification_id
    LEFT JOIN cases c ON c.case_id = n.case_id;
END
$$;
