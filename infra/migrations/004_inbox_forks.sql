-- Forks (issue 20): two different events under one stream version or one source sequence.
-- What each consumer applied (or set aside) at each version of a stream: the event's id and the SHA-256
-- of its bytes, so that another event at a version already applied is told from a redelivery of the same
-- one. One row per event consumed, as the inbox has; written in the transaction of the event's effects.
CREATE TABLE inbox_versions (
    consumer text NOT NULL,
    stream text NOT NULL,
    stream_version integer NOT NULL,
    event_id text,
    content_hash text,
    PRIMARY KEY (consumer, stream, stream_version)
);

-- Each fork met: the event this service holds at that place and the other one. An open fork (not
-- cleared) keeps the service's /readyz false until an operator acknowledges it.
CREATE TABLE inbox_forks (
    id bigserial PRIMARY KEY,
    consumer text NOT NULL,
    source text,
    source_sequence bigint,
    stream text,
    stream_version integer,
    logged_event_id text,
    logged_hash text,
    other_event_id text,
    other_hash text NOT NULL,
    reason text NOT NULL,
    topic text,
    kafka_partition integer,
    kafka_offset bigint,
    seen_at timestamptz NOT NULL DEFAULT now(),
    cleared_at timestamptz,
    cleared_how text
);
-- The same fork met again (the other event redelivered) is one fork.
CREATE UNIQUE INDEX inbox_forks_once_idx
    ON inbox_forks (consumer, other_hash, coalesce(logged_hash, ''), coalesce(logged_event_id, ''));
CREATE INDEX inbox_forks_open_idx ON inbox_forks (id) WHERE cleared_at IS NULL;
