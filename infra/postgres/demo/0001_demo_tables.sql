-- Tables of the demo tools and workflows (silo/Demo), created only when the demo is on (the `demo` command or
-- Silo:Demo=true): they are not part of the product schema. Each side effect is
-- keyed by the idempotency key Spine hands the tool, so a re-executed step never applies twice.

CREATE TABLE IF NOT EXISTS spine_demo_notes
(
    idempotency_key text        NOT NULL PRIMARY KEY,
    run_id          text        NOT NULL,
    note            text        NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);

-- One row per applied effect; deliveries counts how often the effect was asked for (re-executions
-- after a crash ask again with the same key and are absorbed here).
CREATE TABLE IF NOT EXISTS spine_demo_ledger
(
    idempotency_key text        NOT NULL PRIMARY KEY,
    run_id          text        NOT NULL,
    step            integer     NOT NULL,
    deliveries      integer     NOT NULL DEFAULT 1,
    applied_at      timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX IF NOT EXISTS spine_demo_ledger_run_idx ON spine_demo_ledger (run_id);

GRANT SELECT, INSERT, UPDATE ON spine_demo_notes, spine_demo_ledger TO spine_runtime;
