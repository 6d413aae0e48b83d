package main

import (
	"bytes"
	"testing"
	"time"

	"github.com/winchhq/winch/producer"
	"github.com/winchhq/winch/schedule"
	"github.com/winchhq/winch/schema"
)

func TestScheduleOutput(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	nightly := schedule.Definition{Version: 1, Name: "nightly-backup", Owner: "alice", Cron: "0 3 * * *", TimeZone: "Europe/Berlin",
		CatchUp: schedule.CatchUpRunOnce, CreatedAt: at.Add(-48 * time.Hour),
		Request: schema.Request{Command: "db.backup", Params: map[string]any{"name": "main"}, Queue: "default", Priority: schema.PriorityHigh,
			ModuleCommit: "6533912f00593401cdc1435dcce5c4aecd3bbfdd"}}
	heartbeat := schedule.Definition{Version: 1, Name: "heartbeat", Owner: "bob", Every: schema.Duration(10 * time.Minute),
		CatchUp: schedule.CatchUpSkip, Paused: true, CreatedAt: at.Add(-time.Hour),
		Request: schema.Request{Command: "core.echo", Params: map[string]any{"text": "alive"}, Queue: "default"}}
	// 03:00 in Berlin is 02:00 UTC in winter.
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	due27, due28 := time.Date(2026, 11, 27, 3, 0, 0, 0, berlin).UTC(), time.Date(2026, 11, 28, 3, 0, 0, 0, berlin).UTC()
	runs := []producer.ScheduleRun{
		{Run: schedule.Run{Job: schedule.JobID("nightly-backup", "alice", due27), Fire: due27}, State: schema.StateSucceeded},
		{Run: schedule.Run{Job: schedule.JobID("nightly-backup", "alice", due28), Fire: due28, Skipped: "missed: due 2026-11-28T02:00:00Z, came 5m0s late; the schedule's catch-up is skip"}, State: "skipped"},
	}
	last := runs[1].Run
	list := []producer.ScheduleInfo{
		{Entry: schedule.Entry{Definition: heartbeat}},
		{Entry: schedule.Entry{Definition: nightly}, Next: at.Add(14 * time.Hour), Last: &last, LastState: "skipped"},
	}
	var table bytes.Buffer
	if err := writeSchedules(&table, list, time.UTC); err != nil {
		t.Fatal(err)
	}
	golden(t, "schedules.txt", table.Bytes())
	var one bytes.Buffer
	if err := writeSchedule(&one, list[1], runs, time.UTC); err != nil {
		t.Fatal(err)
	}
	golden(t, "schedule.txt", one.Bytes())
}
