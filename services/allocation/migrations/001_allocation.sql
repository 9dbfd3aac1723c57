-- Projections of the allocation service (rebuilt by `leder rebuild allocation`).
CREATE TABLE reviewers (
    reviewer_id uuid PRIMARY KEY,
    user_id text NOT NULL UNIQUE,
    name text NOT NULL,
    organisations text[] NOT NULL,
    senior boolean NOT NULL,
    capacity integer NOT NULL,
    active boolean NOT NULL DEFAULT true,
    trained_on date,
    conflicts jsonb NOT NULL DEFAULT '[]',
    active_caseload integer NOT NULL DEFAULT 0,
    last_allocated_on date
);

CREATE TABLE allocation_cases (
    case_id uuid PRIMARY KEY,
    status text NOT NULL,
    notified_on date NOT NULL,
    deadline date NOT NULL,
    review_type text NOT NULL,
    focused_reasons text[] NOT NULL,
    organisations_involved text[] NOT NULL,
    reviewer_id uuid,
    senior_reviewer_id uuid,
    -- Cases handed back (a declared conflict) go to the front of the queue.
    returned_at timestamptz,
    waiting_since timestamptz NOT NULL
);
CREATE INDEX allocation_cases_queue_idx ON allocation_cases (status, returned_at, notified_on);
