-- The schedule whose fire made a job, and the job's priority, so that
-- `winch audit --schedule NAME` finds every run a schedule caused. Plain
-- String columns, added once (ClickHouse 18.16 has no ADD COLUMN IF NOT
-- EXISTS; Migrate takes "already exists" from a concurrent sink as done).
-- Rows from before have '' in both: no schedule, and normal priority.
ALTER TABLE {db}.events ADD COLUMN priority String;
ALTER TABLE {db}.events ADD COLUMN schedule String;
ALTER TABLE {db}.jobs ADD COLUMN priority String;
ALTER TABLE {db}.jobs ADD COLUMN schedule String
