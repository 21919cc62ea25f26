-- Structured recovery: the attempt of each step outcome, the failing step of a run, and replay origins.
-- Idempotent, like every schema file.

ALTER TABLE spine_journal ADD COLUMN IF NOT EXISTS attempt integer;

ALTER TABLE spine_runs ADD COLUMN IF NOT EXISTS error_step integer;
ALTER TABLE spine_runs ADD COLUMN IF NOT EXISTS error_step_name text;
ALTER TABLE spine_runs ADD COLUMN IF NOT EXISTS origin_run_id text;

-- The dead-letter queue is the runs in status 8 (DeadLettered); operators list it newest first.
CREATE INDEX IF NOT EXISTS spine_runs_dead_letter_idx ON spine_runs (updated_at DESC) WHERE status = 8;
