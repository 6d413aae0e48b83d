package main

import (
	"bytes"
	"testing"
	"time"

	"github.com/winchhq/winch/schema"
)

// A fan-out in winch ps: the parent with its progress, its children under
// it with their values; a job of no fan-out as ever. And the summary
// `winch run --each` ends with.
func TestFanoutRendering(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	now := at.Add(90 * time.Second)
	prog := &schema.FanoutProgress{Param: "name", Total: 4, Parallel: 2, Launched: 4, Succeeded: 3}
	child := func(i int, value string, state schema.State) schema.JobState {
		return schema.JobState{JobID: schema.FanoutChildID("p1", i), ParentID: "p1", Command: "db.vacuum", State: state, Principal: "alice",
			Queue: "default", Worker: "w1", Attempt: 1, CreatedAt: at, Params: map[string]any{"name": value}}
	}
	jobs := []schema.JobState{
		child(3, "audit", schema.StateRunning),
		{JobID: "p1", Command: "db.vacuum", State: schema.StateRunning, Principal: "alice", Queue: "default", Worker: "w2", Attempt: 1, CreatedAt: at, Fanout: prog},
		{JobID: "lone", Command: "core.sleep", State: schema.StateWaiting, Principal: "bob", Queue: "default", CreatedAt: at, WaitingFor: "db-main", HeldBy: []string{"x"}},
		child(0, "main", schema.StateSucceeded),
		child(2, "billing", schema.StateSucceeded),
		child(1, "users", schema.StateSucceeded),
	}
	var b bytes.Buffer
	if err := writeJobs(&b, jobs, now); err != nil {
		t.Fatal(err)
	}
	b.WriteString("\n")
	two := 2
	end := schema.Event{JobID: "p1", Kind: schema.KindFinished, State: schema.StateFailed,
		Fanout: &schema.FanoutProgress{Param: "name", Total: 4, Launched: 3, Succeeded: 1, Failed: 1, Cancelled: 1, Skipped: 1}}
	writeFanoutSummary(&b, end, []childResult{
		{"users", schema.Event{JobID: "p1-1", State: schema.StateCancelled, Error: "cancelled by alice"}},
		{"main", schema.Event{JobID: "p1-0", State: schema.StateFailed, ExitCode: &two}},
	})
	b.WriteString("\n")
	if err := writeState(&b, jobs[2]); err != nil {
		t.Fatal(err)
	}
	golden(t, "fanout.txt", b.Bytes())
}
