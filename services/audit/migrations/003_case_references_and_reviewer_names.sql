-- People name a case by its reference (LDR-2026-00042), carried by its CaseOpened event, and a person
-- by name, carried for reviewers by ReviewerRegistered: both read from the log by index, not by a scan
-- of every entry's JSON.
CREATE INDEX audit_log_case_reference_idx ON audit_log (((envelope::jsonb -> 'data') ->> 'reference'))
    WHERE event_type = 'notification.CaseOpened';
CREATE INDEX audit_log_case_opened_idx ON audit_log (case_id) WHERE event_type = 'notification.CaseOpened';
CREATE INDEX audit_log_reviewer_name_idx ON audit_log (((envelope::jsonb -> 'data') ->> 'user_id'), position)
    WHERE event_type = 'allocation.ReviewerRegistered';
