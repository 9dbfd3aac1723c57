-- What the LAC's pages show beside a case and a reviewer.

-- The case reference and place of death come from notification.CaseOpened, not from an allocation
-- event, so they live apart from the rebuilt projections: the consumer writes them once, in the
-- inbox transaction that queues the case, and a rebuild (which empties only the projection tables)
-- keeps them. Both nullable: cases queued before references existed have none.
CREATE TABLE opened_cases (
    case_id uuid PRIMARY KEY,
    reference text,
    place_of_death text
);

-- Projection columns, filled from allocation.ReviewerAllocated (and so rebuilt with the rest).
ALTER TABLE reviewers ADD COLUMN last_supported_on date;
ALTER TABLE allocation_cases ADD COLUMN allocated_on date;

-- Fill them for what is already recorded.
UPDATE reviewers r SET last_supported_on = s.last
FROM (
    SELECT (envelope::jsonb #>> '{data,senior_reviewer_id}')::uuid AS reviewer_id,
           max((envelope::jsonb #>> '{data,allocated_on}')::date) AS last
    FROM events WHERE event_type = 'allocation.ReviewerAllocated' GROUP BY 1
) s
WHERE r.reviewer_id = s.reviewer_id;

UPDATE allocation_cases c SET allocated_on = a.allocated_on
FROM (
    SELECT DISTINCT ON (stream_id) stream_id, (envelope::jsonb #>> '{data,allocated_on}')::date AS allocated_on
    FROM events WHERE event_type = 'allocation.ReviewerAllocated'
    ORDER BY stream_id, stream_version DESC
) a
WHERE c.case_id::text = a.stream_id AND c.status <> 'waiting';

-- A reviewer's page and the supporting counts look cases up by who has them.
CREATE INDEX allocation_cases_reviewer_idx ON allocation_cases (reviewer_id) WHERE status = 'allocated';
CREATE INDEX allocation_cases_senior_idx ON allocation_cases (senior_reviewer_id) WHERE status = 'allocated';
