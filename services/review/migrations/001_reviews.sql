-- The LAC's view of every review and its clock (rebuilt by `leder rebuild review`).
CREATE TABLE reviews (
    case_id uuid PRIMARY KEY,
    status text NOT NULL,
    review_type text NOT NULL,
    focused_reasons text[] NOT NULL,
    reviewer_user_id text NOT NULL,
    senior_reviewer_user_id text NOT NULL,
    notified_on date NOT NULL,
    deadline date NOT NULL,
    -- Closed pauses' days; an open pause is counted up to today when asked.
    paused_days integer NOT NULL DEFAULT 0,
    paused_since date,
    submitted_on date,
    completed_on date,
    lapses integer NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL
);
CREATE INDEX reviews_deadline_idx ON reviews (deadline);
