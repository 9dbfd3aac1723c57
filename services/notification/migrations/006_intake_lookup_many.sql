-- Intake's look-up for many notifications at once (the partner consumer's batch): 005's intake_lookup
-- for each, under every lock of all of them, taken together in one order. The one-notification form
-- is this with arrays of one, so the match is written once.
CREATE FUNCTION intake_lookup_many(
    lock_keys text[], asked uuid[], nhs text[], names_and_dates text[], skip_nhs_cases boolean[], year int
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
         WHERE p.match_kind = 'nhs_number' AND p.match_value = a.nhs
         ORDER BY pc.notified_at LIMIT 1),
        (SELECT p.case_id FROM person_index p JOIN cases pc USING (case_id)
         WHERE p.match_kind = 'name_and_dates' AND p.match_value = a.name_and_dates
           AND NOT (a.skip AND EXISTS (
               SELECT 1 FROM person_index q WHERE q.case_id = p.case_id AND q.match_kind = 'nhs_number'))
         ORDER BY pc.notified_at LIMIT 1),
        (SELECT r.last_number FROM case_references r WHERE r.year = intake_lookup_many.year)
    FROM unnest(asked, nhs, names_and_dates, skip_nhs_cases)
         WITH ORDINALITY AS a(notification_id, nhs, name_and_dates, skip, ord)
    LEFT JOIN notifications n ON n.notification_id = a.notification_id
    LEFT JOIN cases c ON c.case_id = n.case_id
    ORDER BY a.ord;
END
$$;

DROP FUNCTION intake_lookup(text[], uuid, text, text, boolean, int);
