package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/winchhq/winch/producer"
	"github.com/winchhq/winch/schedule"
	"github.com/winchhq/winch/schema"
)

// ScheduleCmd is `winch schedule ...`.
type ScheduleCmd struct {
	Add    ScheduleAddCmd    `cmd:"" help:"Add a schedule: a command that runs on a cron, an interval, or once at a time."`
	List   ScheduleListCmd   `cmd:"" help:"List schedules: spec, time zone, command, owner, next fire, last job and its state."`
	Show   ScheduleShowCmd   `cmd:"" help:"Show one schedule and its recent fires."`
	Pause  ScheduleNameCmd   `cmd:"" help:"Stop a schedule firing until it is resumed."`
	Resume ScheduleResumeCmd `cmd:"" help:"Make a paused schedule fire again."`
	Remove ScheduleRemoveCmd `cmd:"" help:"Remove a schedule: it never fires again."`
}

// ScheduleAddCmd is `winch schedule add NAME (--cron|--every|--at) COMMAND [params]`.
type ScheduleAddCmd struct {
	Name     string        `arg:"" help:"Name of the schedule (lower-case letters, digits, '-', '_')."`
	Cron     string        `help:"Five cron fields: minute hour day-of-month month day-of-week, like \"0 3 * * *\"."`
	TZ       string        `name:"tz" help:"Time zone of --cron, like Europe/Berlin (default UTC)."`
	Every    time.Duration `help:"Fire every interval, like 10m (at least 1s)."`
	At       string        `help:"Fire once at this time: RFC 3339 (2026-12-01T03:00:00Z), or YYYY-MM-DD HH:MM[:SS] in local time."`
	CatchUp  string        `name:"catch-up" enum:"run-once,skip" default:"run-once" help:"A fire missed while the broker (or every worker) was down: run it once when back, or skip it (${enum})."`
	Queue    string        `env:"WINCH_QUEUE" default:"default" help:"Queue the fires go to."`
	Priority string        `enum:"high,normal,low" default:"normal" help:"Priority of the fires (${enum})."`
	Timeout  time.Duration `help:"Stop each run after this long (the command's own timeout applies too)."`
	NotifyTargetFlags

	Args []string `arg:"" passthrough:"" name:"command" predictor:"command" help:"MODULE.COMMAND, then its parameters as --name value."`
}

// Run validates the schedule against the command now (the module commit is
// pinned) and stores it.
func (c *ScheduleAddCmd) Run(ctx context.Context, g *Globals) error {
	var at time.Time
	if c.At != "" {
		var err error
		if at, err = parseAt(c.At, time.Now()); err != nil {
			return usageError("--at: %v", err)
		}
	}
	client, nc, err := g.client(ctx)
	if err != nil {
		return err
	}
	defer nc.Close()
	run, err := commandRequest(ctx, g, client, c.Args, c.Queue, c.Priority, c.Timeout)
	if err != nil || run == nil {
		return err
	}
	if run.Notify, err = c.notifyTargets(); err != nil {
		return err
	}
	cat, err := client.Catalog(ctx)
	if err != nil {
		return err
	}
	d, err := client.AddScheduleIn(ctx, cat, producer.ScheduleRequest{
		Name: c.Name, Spec: schedule.Spec{Cron: c.Cron, TimeZone: c.TZ, Every: c.Every, At: at},
		CatchUp: schedule.CatchUp(c.CatchUp), Run: *run,
	})
	if err != nil {
		return scheduleError(err)
	}
	if g.jsonOutput() {
		return json.NewEncoder(g.stdio.Out).Encode(d)
	}
	next := d.Spec().Next(time.Now(), time.Now().Round(time.Second))
	_, err = fmt.Fprintf(g.stdio.Out, "schedule %s added: %s, %s; next fire %s\n", d.Name, d.Spec(), d.Request.Command, formatTime(next))
	return err
}

// commandRequest parses COMMAND [params] against the catalog into a run
// request as the current principal; nil (and no error) when it printed the
// command's help.
func commandRequest(ctx context.Context, g *Globals, client *producer.Client, args []string, queue, priority string, timeout time.Duration) (*producer.RunRequest, error) {
	catalog, err := client.Catalog(ctx)
	if err != nil {
		return nil, err
	}
	if len(args) == 0 {
		return nil, usageError("name a command: MODULE.COMMAND [--param value ...] (winch commands lists them)")
	}
	cmd, err := catalog.Lookup(args[0])
	if err != nil {
		return nil, runError(err)
	}
	params, help, err := parseParams(cmd.Spec, args[1:])
	if err != nil {
		return nil, &ExitError{Code: exitUsage, Err: fmt.Errorf("%s: %w (winch run %s --help)", cmd.Name, err, cmd.Name)}
	}
	if help {
		return nil, printCommandHelp(g.stdio.Out, cmd)
	}
	principal, err := g.principal()
	if err != nil {
		return nil, err
	}
	prio, err := schema.ParsePriority(priority)
	if err != nil {
		return nil, usageError("--priority: %v", err)
	}
	return &producer.RunRequest{Command: cmd.Name, Params: params, Queue: queue, Principal: principal, Timeout: timeout, Priority: prio}, nil
}

// parseAt reads a time for --at: RFC 3339, or a date and time in the local
// zone.
func parseAt(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	for _, layout := range []string{"2006-01-02 15:04:05", "2006-01-02 15:04", "2006-01-02T15:04:05", "2006-01-02T15:04"} {
		if t, err := time.ParseInLocation(layout, s, now.Location()); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("%q is not a time: write RFC 3339 (2026-12-01T03:00:00Z) or YYYY-MM-DD HH:MM[:SS] in local time", s)
}

// scheduleError maps what the library refuses to exit codes.
func scheduleError(err error) error {
	switch {
	case errors.Is(err, schedule.ErrSpec), errors.Is(err, producer.ErrScheduleExists), errors.Is(err, schedule.ErrNotFound):
		return &ExitError{Code: exitUsage, Err: err}
	case errors.Is(err, producer.ErrNotOwner), errors.Is(err, producer.ErrNotPermitted):
		return &ExitError{Code: exitNoPerm, Err: err}
	}
	return runError(err)
}

// ScheduleListCmd is `winch schedule list`.
type ScheduleListCmd struct{}

// Run lists the schedules.
func (c *ScheduleListCmd) Run(ctx context.Context, g *Globals) error {
	client, nc, err := g.client(ctx)
	if err != nil {
		return err
	}
	defer nc.Close()
	list, err := client.Schedules(ctx)
	if err != nil {
		return err
	}
	if g.jsonOutput() {
		enc := json.NewEncoder(g.stdio.Out)
		for _, s := range list {
			if err := enc.Encode(s); err != nil {
				return err
			}
		}
		return nil
	}
	return writeSchedules(g.stdio.Out, list, time.Local)
}

func specText(d schedule.Definition) string {
	switch {
	case d.Cron != "":
		return "cron " + d.Cron
	case d.Every != 0:
		return "every " + shortDuration(time.Duration(d.Every))
	case !d.At.IsZero():
		return "at " + d.At.UTC().Format(time.RFC3339)
	}
	return "-"
}

func writeSchedules(w io.Writer, list []producer.ScheduleInfo, loc *time.Location) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSPEC\tTZ\tCOMMAND\tPARAMS\tOWNER\tQUEUE\tPRIORITY\tCATCH-UP\tNEXT\tLAST JOB\tLAST STATE")
	for _, s := range list {
		next := "-"
		switch {
		case s.Paused:
			next = "paused"
		case !s.Next.IsZero():
			next = s.Next.In(loc).Format("2006-01-02 15:04:05 MST")
		}
		lastJob, lastState := "-", "-"
		if s.Last != nil {
			lastJob, lastState = s.Last.Job, dash(string(s.LastState))
		}
		tz := s.TimeZone
		if tz == "" && s.Cron != "" {
			tz = "UTC"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.Name, specText(s.Definition), dash(tz),
			s.Request.Command, dash(formatParams(s.Request.Params)), s.Owner, s.Request.Queue, s.Request.Priority.Or(), s.CatchUp, next, lastJob, lastState)
	}
	return tw.Flush()
}

// ScheduleShowCmd is `winch schedule show NAME`.
type ScheduleShowCmd struct {
	Name string `arg:"" help:"Schedule name."`
}

// Run shows the schedule and its kept fires.
func (c *ScheduleShowCmd) Run(ctx context.Context, g *Globals) error {
	client, nc, err := g.client(ctx)
	if err != nil {
		return err
	}
	defer nc.Close()
	info, runs, err := client.Schedule(ctx, c.Name)
	if err != nil {
		return scheduleError(err)
	}
	if g.jsonOutput() {
		return json.NewEncoder(g.stdio.Out).Encode(map[string]any{"schedule": info, "runs": runs})
	}
	return writeSchedule(g.stdio.Out, info, runs, time.Local)
}

func writeSchedule(w io.Writer, s producer.ScheduleInfo, runs []producer.ScheduleRun, loc *time.Location) error {
	d := newDetails(w, loc)
	row, at := d.row, d.at
	row("schedule", s.Name)
	row("owner", s.Owner)
	switch {
	case s.Gone:
		row("status", "gone (removed, or an --at that fired); its recent fires follow")
	case s.Paused:
		row("status", "paused")
	default:
		row("status", "active")
	}
	if !s.Gone {
		row("spec", specText(s.Definition))
		row("time zone", s.TimeZone)
		row("catch-up", string(s.CatchUp))
		row("command", s.Request.Command)
		row("params", formatParams(s.Request.Params))
		row("commit", s.Request.ModuleCommit)
		row("queue", s.Request.Queue)
		row("priority", string(s.Request.Priority.Or()))
		if s.Request.Timeout > 0 {
			row("timeout", time.Duration(s.Request.Timeout).String())
		}
		row("created", at(s.CreatedAt))
		row("next fire", at(s.Next))
	}
	if err := d.flush(); err != nil {
		return err
	}
	if len(runs) == 0 {
		_, err := fmt.Fprintln(w, "\nno fires yet")
		return err
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "DUE\tJOB\tSTATE\tNOTE")
	for i := len(runs) - 1; i >= 0; i-- {
		r := runs[i]
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", at(r.Fire), r.Job, dash(string(r.State)), dash(r.Skipped))
	}
	return tw.Flush()
}

// ScheduleNameCmd is `winch schedule pause NAME`.
type ScheduleNameCmd struct {
	Name string `arg:"" help:"Schedule name."`
}

// Run pauses the schedule.
func (c *ScheduleNameCmd) Run(ctx context.Context, g *Globals) error {
	return scheduleAction(ctx, g, c.Name, "paused", (*producer.Client).PauseSchedule)
}

// ScheduleResumeCmd is `winch schedule resume NAME`.
type ScheduleResumeCmd struct {
	Name string `arg:"" help:"Schedule name."`
}

// Run resumes the schedule.
func (c *ScheduleResumeCmd) Run(ctx context.Context, g *Globals) error {
	return scheduleAction(ctx, g, c.Name, "resumed", (*producer.Client).ResumeSchedule)
}

// ScheduleRemoveCmd is `winch schedule remove NAME`.
type ScheduleRemoveCmd struct {
	Name string `arg:"" help:"Schedule name."`
}

// Run removes the schedule.
func (c *ScheduleRemoveCmd) Run(ctx context.Context, g *Globals) error {
	return scheduleAction(ctx, g, c.Name, "removed", (*producer.Client).RemoveSchedule)
}

func scheduleAction(ctx context.Context, g *Globals, name, done string, act func(*producer.Client, context.Context, string, string) error) error {
	principal, err := g.principal()
	if err != nil {
		return err
	}
	client, nc, err := g.client(ctx)
	if err != nil {
		return err
	}
	defer nc.Close()
	if err := act(client, ctx, name, principal); err != nil {
		return scheduleError(err)
	}
	if g.jsonOutput() {
		return json.NewEncoder(g.stdio.Out).Encode(map[string]string{"schedule": name, "status": done})
	}
	_, err = fmt.Fprintf(g.stdio.Out, "schedule %s %s\n", name, strings.TrimSpace(done))
	return err
}

// shortDuration writes 10m rather than 10m0s, and 1h rather than 1h0m0s.
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
