-- Events ClickHouse refused for what they hold (a value no column of theirs
-- can take), as published, with the refusal: the sink puts each here and goes
-- on, instead of retrying a batch that can never go in. Read them with
--   SELECT received_at, job_id, error, event FROM winch.dead_letters
-- The stream sequence identifies the message: a sink that stores a dead
-- letter twice (killed before its ack) leaves one row after merges, and
-- SELECT ... FINAL shows one. Plain String and DateTime (the sink's clock),
-- so that the dead letter itself can always be stored.
CREATE TABLE IF NOT EXISTS {db}.dead_letters (
    received_at DateTime,
    job_id      String,
    subject     String,
    stream_seq  UInt64,
    error       String,
    event       String
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(received_at)
ORDER BY (job_id, stream_seq)
