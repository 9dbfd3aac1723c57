-- What the review service learnt from other services' events, kept as received: a case's reference
-- (notification.CaseOpened, which comes before the review starts) and each reviewer's name
-- (allocation.ReviewerRegistered). Not projections of the review's own events: a rebuild keeps them.
CREATE TABLE case_references (
    case_id uuid PRIMARY KEY,
    reference text
);
CREATE TABLE reviewer_names (
    user_id text PRIMARY KEY,
    name text NOT NULL
);

-- The reviewer's own list (GET /reviews/mine): why a review is paused and whether the QA panel
-- returned it. Rows of reviews from before this migration fill in on `leder rebuild review`.
ALTER TABLE reviews
    ADD COLUMN pause_reason text,
    ADD COLUMN returned_by_qa boolean NOT NULL DEFAULT false,
    ADD COLUMN qa_comments text;
CREATE INDEX reviews_reviewer_idx ON reviews (reviewer_user_id);
CREATE INDEX reviews_senior_reviewer_idx ON reviews (senior_reviewer_user_id);
