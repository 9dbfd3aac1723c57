-- The reference people name a case by (LDR-<year notified>-<five digits>), carried by CaseOpened.
-- Unique: two cases can never be given the same one, whatever happens to the handler's lock.
ALTER TABLE cases ADD COLUMN reference text CONSTRAINT cases_reference_key UNIQUE;

-- The last number given in each year (a projection of CaseOpened.reference, rebuilt with `cases`):
-- the intake handler reads it, under the intake lock, to give the next case the next number.
CREATE TABLE case_references (
    year int PRIMARY KEY,
    last_number int NOT NULL
);
