-- The sequence table has one row, but until it is analysed the planner guesses 2,200, and an append's
-- generic plan (array parameters of unknown length times those rows) then looks dearer than a custom
-- one; PostgreSQL would plan every append afresh, which cost more server time than the append itself.
-- Analysed, the prepared append runs on its generic plan after the first five. (Autovacuum keeps the
-- statistics: the table never holds more than one live row.)
ANALYZE event_sequence;
