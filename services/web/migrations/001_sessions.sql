-- Server-side sessions: the browser holds only a random id; the row is found by its hash, so a copy
-- of this table cannot be replayed as a cookie. No case data is kept here.
CREATE TABLE web_sessions (
    id_hash text PRIMARY KEY,
    data jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    last_seen timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX web_sessions_last_seen ON web_sessions (last_seen);
