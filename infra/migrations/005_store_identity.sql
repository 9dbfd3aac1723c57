-- Which database this store is (issue 20): a restore from a backup gives the same rows in another
-- database (pg_dump and pg_restore: another OID) or another cluster history (a file-level or
-- point-in-time restore: another timeline, possibly another system identifier). At start-up the
-- service compares what it finds with what this row says (infra.fencing): a difference starts a new
-- store epoch, carried in every envelope recorded from then on, and keeps the store fenced until it
-- has been compared with its topic (verified_at) and, if behind, recovered from it (`leder recover`).
CREATE TABLE store_identity (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    epoch text NOT NULL,
    database_oid bigint NOT NULL,
    system_identifier text,
    timeline_id integer,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    -- Set when the store was found to hold everything its topic holds; NULL after a restore was seen.
    verified_at timestamptz,
    -- What the last start-up saw that differed, for the operator.
    changed text
);
