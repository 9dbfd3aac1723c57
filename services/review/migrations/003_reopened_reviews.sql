-- A case reopened after its review was approved (review.ReviewReopened): the review is back in progress
-- with its reviewer, and the reviewer's list says why until it is submitted again. Rows of reviews from
-- before this migration fill in on `leder rebuild review`.
ALTER TABLE reviews ADD COLUMN reopened_reason text;
