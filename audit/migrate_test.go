package audit_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/winchhq/winch/audit"
	"github.com/winchhq/winch/internal/testenv"
	"github.com/winchhq/winch/schema"
)

// A store made by a winch from before schedules and priorities (migrations
// 001-003) keeps its rows through the later migrations: they read with no
// schedule and normal priority, beside rows written after.
func TestMigrationKeepsRowsFromBeforeSchedules(t *testing.T) {
	t.Parallel()
	if chErr != nil {
		testenv.Missing(t, "clickhouse", chErr)
	}
	ctx := t.Context()
	conn := raw(t, nil)
	db := fmt.Sprintf("t%d_premigration", dbSeq.Add(1))
	exec := func(q string) {
		t.Helper()
		if err := conn.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	// Rows go in as batches, as the store writes them (18.16 does not
	// take bound parameters in INSERT ... VALUES).
	insert := func(into string, row ...any) {
		t.Helper()
		batch, err := conn.PrepareBatch(ctx, "INSERT INTO "+into)
		if err == nil {
			err = batch.Append(row...)
		}
		if err == nil {
			err = batch.Send()
		}
		if err != nil {
			t.Fatalf("insert into %s: %v", into, err)
		}
	}
	exec("CREATE DATABASE " + db)
	t.Cleanup(func() { _ = conn.Exec(context.Background(), "DROP DATABASE IF EXISTS "+db) })
	// What Migrate made then: the migrations table, and 001 to 003.
	exec("CREATE TABLE " + db + ".schema_migrations (version UInt32, name String, applied_at DateTime) ENGINE = ReplacingMergeTree ORDER BY version")
	all, err := schema.ClickHouseMigrations()
	if err != nil {
		t.Fatal(err)
	}
	var later []string
	for _, m := range all {
		if m.Version >= 4 {
			later = append(later, fmt.Sprintf("%03d_%s", m.Version, m.Name))
			continue
		}
		for _, stmt := range sqlStatements(m.SQL) {
			exec(strings.ReplaceAll(stmt, "{db}", db))
		}
		insert(db+".schema_migrations (version, name, applied_at)", uint32(m.Version), m.Name, time.Now())
	}
	created := time.Now().Add(-time.Hour).Truncate(time.Second).UTC()
	insert(db+".jobs (job_id, version, state, command, module, principal, queue, attempt, worker, executor, param_names, param_values, has_exit, exit_code, error, reason, created_at, started_at, finished_at, duration_ms, commit)",
		"old-1", uint64(3), "succeeded", "core.echo", "core", "alice", "default", uint32(1), "w1", "process",
		[]string{"text"}, []string{`"old"`}, uint8(1), int32(0), "", "", created, created, created, uint64(12), "")
	insert(db+".events (job_id, attempt, seq, time, time_ns, kind, state, stream, data, has_exit, exit_code, error, reason, worker, command, principal, queue, param_names, param_values, executor, image, commit)",
		"old-1", uint32(0), uint64(1), created, uint64(created.UnixNano()), "accepted", "queued", "", "", uint8(0), int32(0),
		"", "", "", "core.echo", "alice", "default", []string{"text"}, []string{`"old"`}, "", "", "")

	s, err := audit.Open(ctx, ch.DSN(db), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	applied, err := s.Migrate(ctx)
	if err != nil || !slices.Equal(applied, later) {
		t.Fatalf("migrated %v, %v; want %v", applied, err, later)
	}

	// A row written after, by a scheduled high-priority fire.
	fire := schema.Event{JobID: "new-1", Seq: 1, Time: time.Now().UTC(), Kind: schema.KindAccepted, State: schema.StateQueued,
		Command: "core.echo", Principal: "alice", Queue: "default", Priority: schema.PriorityHigh, Schedule: "nightly"}
	if err := s.Insert(ctx, []schema.Event{fire}); err != nil {
		t.Fatal(err)
	}

	jobs, err := s.Jobs(ctx, audit.Filter{JobID: "old-1"})
	if err != nil || len(jobs) != 1 {
		t.Fatalf("the old job: %+v, %v", jobs, err)
	}
	old := jobs[0]
	if old.State != schema.StateSucceeded || old.Schedule != "" || schema.Priority(old.Priority).Or() != schema.PriorityNormal || old.ParentID != "" {
		t.Fatalf("the old job after the migrations: %+v", old)
	}
	events, err := s.Events(ctx, "old-1")
	if err != nil || len(events) != 1 || events[0].Schedule != "" || events[0].Priority.Or() != schema.PriorityNormal {
		t.Fatalf("the old job's events: %+v, %v", events, err)
	}
	scheduled, err := s.Jobs(ctx, audit.Filter{Schedule: "nightly"})
	if err != nil || len(scheduled) != 1 || scheduled[0].JobID != "new-1" || scheduled[0].Priority != string(schema.PriorityHigh) {
		t.Fatalf("audit --schedule nightly: %+v, %v", scheduled, err)
	}
	// The view of the latest rows reads the old row too.
	var priority, sched string
	if err := conn.QueryRow(ctx, "SELECT priority, schedule FROM "+db+".jobs_latest WHERE job_id = 'old-1'").Scan(&priority, &sched); err != nil || priority != "" || sched != "" {
		t.Fatalf("jobs_latest: %q %q, %v", priority, sched, err)
	}
}

// sqlStatements splits a migration as Migrate does: comment lines out,
// then at each ';'.
func sqlStatements(sql string) []string {
	var lines []string
	for _, line := range strings.Split(sql, "\n") {
		if l := strings.TrimSpace(line); l != "" && !strings.HasPrefix(l, "--") {
			lines = append(lines, line)
		}
	}
	var out []string
	for _, stmt := range strings.Split(strings.Join(lines, "\n"), ";") {
		if strings.TrimSpace(stmt) != "" {
			out = append(out, stmt)
		}
	}
	return out
}
