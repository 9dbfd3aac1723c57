-- What the governance service learnt from other services' events: the facts its reports are computed
-- from (with its own events), kept as received so any past period can be reported again.
CREATE TABLE observed_events (
    event_id uuid PRIMARY KEY,
    source text NOT NULL,
    event_type text NOT NULL,
    case_id uuid,
    occurred_at timestamptz NOT NULL,
    data jsonb NOT NULL
);
CREATE INDEX observed_events_time_idx ON observed_events (occurred_at);

-- Projections (rebuilt by `leder rebuild governance`).
CREATE TABLE qa_panels (panel_id uuid PRIMARY KEY, held_on date NOT NULL);
CREATE TABLE qa_cases (
    case_id uuid PRIMARY KEY,
    status text NOT NULL,
    panel_id uuid,
    submitted_on date,
    quality_rating integer,
    themes text[] NOT NULL DEFAULT '{}',
    closed_on date
);
CREATE TABLE actions (
    action_id uuid PRIMARY KEY,
    what text NOT NULL,
    organisation text NOT NULL,
    lead text NOT NULL,
    due_on date NOT NULL,
    case_ids uuid[] NOT NULL,
    themes text[] NOT NULL,
    status text NOT NULL,
    flagged_overdue boolean NOT NULL DEFAULT false,
    updates jsonb NOT NULL DEFAULT '[]',
    evidence text,
    completed_on date,
    agreed_on date NOT NULL
);
