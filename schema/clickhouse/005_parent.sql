-- The fan-out parent of a child job, so that `winch audit --parent JOB`
-- finds a fan-out's children and `winch audit job PARENT` lists them. A
-- plain String column, added once (ClickHouse 18.16 has no ADD COLUMN IF
-- NOT EXISTS; Migrate takes "already exists" from a concurrent sink as
-- done). Rows from before have '': no parent.
ALTER TABLE {db}.events ADD COLUMN parent_id String;
ALTER TABLE {db}.jobs ADD COLUMN parent_id String
