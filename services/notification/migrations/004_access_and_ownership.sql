-- Access follows the allocation: why the allocation that named the reviewers ended (NULL while it
-- stands). The reviewer columns keep who had it after a review completed or the case closed (the
-- LAC's pages show who reviewed it); a case back in the queue has neither.
ALTER TABLE cases ADD COLUMN allocation_ended text;

-- A notification belongs to the organisation that sent it (its notifier, which the HTTP door checks
-- against the token): only that partner reads its outcome. The hash of its content tells an
-- identical re-send (idempotent) from the same id with other content (refused).
ALTER TABLE notifications
    ADD COLUMN organisation text,
    ADD COLUMN content_hash text,
    ADD COLUMN personal_destroyed boolean NOT NULL DEFAULT false;

-- The retention sweep's question: notifications that opened no case, oldest first, not yet shredded.
CREATE INDEX notifications_without_case_idx ON notifications (received_at)
    WHERE case_id IS NULL AND NOT personal_destroyed;
