-- One row per job with its latest known state, so that listing and filtering
-- jobs (winch audit) never scans log lines. The sink writes a row when a job
-- is accepted (running, with its parameters) and when it ends; version makes
-- the end win over the start, and a later attempt over an earlier one.
--
-- ReplacingMergeTree(version) keyed on job_id: queries read with FINAL and
-- see one row per job. Job ids made by winch start with their creation time,
-- so ORDER BY job_id also keeps a time range of jobs together. Partitions are
-- the month the job was created, the same for both of a job's rows (they must
-- share a partition to replace each other), and what retention drops.
CREATE TABLE IF NOT EXISTS {db}.jobs (
    job_id       String,
    version      UInt64,
    state        String,
    command      String,
    module       String,
    principal    String,
    queue        String,
    attempt      UInt32,
    worker       String,
    executor     String,
    param_names  Array(String),
    param_values Array(String),
    has_exit     UInt8,
    exit_code    Int32,
    error        String,
    reason       String,
    created_at   DateTime,
    started_at   DateTime,
    finished_at  DateTime,
    duration_ms  UInt64
) ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(created_at)
ORDER BY job_id
