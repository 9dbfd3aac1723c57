-- The tree's inner nodes, as tiles (the C2SP tlog-tiles layout, tiles of height 8): tile `idx` of level
-- L >= 1 holds, left to right, the hashes of the perfect subtrees of 256^L leaves numbered 256*idx ..
-- 256*idx + 255, concatenated (32 bytes each). Level 0, the leaf hashes, is audit_log.leaf_hash (read
-- by position through audit_log_leaves_idx): storing it again would rewrite a growing tile on every
-- append. A full tile (256 hashes) never changes; a partial one, on the right edge, only grows, one
-- hash each time a subtree of its level is completed (services/audit/log.py, in the append's
-- transaction). With them an inclusion or consistency proof reads O(log n) nodes, not every leaf.
CREATE TABLE audit_tiles (
    level smallint NOT NULL CHECK (level >= 1),
    idx bigint NOT NULL CHECK (idx >= 0),
    hashes bytea NOT NULL CHECK (octet_length(hashes) BETWEEN 32 AND 8192 AND octet_length(hashes) % 32 = 0),
    PRIMARY KEY (level, idx)
);
-- Random bytes do not compress: stored out of line as they are.
ALTER TABLE audit_tiles ALTER COLUMN hashes SET STORAGE EXTERNAL;

CREATE FUNCTION audit_tile_only_grows() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.level <> OLD.level OR NEW.idx <> OLD.idx OR octet_length(OLD.hashes) >= 8192
       OR substring(NEW.hashes FOR octet_length(OLD.hashes)) <> OLD.hashes THEN
        RAISE EXCEPTION 'tile % of level % only grows until it is full', OLD.idx, OLD.level
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER audit_tiles_only_grow BEFORE UPDATE ON audit_tiles FOR EACH ROW EXECUTE FUNCTION audit_tile_only_grows();
CREATE TRIGGER audit_tiles_are_never_deleted
    BEFORE DELETE ON audit_tiles FOR EACH ROW EXECUTE FUNCTION refuse_event_change();
CREATE TRIGGER audit_tiles_are_never_truncated
    BEFORE TRUNCATE ON audit_tiles FOR EACH STATEMENT EXECUTE FUNCTION refuse_event_change();

-- The root of a perfect subtree from its 2^k lowest nodes (32 bytes each, left to right), RFC 9162.
CREATE FUNCTION audit_perfect_root(nodes bytea) RETURNS bytea LANGUAGE plpgsql IMMUTABLE STRICT AS $$
DECLARE
    level bytea := nodes;
    above bytea;
    n integer := octet_length(nodes) / 32;
BEGIN
    WHILE n > 1 LOOP
        above := ''::bytea;
        FOR i IN 0 .. n / 2 - 1 LOOP
            above := above || sha256('\x01'::bytea || substring(level FROM i * 64 + 1 FOR 64));
        END LOOP;
        level := above;
        n := n / 2;
    END LOOP;
    RETURN level;
END $$;

-- Every tile of a log whose entries were written without them (this migration's log, or one filled
-- in bulk): level 1 from each full block of 256 leaves, each further level from the full tiles below.
CREATE FUNCTION audit_fill_tiles() RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    below integer := 1;
    made bigint;
BEGIN
    IF EXISTS (SELECT 1 FROM audit_tiles) THEN
        RAISE EXCEPTION 'audit_tiles already holds tiles';
    END IF;
    IF (SELECT coalesce(max(position) + 1, 0) <> count(*) OR min(position) < 0 FROM audit_log) THEN
        RAISE EXCEPTION 'the audit log''s positions do not run 0..n-1: run leder audit verify';
    END IF;
    INSERT INTO audit_tiles (level, idx, hashes)
    SELECT 1, block >> 8, string_agg(root, ''::bytea ORDER BY block)
    FROM (SELECT position >> 8 AS block,
                 audit_perfect_root(string_agg(leaf_hash, ''::bytea ORDER BY position)) AS root
          FROM audit_log GROUP BY position >> 8 HAVING count(*) = 256) blocks
    GROUP BY block >> 8;
    LOOP
        INSERT INTO audit_tiles (level, idx, hashes)
        SELECT below + 1, idx >> 8, string_agg(audit_perfect_root(hashes), ''::bytea ORDER BY idx)
        FROM audit_tiles WHERE level = below AND octet_length(hashes) = 8192 GROUP BY idx >> 8;
        GET DIAGNOSTICS made = ROW_COUNT;
        EXIT WHEN made = 0;
        below := below + 1;
    END LOOP;
END $$;

SELECT audit_fill_tiles();
