package main

import (
	"encoding/csv"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/winchhq/winch/audit"
	"github.com/winchhq/winch/schema"
)

// writeAuditTable writes jobs as a table for people.
func writeAuditTable(w io.Writer, jobs []audit.Job, loc *time.Location) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME\tPRINCIPAL\tCOMMAND\tSTATUS\tEXIT\tDURATION\tJOB\tSCHEDULE")
	for _, j := range jobs {
		dur := "-"
		if !j.FinishedAt.IsZero() && !j.StartedAt.IsZero() {
			dur = (time.Duration(j.DurationMS) * time.Millisecond).String()
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", j.CreatedAt.In(loc).Format("2006-01-02 15:04:05"),
			j.Principal, j.Command, j.State, exitOrDash(j.ExitCode), dur, j.JobID, dash(j.Schedule))
	}
	return tw.Flush()
}

// auditCSVColumns are stable: scripts may rely on their names and order.
var auditCSVColumns = []string{"created_at", "job_id", "principal", "command", "module", "queue", "status", "exit_code", "duration_ms", "attempt", "worker", "started_at", "finished_at", "reason", "error", "priority", "schedule"}

// writeAuditCSV writes jobs as CSV with a header, times in UTC RFC 3339.
func writeAuditCSV(w io.Writer, jobs []audit.Job) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(auditCSVColumns); err != nil {
		return err
	}
	ts := func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format(time.RFC3339)
	}
	for _, j := range jobs {
		exit := ""
		if j.ExitCode != nil {
			exit = strconv.Itoa(*j.ExitCode)
		}
		if err := cw.Write([]string{ts(j.CreatedAt), j.JobID, j.Principal, j.Command, j.Module, j.Queue, string(j.State), exit,
			strconv.FormatUint(j.DurationMS, 10), strconv.Itoa(j.Attempt), j.Worker, ts(j.StartedAt), ts(j.FinishedAt), j.Reason, j.Error, priorityOf(j.Priority), j.Schedule}); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

// writeAuditJob writes one job: a summary, its parameters, then every event
// with the output in full.
func writeAuditJob(w io.Writer, j *audit.Job, events []schema.Event, loc *time.Location) error {
	if j != nil {
		d := newDetails(w, loc)
		row, at := d.row, d.at
		row("job", j.JobID)
		row("command", j.Command)
		row("commit", j.Commit)
		row("state", string(j.State))
		row("principal", j.Principal)
		row("queue", j.Queue)
		row("priority", priorityOf(j.Priority))
		row("schedule", j.Schedule)
		row("worker", j.Worker)
		row("attempt", strconv.Itoa(j.Attempt))
		row("created", at(j.CreatedAt))
		row("started", at(j.StartedAt))
		row("finished", at(j.FinishedAt))
		if j.ExitCode != nil {
			row("exit code", strconv.Itoa(*j.ExitCode))
		}
		row("reason", j.Reason)
		row("error", j.Error)
		if len(j.Params) > 0 {
			row("params", formatParams(j.Params))
		}
		if err := d.flush(); err != nil {
			return err
		}
		fmt.Fprintln(w)
	}
	for _, ev := range events {
		if err := writeEventTextIn(w, ev, loc); err != nil {
			return err
		}
	}
	return nil
}

// priorityOf names a recorded priority: rows from before priorities, and
// requests that gave none, are normal.
func priorityOf(p string) string {
	if p == "" {
		return string(schema.PriorityNormal)
	}
	return p
}
