-- Pages name a case by its reference and a reviewer by name: both are read from the observed events
-- (notification.CaseOpened, allocation.ReviewerAllocated, allocation.ReviewerRegistered, ...), kept as
-- received, so these indexes find a case's or a reviewer's facts without a scan.
CREATE INDEX observed_events_case_idx ON observed_events (case_id, occurred_at) WHERE case_id IS NOT NULL;
CREATE INDEX observed_events_reviewer_idx ON observed_events ((data->>'user_id'))
    WHERE event_type = 'allocation.ReviewerRegistered';

-- How many times the QA panel returned a case's review for rework (projection).
ALTER TABLE qa_cases ADD COLUMN times_returned integer NOT NULL DEFAULT 0;
UPDATE qa_cases SET times_returned = (
    SELECT count(*) FROM events
    WHERE events.case_id = qa_cases.case_id AND events.event_type = 'governance.ReviewReturnedByQA'
);

-- Each panel's agenda, item by item, with the panel's decision once made (projection).
CREATE TABLE qa_agenda (
    panel_id uuid NOT NULL,
    case_id uuid NOT NULL,
    added_at timestamptz NOT NULL,
    submitted_on date,
    decision text,
    quality_rating integer,
    themes text[] NOT NULL DEFAULT '{}',
    comments text,
    decided_at timestamptz,
    decided_by text,
    PRIMARY KEY (panel_id, case_id)
);
CREATE INDEX qa_agenda_case_idx ON qa_agenda (case_id);

-- Fill it from the events already recorded: each agenda item and the first decision on it after.
INSERT INTO qa_agenda (panel_id, case_id, added_at, submitted_on, decision, quality_rating, themes, comments,
                       decided_at, decided_by)
SELECT DISTINCT ON (panel_id, case_id)
    (a.envelope::jsonb->'data'->>'panel_id')::uuid AS panel_id,
    a.case_id,
    (a.envelope::jsonb->>'occurred_at')::timestamptz,
    (SELECT (s.envelope::jsonb->'data'->>'submitted_on')::date FROM events s
     WHERE s.case_id = a.case_id AND s.event_type = 'governance.ReviewAwaitingQA'
       AND s.source_sequence < a.source_sequence
     ORDER BY s.source_sequence DESC LIMIT 1),
    CASE d.event_type WHEN 'governance.ReviewApprovedByQA' THEN 'approved'
                      WHEN 'governance.ReviewReturnedByQA' THEN 'returned' END,
    (d.envelope::jsonb->'data'->>'quality_rating')::integer,
    coalesce(ARRAY(SELECT jsonb_array_elements_text(d.envelope::jsonb->'data'->'themes')), '{}'),
    d.envelope::jsonb->'data'->>'comments',
    (d.envelope::jsonb->>'occurred_at')::timestamptz,
    d.envelope::jsonb->'actor'->>'id'
FROM events a
LEFT JOIN LATERAL (
    SELECT * FROM events x
    WHERE x.case_id = a.case_id
      AND x.event_type IN ('governance.ReviewApprovedByQA', 'governance.ReviewReturnedByQA')
      AND x.envelope::jsonb->'data'->>'panel_id' = a.envelope::jsonb->'data'->>'panel_id'
      AND x.source_sequence > a.source_sequence
    ORDER BY x.source_sequence LIMIT 1
) d ON true
WHERE a.event_type = 'governance.ReviewAddedToPanelAgenda'
ORDER BY panel_id, case_id, a.source_sequence DESC;
