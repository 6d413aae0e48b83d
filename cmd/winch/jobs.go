package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/winchhq/winch/producer"
	"github.com/winchhq/winch/schema"
)

// LogsCmd is `winch logs JOB [-f]`.
type LogsCmd struct {
	Job    string `arg:"" help:"Job id."`
	Follow bool   `short:"f" help:"Keep following until the job ends."`
}

// Run replays (or follows) the job's events, from the events stream or,
// for a job older than it keeps, from the audit store.
func (c *LogsCmd) Run(ctx context.Context, g *Globals) error {
	client, nc, err := g.client(ctx)
	if err != nil {
		return err
	}
	defer nc.Close()
	mode := producer.Replay
	if c.Follow {
		mode = producer.UntilDone
	}
	render := newEventRenderer(g, true)
	if mode == producer.Replay || !c.streamLacks(ctx, client) {
		_, err = client.Follow(ctx, c.Job, mode, render)
		if !errors.Is(err, producer.ErrNoEvents) {
			return notFoundIsUsage(err)
		}
	}
	if g.ClickHouseDSN == "" {
		return notFoundIsUsage(fmt.Errorf("%w: %s (set WINCH_CLICKHOUSE_DSN to read older jobs from the audit store)", producer.ErrNoEvents, c.Job))
	}
	store, err := g.store(ctx)
	if err != nil {
		return err
	}
	defer store.Close()
	events, err := store.Events(ctx, c.Job)
	if err != nil {
		return err
	}
	if len(events) == 0 {
		return &ExitError{Code: exitUsage, Err: fmt.Errorf("no events for job %s in the events stream or the audit store", c.Job)}
	}
	for _, ev := range events {
		if err := render(ev); err != nil {
			return err
		}
	}
	return nil
}

// streamLacks reports whether a job that is over has no events left in the
// stream, so that following it would wait forever.
func (c *LogsCmd) streamLacks(ctx context.Context, client *producer.Client) bool {
	st, err := client.Status(ctx, c.Job)
	if err == nil && !st.State.Terminal() {
		return false
	}
	_, err = client.Follow(ctx, c.Job, producer.Replay, func(schema.Event) error { return nil })
	return errors.Is(err, producer.ErrNoEvents)
}

// StatusCmd is `winch status JOB`.
type StatusCmd struct {
	Job string `arg:"" help:"Job id."`
}

// Run prints the job's state.
func (c *StatusCmd) Run(ctx context.Context, g *Globals) error {
	client, nc, err := g.client(ctx)
	if err != nil {
		return err
	}
	defer nc.Close()
	st, err := client.Status(ctx, c.Job)
	if err != nil {
		return notFoundIsUsage(err)
	}
	if g.jsonOutput() {
		return json.NewEncoder(g.stdio.Out).Encode(st)
	}
	return writeState(g.stdio.Out, st)
}

// PsCmd is `winch ps`.
type PsCmd struct {
	All bool `short:"a" help:"List finished jobs too (as long as their state is kept)."`
}

// Run lists jobs.
func (c *PsCmd) Run(ctx context.Context, g *Globals) error {
	client, nc, err := g.client(ctx)
	if err != nil {
		return err
	}
	defer nc.Close()
	var states []schema.State
	if !c.All {
		states = []schema.State{schema.StateQueued, schema.StateRunning}
	}
	jobs, err := client.List(ctx, states...)
	if err != nil {
		return err
	}
	if g.jsonOutput() {
		if jobs == nil {
			jobs = []schema.JobState{}
		}
		return json.NewEncoder(g.stdio.Out).Encode(jobs)
	}
	return writeJobs(g.stdio.Out, jobs, time.Now())
}

// CancelCmd is `winch cancel JOB`.
type CancelCmd struct {
	Job  string        `arg:"" help:"Job id."`
	Wait time.Duration `default:"10s" help:"How long to wait for a running job to end (0: do not wait)."`
}

// Run cancels the job and, for a running one, waits until it has ended.
func (c *CancelCmd) Run(ctx context.Context, g *Globals) error {
	principal, err := g.principal()
	if err != nil {
		return err
	}
	client, nc, err := g.client(ctx)
	if err != nil {
		return err
	}
	defer nc.Close()
	st, err := client.Cancel(ctx, c.Job, principal)
	if errors.Is(err, producer.ErrFinished) {
		return &ExitError{Code: exitUsage, Err: fmt.Errorf("%w; nothing to cancel", err)}
	}
	if err != nil {
		return notFoundIsUsage(err)
	}
	if !st.State.Terminal() && c.Wait > 0 {
		waitCtx, cancel := context.WithTimeout(ctx, c.Wait)
		defer cancel()
		if final, err := client.Wait(waitCtx, c.Job); err == nil {
			st = final
		} else if waitCtx.Err() == nil {
			return err
		}
	}
	if g.jsonOutput() {
		return json.NewEncoder(g.stdio.Out).Encode(st)
	}
	if st.State.Terminal() {
		_, err = fmt.Fprintf(g.stdio.Out, "%s %s\n", st.JobID, st.State)
	} else {
		_, err = fmt.Fprintf(g.stdio.Out, "%s cancel requested; still %s on %s\n", st.JobID, st.State, st.Worker)
	}
	return err
}

// CommandsCmd is `winch commands`.
type CommandsCmd struct{}

// Run prints the command tree.
func (c *CommandsCmd) Run(ctx context.Context, g *Globals) error {
	_, nc, err := g.client(ctx)
	if err != nil {
		return err
	}
	defer nc.Close()
	catalog, err := g.catalog(ctx, nc)
	if err != nil {
		return err
	}
	cmds := catalog.Commands()
	if g.jsonOutput() {
		type entry struct {
			Name   string                      `json:"name"`
			Module string                      `json:"module"`
			Help   string                      `json:"help"`
			Params map[string]schema.ParamSpec `json:"params"`
		}
		out := make([]entry, len(cmds))
		for i, c := range cmds {
			out[i] = entry{Name: c.Name, Module: c.Module, Help: c.Spec.Help, Params: c.Spec.Params}
		}
		return json.NewEncoder(g.stdio.Out).Encode(out)
	}
	return writeCommands(g.stdio.Out, cmds)
}

func notFoundIsUsage(err error) error {
	if errors.Is(err, producer.ErrNotFound) || errors.Is(err, producer.ErrNoEvents) {
		return &ExitError{Code: exitUsage, Err: err}
	}
	return err
}
