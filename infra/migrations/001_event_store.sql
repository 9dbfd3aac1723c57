-- The service's system of record: an append-only log of events, ordered by a gapless sequence.

CREATE TABLE events (
    source_sequence bigint PRIMARY KEY,
    event_id uuid NOT NULL UNIQUE,
    stream_id text NOT NULL,
    stream_version integer NOT NULL,
    case_id uuid,
    event_type text NOT NULL,
    schema_version integer NOT NULL,
    recorded_at timestamptz NOT NULL,
    -- The canonical JSON of the whole envelope, byte for byte as it is published and hashed.
    envelope text NOT NULL,
    UNIQUE (stream_id, stream_version)
);
CREATE INDEX events_case_idx ON events (case_id, source_sequence) WHERE case_id IS NOT NULL;

-- One row: the last sequence number handed out. Appenders lock it for the rest of their transaction,
-- so sequence order is commit order and a reader following the sequence never skips a late commit.
CREATE TABLE event_sequence (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    last_value bigint NOT NULL
);
INSERT INTO event_sequence (last_value) VALUES (0);

CREATE FUNCTION refuse_event_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'events are immutable: % refused on %', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER events_are_append_only
    BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION refuse_event_change();
CREATE TRIGGER events_are_never_truncated
    BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_event_change();

-- The events table is the outbox: the relay keeps how far it has published to each topic.
CREATE TABLE relay_position (
    topic text PRIMARY KEY,
    published_through bigint NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Idempotent inbox: each consumed message, recorded in the transaction of its effects.
CREATE TABLE inbox (
    consumer text NOT NULL,
    message_id text NOT NULL,
    topic text NOT NULL,
    kafka_partition integer NOT NULL,
    kafka_offset bigint NOT NULL,
    handled_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, message_id)
);

-- Per consumed stream, the last version applied: events of a stream are applied in order, once.
CREATE TABLE inbox_streams (
    consumer text NOT NULL,
    stream text NOT NULL,
    last_version integer NOT NULL,
    PRIMARY KEY (consumer, stream)
);
