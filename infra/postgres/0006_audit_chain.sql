-- The tamper-evident audit chain: a keyed journal, a head anchor the journal's writer cannot move backwards,
-- and a run index whose finished rows are final. See docs/audit.md for what this does and does not stop.

-- Which key signed a row (a fingerprint of it, never the key: the key lives outside the database).
-- Rows written before this migration have none and were hashed with plain SHA-256.
ALTER TABLE spine_journal ADD COLUMN key_id text;

-- One row per run: where its journal ends. Written only by the trigger below, in the transaction that
-- appends the rows, by the owner of these tables; the runtime role may read it and nothing else.
--   seq          the last row's seq
--   mac          the last row's hash
--   state        0 open, 1 dead-lettered (only a discard may follow), 2 closed (nothing may follow)
--   legacy_rows  how many rows the run had before the keyed chain (rows below it are verified unkeyed)
CREATE TABLE spine_journal_heads
(
    run_id      text        NOT NULL PRIMARY KEY,
    seq         integer     NOT NULL,
    mac         bytea       NOT NULL,
    state       smallint    NOT NULL,
    legacy_rows integer     NOT NULL DEFAULT 0,
    updated_at  timestamptz NOT NULL
);

-- The state a run's journal is in after a row of this kind.
CREATE FUNCTION spine_journal_state_after(kind smallint) RETURNS smallint
    LANGUAGE sql IMMUTABLE AS
$$
    SELECT CASE
        WHEN kind = 33 THEN 1::smallint               -- RunDeadLettered
        WHEN kind IN (30, 31, 32, 34) THEN 2::smallint -- RunCompleted, RunFailed, RunCancelled, RunDiscarded
        ELSE 0::smallint
    END
$$;

INSERT INTO spine_journal_heads (run_id, seq, mac, state, legacy_rows, updated_at)
SELECT DISTINCT ON (run_id) run_id, seq, hash, spine_journal_state_after(kind), seq + 1, now()
FROM spine_journal
ORDER BY run_id, seq DESC;

-- Every append must continue its run's head: the first new row follows the head's seq and links to its
-- mac, the rows of one statement follow each other, and nothing follows a finished run (a dead-lettered
-- one takes only its discard). Per statement, so a group commit of many runs costs one check.
CREATE FUNCTION spine_journal_advance_heads() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER AS
$$
DECLARE
    broken text;
    expected integer;
    advanced integer;
BEGIN
    -- Every row appended from now on is signed: an unsigned one (a silo of an older version) would make its run
    -- fail verification later, so it is refused now, while its writer can still tell.
    IF EXISTS (SELECT 1 FROM new_rows WHERE key_id IS NULL) THEN
        RAISE EXCEPTION 'spine_journal: rows must carry the key id of the key that signed them (is every silo upgraded?)'
            USING ERRCODE = 'SPJ02';
    END IF;

    -- Window functions, not a self-join: a replay's start copies thousands of rows of one run in one insert.
    SELECT r.run_id INTO broken
    FROM (
        SELECT run_id, seq, prev_hash, kind,
               lag(seq) OVER w AS previous_seq,
               lag(hash) OVER w AS previous_hash,
               max(spine_journal_state_after(kind)) OVER (w ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS state_before
        FROM new_rows
        WINDOW w AS (PARTITION BY run_id ORDER BY seq)
    ) r
    WHERE r.previous_seq IS NOT NULL
      AND (r.previous_seq <> r.seq - 1 OR r.previous_hash <> r.prev_hash
           OR r.state_before = 2 OR (r.state_before = 1 AND r.kind <> 34))
    LIMIT 1;
    IF broken IS NOT NULL THEN
        RAISE EXCEPTION 'spine_journal: the rows appended to run % do not follow each other', broken
            USING ERRCODE = 'SPJ01';
    END IF;

    WITH batch AS (
        SELECT run_id, min(seq) AS first_seq, max(seq) AS last_seq,
               (array_agg(prev_hash ORDER BY seq))[1] AS first_prev, (array_agg(hash ORDER BY seq DESC))[1] AS last_hash,
               (array_agg(kind ORDER BY seq))[1] AS first_kind, (array_agg(kind ORDER BY seq DESC))[1] AS last_kind
        FROM new_rows GROUP BY run_id
    ),
    started AS (
        INSERT INTO spine_journal_heads (run_id, seq, mac, state, updated_at)
        SELECT run_id, last_seq, last_hash, spine_journal_state_after(last_kind), now()
        FROM batch
        WHERE first_seq = 0 AND first_prev = '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea
        ON CONFLICT (run_id) DO NOTHING
        RETURNING 1
    ),
    continued AS (
        UPDATE spine_journal_heads h
        SET seq = b.last_seq, mac = b.last_hash, state = spine_journal_state_after(b.last_kind), updated_at = now()
        FROM batch b
        WHERE b.first_seq > 0 AND h.run_id = b.run_id AND h.seq = b.first_seq - 1 AND h.mac = b.first_prev
          AND (h.state = 0 OR (h.state = 1 AND b.first_kind = 34))
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM started) + (SELECT count(*) FROM continued), (SELECT count(*) FROM batch)
    INTO advanced, expected;

    IF advanced <> expected THEN
        -- The heads that did advance are visible here; the run that did not is the one named.
        SELECT n.run_id INTO broken FROM new_rows n
        LEFT JOIN spine_journal_heads h ON h.run_id = n.run_id AND h.seq >= n.seq
        WHERE h.run_id IS NULL
        LIMIT 1;
        RAISE EXCEPTION 'spine_journal: the rows appended to run % do not continue its head (the journal was cut, forked or is finished)', broken
            USING ERRCODE = 'SPJ01';
    END IF;

    RETURN NULL;
END
$$;

-- A security-definer function resolves tables through its own search path: this schema, then pg_temp last, so
-- that a temporary table of the caller's named spine_journal_heads cannot stand in for the real one.
DO $$
BEGIN
    EXECUTE format('ALTER FUNCTION spine_journal_advance_heads() SET search_path = %I, pg_temp', current_schema());
    EXECUTE format('ALTER FUNCTION spine_journal_state_after(smallint) SET search_path = %I, pg_temp', current_schema());
END
$$;

CREATE TRIGGER spine_journal_advance_heads
    AFTER INSERT ON spine_journal
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION spine_journal_advance_heads();

-- Heads are as append-only as the journal for anyone but the trigger above: it runs as the owner, and the
-- runtime role holds no write right here.
CREATE FUNCTION spine_journal_heads_guard() RETURNS trigger
    LANGUAGE plpgsql AS
$$
BEGIN
    IF TG_OP = 'DELETE' OR TG_OP = 'TRUNCATE' THEN
        RAISE EXCEPTION 'spine_journal_heads: % is not allowed', TG_OP USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF NEW.seq <= OLD.seq OR OLD.state = 2 OR NEW.legacy_rows <> OLD.legacy_rows OR NEW.run_id <> OLD.run_id THEN
        RAISE EXCEPTION 'spine_journal_heads: the head of run % only moves forwards', OLD.run_id USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER spine_journal_heads_forward_only
    BEFORE UPDATE OR DELETE ON spine_journal_heads
    FOR EACH ROW EXECUTE FUNCTION spine_journal_heads_guard();

CREATE TRIGGER spine_journal_heads_no_truncate
    BEFORE TRUNCATE ON spine_journal_heads
    FOR EACH STATEMENT EXECUTE FUNCTION spine_journal_heads_guard();

-- A finished run's index row is final (a dead-lettered run may only become discarded), a quarantined one
-- too, and no run's index row is ever deleted.
CREATE FUNCTION spine_runs_guard() RETURNS trigger
    LANGUAGE plpgsql AS
$$
BEGIN
    IF TG_OP = 'DELETE' OR TG_OP = 'TRUNCATE' THEN
        RAISE EXCEPTION 'spine_runs: % is not allowed', TG_OP USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF OLD.status IN (3, 4, 5, 9, 10) OR (OLD.status = 8 AND NEW.status <> 9)
       OR NEW.run_id <> OLD.run_id OR NEW.created_at <> OLD.created_at OR NEW.workflow_type <> OLD.workflow_type
       OR NEW.workflow_version <> OLD.workflow_version OR NEW.account_id IS DISTINCT FROM OLD.account_id
       OR NEW.journal_seq < OLD.journal_seq THEN
        RAISE EXCEPTION 'spine_runs: run % may not change this way (status %)', OLD.run_id, OLD.status
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER spine_runs_final
    BEFORE UPDATE OR DELETE ON spine_runs
    FOR EACH ROW EXECUTE FUNCTION spine_runs_guard();

CREATE TRIGGER spine_runs_no_truncate
    BEFORE TRUNCATE ON spine_runs
    FOR EACH STATEMENT EXECUTE FUNCTION spine_runs_guard();

REVOKE ALL ON spine_journal_heads FROM spine_runtime;
GRANT SELECT ON spine_journal_heads TO spine_runtime;
REVOKE ALL ON FUNCTION spine_journal_advance_heads() FROM PUBLIC;
