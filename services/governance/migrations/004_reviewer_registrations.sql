-- Reviewers' names are read from their allocation.ReviewerRegistered events through the event registry
-- (services/governance/case_details.py), whatever version each was published in, rather than by a
-- key of the published JSON: this index finds those events (one per registration, a few hundred)
-- among all the observed ones without a scan.
CREATE INDEX observed_events_registrations_idx ON observed_events (occurred_at)
    WHERE event_type = 'allocation.ReviewerRegistered';
-- The index on the version 1 JSON key `user_id` (migration 002) is no longer read.
DROP INDEX IF EXISTS observed_events_reviewer_idx;
