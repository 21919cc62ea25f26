-- The run index is ordered by the journal, not by clocks: journal_seq is how many journal rows the run had
-- when its index row was written. A write with fewer rows than the stored one is stale and ignored, so a
-- silo whose clock runs ahead cannot pin a run's index to an old status.
-- Idempotent, like every schema file.

ALTER TABLE spine_runs ADD COLUMN IF NOT EXISTS journal_seq integer NOT NULL DEFAULT 0;
