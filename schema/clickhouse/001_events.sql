-- Every event of every job, one row each: the audit trail and the output of
-- jobs older than the events stream keeps.
--
-- Works on ClickHouse 18.16 (Debian) and current releases: DateTime plus a
-- nanosecond UInt64 instead of DateTime64, parallel arrays instead of Map, no
-- TTL (retention drops whole monthly partitions: winch audit prune), plain
-- String instead of LowCardinality.
--
-- ReplacingMergeTree keyed on (job_id, attempt, seq), which identifies an
-- event: a batch the sink inserts twice (killed after the insert, before the
-- ack) collapses, and every query reads with FINAL so that it never sees the
-- second copy, merged yet or not.
--
-- ORDER BY job_id first: `winch audit job` and `winch logs` read one job's
-- events, in order, from one contiguous range. Monthly partitions by event
-- time: a time range (--since) prunes whole months, and retention drops them.
CREATE TABLE IF NOT EXISTS {db}.events (
    job_id       String,
    attempt      UInt32,
    seq          UInt64,
    time         DateTime,
    time_ns      UInt64,
    kind         String,
    state        String,
    stream       String,
    data         String,
    has_exit     UInt8,
    exit_code    Int32,
    error        String,
    reason       String,
    worker       String,
    command      String,
    principal    String,
    queue        String,
    param_names  Array(String),
    param_values Array(String),
    executor     String,
    image        String
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(time)
ORDER BY (job_id, attempt, seq)
