-- Spine's own tables: the run index and the append-only, hash-chained journal.
-- Idempotent: applying it again to an existing database changes nothing.

-- The runtime role. Deployments create a login role and GRANT spine_runtime TO it;
-- the silo must never connect as the owner of these tables.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'spine_runtime') THEN
        CREATE ROLE spine_runtime NOLOGIN;
    END IF;
END
$$;

-- One row per run: the queryable index (status, type, account). The journal is the truth;
-- this row is rewritten from it when the two disagree after a crash.
CREATE TABLE IF NOT EXISTS spine_runs
(
    run_id           text        NOT NULL PRIMARY KEY,
    workflow_type    text        NOT NULL,
    workflow_version integer     NOT NULL,
    account_id       text,
    idempotency_key  text,
    status           smallint    NOT NULL,
    result           text,
    error_kind       text,
    error_message    text,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL
);

CREATE INDEX IF NOT EXISTS spine_runs_status_idx  ON spine_runs (status, created_at DESC);
CREATE INDEX IF NOT EXISTS spine_runs_type_idx    ON spine_runs (workflow_type, created_at DESC);
CREATE INDEX IF NOT EXISTS spine_runs_account_idx ON spine_runs (account_id, created_at DESC);

-- Every event of every run. (run_id, seq) is the key: a second activation of a run that tries
-- to write a row the first already wrote is rejected, never forked.
-- hash = SHA-256 over prev_hash and the row's fields (see JournalHash.cs); prev_hash of seq 0 is 32 zero bytes.
CREATE TABLE IF NOT EXISTS spine_journal
(
    run_id      text        NOT NULL,
    seq         integer     NOT NULL,
    kind        smallint    NOT NULL,
    step        integer,
    name        text        NOT NULL,
    ok          boolean     NOT NULL,
    payload     text,
    recorded_at timestamptz NOT NULL,
    prev_hash   bytea       NOT NULL,
    hash        bytea       NOT NULL,
    PRIMARY KEY (run_id, seq)
);

-- Append-only even for the table owner: edits and deletions must go through a deliberate
-- DROP TRIGGER that itself leaves a trace in the server log.
CREATE OR REPLACE FUNCTION spine_journal_reject_change() RETURNS trigger
    LANGUAGE plpgsql AS
$$
BEGIN
    RAISE EXCEPTION 'spine_journal is append-only: % is not allowed', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;

DROP TRIGGER IF EXISTS spine_journal_no_update ON spine_journal;
CREATE TRIGGER spine_journal_no_update
    BEFORE UPDATE OR DELETE ON spine_journal
    FOR EACH ROW EXECUTE FUNCTION spine_journal_reject_change();

DROP TRIGGER IF EXISTS spine_journal_no_truncate ON spine_journal;
CREATE TRIGGER spine_journal_no_truncate
    BEFORE TRUNCATE ON spine_journal
    FOR EACH STATEMENT EXECUTE FUNCTION spine_journal_reject_change();

-- What the runtime role may do. The journal: insert and read, nothing else.
REVOKE ALL ON spine_journal FROM spine_runtime;
GRANT SELECT, INSERT ON spine_journal TO spine_runtime;
GRANT SELECT, INSERT, UPDATE ON spine_runs TO spine_runtime;
-- The Orleans provider tables (0001_orleans.sql): full row access; the query catalogue: read only.
DO $$
DECLARE
    t text;
BEGIN
    FOR t IN SELECT tablename FROM pg_tables
             WHERE schemaname = current_schema() AND tablename LIKE 'orleans%' AND tablename <> 'orleansquery'
    LOOP
        EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I TO spine_runtime', t);
    END LOOP;
END
$$;
GRANT SELECT ON orleansquery TO spine_runtime;
