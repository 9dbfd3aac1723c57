-- The audit log: every event of every service, once, in arrival order. Each entry is a leaf of a
-- Merkle tree (RFC 9162); the database refuses to change or remove an entry.
CREATE TABLE audit_log (
    position bigint PRIMARY KEY,
    event_id uuid NOT NULL UNIQUE,
    source text NOT NULL,
    source_sequence bigint NOT NULL,
    event_type text NOT NULL,
    stream_id text NOT NULL,
    case_id uuid,
    occurred_at timestamptz NOT NULL,
    actor_id text NOT NULL,
    actor_role text,
    envelope text NOT NULL,
    content_hash bytea NOT NULL,
    leaf_hash bytea NOT NULL,
    -- The tree head after this entry (MTH of entries 0..position), so verification can name the first
    -- entry from which the stored history and the recomputed one part.
    root_after bytea NOT NULL,
    logged_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (source, source_sequence)
);
CREATE INDEX audit_log_case_idx ON audit_log (case_id, position);
CREATE INDEX audit_log_actor_idx ON audit_log (actor_id, position);

CREATE TRIGGER audit_log_is_append_only
    BEFORE UPDATE OR DELETE ON audit_log FOR EACH ROW EXECUTE FUNCTION refuse_event_change();
CREATE TRIGGER audit_log_is_never_truncated
    BEFORE TRUNCATE ON audit_log FOR EACH STATEMENT EXECUTE FUNCTION refuse_event_change();

-- The right edge of the tree (its perfect subtrees, largest first), so each append costs O(log n).
CREATE TABLE log_frontier (only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row), hashes bytea[] NOT NULL,
                           sizes bigint[] NOT NULL);

-- Signed checkpoints: (tree size, root hash, time), signed with the audit service's Ed25519 key.
CREATE TABLE checkpoints (
    tree_size bigint NOT NULL,
    root_hash bytea NOT NULL,
    signed_at timestamptz NOT NULL,
    signature bytea NOT NULL,
    public_key bytea NOT NULL,
    PRIMARY KEY (tree_size, signed_at)
);
CREATE TRIGGER checkpoints_are_append_only
    BEFORE UPDATE OR DELETE ON checkpoints FOR EACH ROW EXECUTE FUNCTION refuse_event_change();

-- The signing key when none is configured (LEDER_AUDIT_SIGNING_KEY_FILE is the better home).
CREATE TABLE signing_key (only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row), private_key bytea NOT NULL);
