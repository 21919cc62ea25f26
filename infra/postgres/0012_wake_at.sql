-- A waiting run's next deadline (a sleep's end, an approval's or a signal's deadline, a budget pause's end) in its
-- index row, written in the same commit as the status that says it waits. The recovery sweep reads it to bring
-- such runs back into memory before they are due, so a wait needs no reminder of its own: a run that waits costs
-- no write beyond its status. NULL for a run that does not wait (an executing run is swept by its status).
ALTER TABLE spine_runs ADD COLUMN IF NOT EXISTS wake_at timestamptz;
CREATE INDEX IF NOT EXISTS spine_runs_wake_idx ON spine_runs (sweep_partition, wake_at, run_id)
    WHERE wake_at IS NOT NULL;
