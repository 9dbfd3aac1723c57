-- Data keys: the platform's table (infra/migrations/003_data_keys.sql), wrapped by keys held outside
-- the database. This service's first table held them unwrapped; it is gone (issue 15).

-- Projections (rebuilt by `leder rebuild notification`).
CREATE TABLE cases (
    case_id uuid PRIMARY KEY,
    status text NOT NULL,
    review_type text,
    focused_reasons text[] NOT NULL DEFAULT '{}',
    flags text[] NOT NULL DEFAULT '{}',
    unknown_diagnoses text[] NOT NULL DEFAULT '{}',
    notified_at timestamptz NOT NULL,
    facts jsonb NOT NULL,
    notifiers jsonb NOT NULL DEFAULT '[]',
    reviewer_user_id text,
    senior_reviewer_user_id text,
    personal_destroyed boolean NOT NULL DEFAULT false,
    updated_at timestamptz NOT NULL
);
CREATE INDEX cases_notified_idx ON cases (notified_at);

-- Each notification's first outcome: what a re-send of the same notification_id answers.
CREATE TABLE notifications (
    notification_id uuid PRIMARY KEY,
    outcome text NOT NULL,
    case_id uuid,
    received_at timestamptz NOT NULL
);

-- For finding the same person notified again. Normalised identifying values, kept only while the
-- case's key lives (removed on destruction, and not rebuilt without the key).
CREATE TABLE person_index (
    case_id uuid NOT NULL,
    match_kind text NOT NULL,
    match_value text NOT NULL,
    PRIMARY KEY (match_kind, match_value, case_id)
);
