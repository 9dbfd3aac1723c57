-- The leaf hashes in log order, readable from the index alone: signing a checkpoint and building a
-- proof read every leaf hash, which otherwise means reading every entry's whole row.
CREATE INDEX audit_log_leaves_idx ON audit_log (position) INCLUDE (leaf_hash);
