-- Each event keeps the signature it arrived with (infra/signing.py): the publishing service's Ed25519
-- signature over the topic's name and the envelope's bytes, the id of the key that made it, and the
-- topic it was signed for. Not part of the entry's leaf hash: the log's hashes and the checkpoints
-- already signed stay as they were, and the envelope bytes the signature covers are the hashed ones,
-- so a verifier checks both (the entry is in the log; the service that published it signed it).
-- Empty for entries from before, the audit service's own events (its checkpoint signature vouches for
-- them) and events fetched by reconciliation over HTTP (the feed carries no signature).
ALTER TABLE audit_log
    ADD COLUMN event_signature text,
    ADD COLUMN event_key_id text,
    ADD COLUMN event_topic text;
