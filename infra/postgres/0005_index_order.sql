-- The run index is ordered by the journal, not by clocks, and swept by partition.
-- Idempotent, like every schema file.

-- journal_seq is how many journal rows the run had when its index row was written. A write with fewer rows
-- than the stored one is stale and ignored, so a silo whose clock runs ahead cannot pin a run's index to an
-- old status.
ALTER TABLE spine_runs ADD COLUMN IF NOT EXISTS journal_seq integer NOT NULL DEFAULT 0;

-- The recovery sweep is partitioned: sweep grain k resumes the executing runs of partition k (of 16),
-- reading them in (updated_at, run_id) order from an index that holds executing runs only.
ALTER TABLE spine_runs ADD COLUMN IF NOT EXISTS sweep_partition smallint
    GENERATED ALWAYS AS ((hashtext(run_id) & 15)::smallint) STORED;
CREATE INDEX IF NOT EXISTS spine_runs_sweep_idx ON spine_runs (sweep_partition, updated_at, run_id)
    WHERE status IN (0, 1, 7);
