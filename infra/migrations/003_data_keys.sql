-- Each service's per-case data keys (infra.sealing), stored only wrapped by the case's key-encryption
-- key, which lives in the key manager, never here. Shredding sets wrapped to NULL and destroyed_at; the
-- row stays as the record that the case was shredded (and so that its key is never made again).
-- The notification service's first table of this name held its keys unwrapped (issue 15); the system
-- was not live, so that table goes.
DROP TABLE IF EXISTS data_keys;
CREATE TABLE data_keys (
    key_id text PRIMARY KEY,
    wrapped bytea,
    created_at timestamptz NOT NULL DEFAULT now(),
    destroyed_at timestamptz,
    CHECK (destroyed_at IS NULL OR wrapped IS NULL)
);
