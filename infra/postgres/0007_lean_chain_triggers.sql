-- The audit chain's triggers, doing the same guarding for less work per commit: the head advances in one
-- statement over the appended rows instead of four, and the row guards of the heads and the run index are
-- evaluated as trigger conditions, so their function runs only when it is about to refuse.

-- Every append must continue its run's head: the first new row follows the head's seq and links to its mac,
-- the rows of one statement are contiguous, and nothing follows a finished run (a dead-lettered one takes
-- only its discard). The hash links between rows of one statement are the keyed chain's to prove: they are
-- checked when a run activates and by audit verify, which also check each row's key.
CREATE OR REPLACE FUNCTION spine_journal_advance_heads() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER AS
$$
DECLARE
    broken text;
    expected integer;
    advanced integer;
    any_unsigned boolean;
BEGIN
    WITH batch AS (
        SELECT run_id, min(seq) AS first_seq, max(seq) AS last_seq, count(*) AS rows,
               bool_or(key_id IS NULL) AS unsigned,
               (array_agg(prev_hash ORDER BY seq))[1] AS first_prev, (array_agg(hash ORDER BY seq DESC))[1] AS last_hash,
               (array_agg(kind ORDER BY seq))[1] AS first_kind, (array_agg(kind ORDER BY seq DESC))[1] AS last_kind,
               min(seq) FILTER (WHERE kind IN (30, 31, 32, 34)) AS closed_at,
               min(seq) FILTER (WHERE kind = 33) AS dead_lettered_at
        FROM new_rows GROUP BY run_id
    ),
    -- The state after the last row, as spine_journal_state_after says; written out, since a function with its own
    -- search path is never inlined and would be called once per run.
    valid AS (
        SELECT *, CASE WHEN last_kind = 33 THEN 1::smallint WHEN last_kind IN (30, 31, 32, 34) THEN 2::smallint ELSE 0::smallint END AS last_state
        FROM batch
        WHERE NOT unsigned AND rows = last_seq - first_seq + 1
          -- the first closing row is the last row; a dead letter is the last or followed only by its discard
          AND (closed_at IS NULL OR closed_at = last_seq)
          AND (dead_lettered_at IS NULL OR dead_lettered_at = last_seq OR (dead_lettered_at = last_seq - 1 AND last_kind = 34))
    ),
    started AS (
        INSERT INTO spine_journal_heads (run_id, seq, mac, state, updated_at)
        SELECT run_id, last_seq, last_hash, last_state, now()
        FROM valid
        WHERE first_seq = 0 AND first_prev = '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea
        ON CONFLICT (run_id) DO NOTHING
        RETURNING 1
    ),
    continued AS (
        UPDATE spine_journal_heads h
        SET seq = v.last_seq, mac = v.last_hash, state = v.last_state, updated_at = now()
        FROM valid v
        WHERE v.first_seq > 0 AND h.run_id = v.run_id AND h.seq = v.first_seq - 1 AND h.mac = v.first_prev
          AND (h.state = 0 OR (h.state = 1 AND v.first_kind = 34))
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM started) + (SELECT count(*) FROM continued), (SELECT count(*) FROM batch),
           (SELECT bool_or(b.unsigned) FROM batch b)
    INTO advanced, expected, any_unsigned;

    -- Every row appended from now on is signed: an unsigned one (a silo of an older version) would make its run
    -- fail verification later, so it is refused now, while its writer can still tell.
    IF any_unsigned THEN
        RAISE EXCEPTION 'spine_journal: rows must carry the key id of the key that signed them (is every silo upgraded?)'
            USING ERRCODE = 'SPJ02';
    END IF;

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

-- CREATE OR REPLACE drops the settings of the function it replaces: pin its search path again.
DO $$
BEGIN
    EXECUTE format('ALTER FUNCTION spine_journal_advance_heads() SET search_path = %I, pg_temp', current_schema());
END
$$;

-- The heads: refused moves are the only ones that call the guard.
DROP TRIGGER spine_journal_heads_forward_only ON spine_journal_heads;

CREATE TRIGGER spine_journal_heads_forward_only
    BEFORE UPDATE ON spine_journal_heads
    FOR EACH ROW
    WHEN (NEW.seq <= OLD.seq OR OLD.state = 2 OR NEW.legacy_rows <> OLD.legacy_rows OR NEW.run_id <> OLD.run_id)
    EXECUTE FUNCTION spine_journal_heads_guard();

CREATE TRIGGER spine_journal_heads_no_delete
    BEFORE DELETE ON spine_journal_heads
    FOR EACH ROW EXECUTE FUNCTION spine_journal_heads_guard();

-- The run index, likewise.
DROP TRIGGER spine_runs_final ON spine_runs;

CREATE TRIGGER spine_runs_final
    BEFORE UPDATE ON spine_runs
    FOR EACH ROW
    WHEN (OLD.status IN (3, 4, 5, 9, 10) OR (OLD.status = 8 AND NEW.status <> 9)
          OR NEW.run_id <> OLD.run_id OR NEW.created_at <> OLD.created_at OR NEW.workflow_type <> OLD.workflow_type
          OR NEW.workflow_version <> OLD.workflow_version OR NEW.account_id IS DISTINCT FROM OLD.account_id
          OR NEW.journal_seq < OLD.journal_seq)
    EXECUTE FUNCTION spine_runs_guard();

CREATE TRIGGER spine_runs_no_delete
    BEFORE DELETE ON spine_runs
    FOR EACH ROW EXECUTE FUNCTION spine_runs_guard();
