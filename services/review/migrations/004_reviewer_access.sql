-- Why the reviewer's and senior reviewer's access ended with their allocation (review.ReviewerAccessEnded);
-- NULL while they have it. The reviewer's own list leaves out what they may no longer open. Rows of
-- reviews from before this migration fill in on `leder rebuild review`.
ALTER TABLE reviews ADD COLUMN access_ended text;
