-- The audit signing key lives only outside the database (LEDER_AUDIT_SIGNING_KEY_FILE): a key its owner
-- can read lets the owner rewrite the log and re-sign it. Whoever kept the key here must export it to
-- a file (PEM, PKCS8) before this migration runs, or their earlier checkpoints verify with no key.
DROP TABLE IF EXISTS signing_key;
