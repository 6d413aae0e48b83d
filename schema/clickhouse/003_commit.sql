-- The commit of the command's module, so that the audit shows exactly which
-- code ran. (ClickHouse 18.16 has no ADD COLUMN IF NOT EXISTS: Migrate runs
-- this once, and takes "already exists" from a concurrent sink as done.)
ALTER TABLE {db}.events ADD COLUMN commit String;
ALTER TABLE {db}.jobs ADD COLUMN commit String
