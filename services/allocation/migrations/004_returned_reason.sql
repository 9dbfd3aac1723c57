-- Why a case is back in the queue (allocation.CaseReturnedToQueue's reason: a declared conflict of
-- interest, or a reopened case its reviewers can no longer take), for the LAC's queue. A projection
-- column, filled by a rebuild; cleared when the case is allocated again.
ALTER TABLE allocation_cases ADD COLUMN returned_reason text;

UPDATE allocation_cases c SET returned_reason = r.reason
FROM (
    SELECT DISTINCT ON (stream_id) stream_id, envelope::jsonb #>> '{data,reason}' AS reason
    FROM events WHERE event_type = 'allocation.CaseReturnedToQueue'
    ORDER BY stream_id, stream_version DESC
) r
WHERE c.case_id::text = r.stream_id AND c.status = 'waiting' AND c.returned_at IS NOT NULL;
