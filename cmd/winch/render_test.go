package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/winchhq/winch/audit"
	"github.com/winchhq/winch/schema"
)

var update = flag.Bool("update", false, "rewrite the golden files")

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", "golden", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file:\n--- got\n%s\n--- want\n%s", name, got, want)
	}
}

func auditFixture() ([]audit.Job, []schema.Event) {
	at := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	zero, three := 0, 3
	jobs := []audit.Job{
		{JobID: "06h28nr2quafehocab0285tcq4", State: schema.StateSucceeded, Command: "db.backup", Module: "db", Commit: "6533912f00593401cdc1435dcce5c4aecd3bbfdd", Principal: "alice",
			Queue: "default", Priority: "high", Schedule: "nightly-backup", Attempt: 1, Worker: "w1", Executor: "docker", Params: map[string]any{"name": "main", "password": "***"},
			ExitCode: &zero, CreatedAt: at, StartedAt: at.Add(time.Second), FinishedAt: at.Add(61 * time.Second), DurationMS: 60000},
		{JobID: "06h28nr1bcl15qvfo709vqfv4c", State: schema.StateFailed, Command: "core.exit", Module: "core", Principal: "bob",
			Queue: "gpu", Attempt: 2, Worker: "w2", Executor: "process", ExitCode: &three, Error: `said "no", then stopped`,
			CreatedAt: at.Add(-time.Hour), StartedAt: at.Add(-time.Hour), FinishedAt: at.Add(-time.Hour + 1500*time.Millisecond), DurationMS: 1500},
		{JobID: "06h28nr0cbo445tll2ngcsumb8", State: schema.StateRunning, Command: "core.sleep", Module: "core", Principal: "carol",
			Queue: "default", Attempt: 1, Worker: "w1", CreatedAt: at.Add(-2 * time.Hour), StartedAt: at.Add(-2 * time.Hour)},
	}
	events := []schema.Event{
		{JobID: jobs[0].JobID, Attempt: 1, Seq: 1, Time: at.Add(time.Second), Kind: schema.KindAccepted, State: schema.StateRunning,
			Command: "db.backup", Commit: jobs[0].Commit, Principal: "alice", Queue: "default", Worker: "w1", Params: jobs[0].Params},
		{JobID: jobs[0].JobID, Attempt: 1, Seq: 2, Time: at.Add(time.Second), Kind: schema.KindStarted, Executor: "docker", Image: "winch-toolbox:latest@sha256:e509"},
		{JobID: jobs[0].JobID, Attempt: 1, Seq: 3, Time: at.Add(2 * time.Second), Kind: schema.KindLog, Stream: schema.Stdout, Data: "dumping main\ndone\n"},
		{JobID: jobs[0].JobID, Attempt: 1, Seq: 4, Time: at.Add(3 * time.Second), Kind: schema.KindLog, Stream: schema.Stderr, Data: "warning: slow disk\n"},
		{JobID: jobs[0].JobID, Attempt: 1, Seq: 5, Time: at.Add(61 * time.Second), Kind: schema.KindFinished, State: schema.StateSucceeded, ExitCode: &zero},
	}
	return jobs, events
}

func TestAuditOutputFormats(t *testing.T) {
	t.Parallel()
	jobs, events := auditFixture()
	var table, csv, one, lines bytes.Buffer
	if err := writeAuditTable(&table, jobs, time.UTC); err != nil {
		t.Fatal(err)
	}
	golden(t, "audit.txt", table.Bytes())
	if err := writeAuditCSV(&csv, jobs); err != nil {
		t.Fatal(err)
	}
	golden(t, "audit.csv", csv.Bytes())
	if err := writeAuditJob(&one, &jobs[0], events, time.UTC); err != nil {
		t.Fatal(err)
	}
	golden(t, "audit-job.txt", one.Bytes())
	enc := json.NewEncoder(&lines)
	for _, j := range jobs {
		if err := enc.Encode(j); err != nil {
			t.Fatal(err)
		}
	}
	golden(t, "audit.jsonl", lines.Bytes())
}
