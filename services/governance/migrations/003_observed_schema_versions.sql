-- Each observed event keeps the schema version it was published in, so that reports and pages read
-- it through the event registry, upcast to the version the code knows, rather than guessing its shape.
-- Every event observed before this column existed was a version 1 (no event had a version 2 yet).
ALTER TABLE observed_events ADD COLUMN schema_version integer NOT NULL DEFAULT 1 CHECK (schema_version >= 1);
