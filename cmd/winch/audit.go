package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/winchhq/winch/audit"
	"github.com/winchhq/winch/schema"
)

// AuditCmd is `winch audit`: who ran what, when, with what result.
type AuditCmd struct {
	List  AuditListCmd  `cmd:"" default:"withargs" help:"List jobs, newest first (the default)."`
	Job   AuditJobCmd   `cmd:"" help:"One job: its parameters (secrets masked), every event, its whole output."`
	Prune AuditPruneCmd `cmd:"" help:"Drop whole months of history older than a cutoff."`
}

// AuditListCmd is `winch audit [filters]`.
type AuditListCmd struct {
	Principal string `help:"Only jobs asked for by this principal."`
	Command   string `help:"Only this command (module.command)."`
	Module    string `help:"Only commands of this module."`
	Queue     string `help:"Only jobs of this queue."`
	Schedule  string `help:"Only jobs that this schedule's fires made."`
	Parent    string `help:"Only the children of this fan-out (winch run --each)."`
	Status    string `enum:",queued,running,succeeded,failed,cancelled,timed_out,rejected,dead" default:"" help:"Only jobs in this state."`
	Job       string `help:"Only this job id."`
	Since     string `default:"7d" help:"Only jobs created since: a duration back (24h, 7d) or a time (RFC 3339)."`
	Until     string `help:"Only jobs created before: a duration back or a time."`
	Grep      string `help:"Only jobs whose output contains this text."`
	Limit     int    `default:"50" help:"At most this many jobs."`
}

// Run lists jobs from the audit store.
func (c *AuditListCmd) Run(ctx context.Context, g *Globals) error {
	if err := g.outputOneOf("text", "json", "csv"); err != nil {
		return err
	}
	f := audit.Filter{Principal: c.Principal, Command: c.Command, Module: c.Module, Queue: c.Queue, Schedule: c.Schedule, Parent: c.Parent,
		State: schema.State(c.Status), JobID: c.Job, Grep: c.Grep, Limit: c.Limit}
	now := time.Now()
	var err error
	if f.Since, err = audit.PointInTime(c.Since, now); err != nil {
		return usageError("--since: %v", err)
	}
	if f.Until, err = audit.PointInTime(c.Until, now); err != nil {
		return usageError("--until: %v", err)
	}
	store, err := g.store(ctx)
	if err != nil {
		return err
	}
	defer store.Close()
	jobs, err := store.Jobs(ctx, f)
	if err != nil {
		return err
	}
	switch g.Output {
	case "json":
		enc := json.NewEncoder(g.stdio.Out)
		for _, j := range jobs {
			if err := enc.Encode(j); err != nil {
				return err
			}
		}
		return nil
	case "csv":
		return writeAuditCSV(g.stdio.Out, jobs)
	}
	return writeAuditTable(g.stdio.Out, jobs, time.Local)
}

// AuditJobCmd is `winch audit job JOB`.
type AuditJobCmd struct {
	Job string `arg:"" help:"Job id."`
}

// Run shows one job from the audit store.
func (c *AuditJobCmd) Run(ctx context.Context, g *Globals) error {
	if err := g.outputOneOf("text", "json"); err != nil {
		return err
	}
	store, err := g.store(ctx)
	if err != nil {
		return err
	}
	defer store.Close()
	jobs, err := store.Jobs(ctx, audit.Filter{JobID: c.Job, Limit: 1})
	if err != nil {
		return err
	}
	events, err := store.Events(ctx, c.Job)
	if err != nil {
		return err
	}
	if len(jobs) == 0 && len(events) == 0 {
		return &ExitError{Code: exitUsage, Err: fmt.Errorf("job %s is not in the audit store", c.Job)}
	}
	var job *audit.Job
	if len(jobs) > 0 {
		job = &jobs[0]
	}
	children, err := auditChildren(ctx, store, job)
	if err != nil {
		return err
	}
	if g.Output == "json" {
		return json.NewEncoder(g.stdio.Out).Encode(struct {
			Job      *audit.Job     `json:"job"`
			Events   []schema.Event `json:"events"`
			Children []audit.Job    `json:"children,omitempty"`
		}{job, events, children})
	}
	if err := writeAuditJob(g.stdio.Out, job, events, time.Local); err != nil {
		return err
	}
	return writeAuditChildren(g.stdio.Out, children)
}

// AuditPruneCmd is `winch audit prune --older-than 90d`.
type AuditPruneCmd struct {
	OlderThan string `required:"" help:"Drop the months that hold nothing newer than this (a duration back like 90d, or a time)."`
}

// Run drops old partitions.
func (c *AuditPruneCmd) Run(ctx context.Context, g *Globals) error {
	before, err := audit.PointInTime(c.OlderThan, time.Now())
	if err != nil || before.IsZero() {
		return usageError("--older-than %q: want a duration back like 90d or a time (RFC 3339)", c.OlderThan)
	}
	store, err := g.store(ctx)
	if err != nil {
		return err
	}
	defer store.Close()
	dropped, err := store.Prune(ctx, before)
	if err != nil {
		return err
	}
	if g.jsonOutput() {
		if dropped == nil {
			dropped = []string{}
		}
		return json.NewEncoder(g.stdio.Out).Encode(map[string]any{"dropped": dropped})
	}
	if len(dropped) == 0 {
		_, err = fmt.Fprintf(g.stdio.Out, "nothing older than %s to drop\n", before.UTC().Format("2006-01"))
		return err
	}
	for _, d := range dropped {
		fmt.Fprintf(g.stdio.Out, "dropped %s\n", d)
	}
	return nil
}

// store opens the audit store named by WINCH_CLICKHOUSE_DSN.
func (g *Globals) store(ctx context.Context) (*audit.Store, error) {
	if g.ClickHouseDSN == "" {
		return nil, usageError("the audit store is not configured: set WINCH_CLICKHOUSE_DSN (like clickhouse://127.0.0.1:9000/winch)")
	}
	s, err := audit.Open(ctx, g.ClickHouseDSN, g.clientLogger())
	if errors.Is(err, audit.ErrUnavailable) {
		return nil, &ExitError{Code: exitUnavailable, Err: err}
	}
	return s, err
}
