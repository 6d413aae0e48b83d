-- Views for people who query the audit store directly (clickhouse-client, a
-- BI tool): one row per job, and one row per event, whatever merges have
-- done yet. The tables keep a running row and a final row for each job (and
-- may hold an event twice, from a batch inserted twice) until ClickHouse
-- merges them, which it may never do.
--
-- jobs_latest: GROUP BY with argMax(column, version), which works on every
-- release (18.16 included) and, unlike FINAL, also collapses rows that
-- landed in different partitions. The row with the highest version wins: the
-- end over the start, a later attempt over an earlier one. A column added to
-- jobs later needs one line here, `argMax(new_column, version) AS new_column`,
-- in a migration that drops and creates the view again (DROP TABLE IF EXISTS
-- {db}.jobs_latest; then this statement).
--
-- events_unique: the events table read with FINAL (one row per job, attempt
-- and seq; an event's copies share its time, so its partition). SELECT * is
-- expanded when the view is created: a column added to events later appears
-- once a migration drops and creates the view with the same statement.
--
-- Neither view pushes a WHERE down into the table on 18.16: every query
-- reads the whole table (filter the tables with FINAL for one job).
CREATE VIEW IF NOT EXISTS {db}.jobs_latest AS
SELECT
    job_id,
    argMax(state, version) AS state,
    argMax(command, version) AS command,
    argMax(module, version) AS module,
    argMax(principal, version) AS principal,
    argMax(queue, version) AS queue,
    argMax(attempt, version) AS attempt,
    argMax(worker, version) AS worker,
    argMax(executor, version) AS executor,
    argMax(param_names, version) AS param_names,
    argMax(param_values, version) AS param_values,
    argMax(has_exit, version) AS has_exit,
    argMax(exit_code, version) AS exit_code,
    argMax(error, version) AS error,
    argMax(reason, version) AS reason,
    argMax(created_at, version) AS created_at,
    argMax(started_at, version) AS started_at,
    argMax(finished_at, version) AS finished_at,
    argMax(duration_ms, version) AS duration_ms,
    argMax(commit, version) AS commit,
    argMax(priority, version) AS priority,
    argMax(schedule, version) AS schedule,
    argMax(parent_id, version) AS parent_id
FROM {db}.jobs
GROUP BY job_id;

CREATE VIEW IF NOT EXISTS {db}.events_unique AS
SELECT * FROM {db}.events FINAL
