-- fdmd-backoffice schema 2: less work per stored record (issue 19, ingest rate).

-- 1. No foreign key from records to establishments. The key cost a lookup of the
-- establishment's row for every record stored; the only writer of `records` is the ingest,
-- which reads and locks that row (SELECT … FOR UPDATE) before it stores a segment, so no
-- record can name an establishment that does not exist. What the key also refused, deleting
-- an establishment or changing its id while records name it, is refused by a trigger instead
-- (one check per deleted or renamed establishment, not per record).
ALTER TABLE records DROP CONSTRAINT records_establishment_id_fkey;

CREATE FUNCTION establishments_keep_records() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' THEN
        IF NEW.id = OLD.id THEN
            RETURN NEW;
        END IF;
    END IF;
    IF EXISTS (SELECT 1 FROM records WHERE establishment_id = OLD.id) THEN
        RAISE EXCEPTION 'establishment % has stored records (% refused)', OLD.id, TG_OP;
    END IF;
    IF TG_OP = 'DELETE' THEN
        RETURN OLD;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER establishments_keep_records BEFORE DELETE OR UPDATE OF id ON establishments
    FOR EACH ROW EXECUTE FUNCTION establishments_keep_records();
-- TRUNCATE establishments was refused by the key too (records referenced it).
CREATE FUNCTION establishments_no_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'establishments are not truncated';
END $$;
CREATE TRIGGER establishments_no_truncate BEFORE TRUNCATE ON establishments
    FOR EACH STATEMENT EXECUTE FUNCTION establishments_no_truncate();

-- 2. The canonical bytes are stored as they are, never compressed: PostgreSQL would otherwise
-- try pglz on a row over ~2 KiB (a long order or a report) at every insert, for bytes that are
-- read back one establishment's period at a time (exports), never scanned in bulk. Rows stored
-- before keep their form; new ones are stored uncompressed (out of line when too long).
ALTER TABLE records ALTER COLUMN canonical SET STORAGE EXTERNAL;
