package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/winchhq/winch/audit"
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
	var archive producer.EventArchive
	if g.ClickHouseDSN != "" {
		store := &lazyStore{g: g}
		defer store.Close()
		archive = store
	}
	if st, err := client.Status(ctx, c.Job); err == nil && st.Fanout != nil && (c.Follow || st.State.Terminal()) {
		return followFanout(ctx, g, client, c.Job, true)
	}
	err = client.Logs(ctx, c.Job, c.Follow, archive, newEventRenderer(g, true))
	switch {
	case errors.Is(err, producer.ErrNoEvents) && archive == nil:
		return usageError("%w: %s (set WINCH_CLICKHOUSE_DSN to read older jobs from the audit store)", producer.ErrNoEvents, c.Job)
	case errors.Is(err, producer.ErrNoEvents):
		return usageError("no events for job %s in the events stream or the audit store", c.Job)
	}
	return notFoundIsUsage(err)
}

// lazyStore is the audit store as winch logs' archive, opened only when a
// job is no longer in the events stream.
type lazyStore struct {
	g     *Globals
	store *audit.Store
}

var _ producer.EventArchive = (*audit.Store)(nil)

func (s *lazyStore) Events(ctx context.Context, job string) ([]schema.Event, error) {
	if s.store == nil {
		store, err := s.g.store(ctx)
		if err != nil {
			return nil, err
		}
		s.store = store
	}
	return s.store.Events(ctx, job)
}

func (s *lazyStore) Close() {
	if s.store != nil {
		s.store.Close()
	}
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
		states = []schema.State{schema.StateQueued, schema.StateWaiting, schema.StateRunning}
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
	reply, err := client.Cancel(ctx, c.Job, principal)
	switch {
	case errors.Is(err, producer.ErrRefused):
		return &ExitError{Code: exitNoPerm, Err: err}
	case errors.Is(err, producer.ErrFinished):
		return &ExitError{Code: exitUsage, Err: fmt.Errorf("%w; nothing to cancel", err)}
	case errors.Is(err, producer.ErrUndecided):
		return &ExitError{Code: exitUnavailable, Err: err}
	case err != nil:
		return notFoundIsUsage(err)
	}
	st, err := client.Status(ctx, c.Job)
	if err != nil {
		return err
	}
	if reply.Outcome == schema.OutcomeStopping && c.Wait > 0 {
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
	client, nc, err := g.client(ctx)
	if err != nil {
		return err
	}
	defer nc.Close()
	catalog, err := client.Catalog(ctx)
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
