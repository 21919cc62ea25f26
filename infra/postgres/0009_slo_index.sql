-- Reliability windows (SloCalculator) read the runs that ended recently: an index of ended runs by when they ended.
CREATE INDEX IF NOT EXISTS spine_runs_ended_idx ON spine_runs (updated_at) WHERE status IN (3, 4, 5, 8, 9);
