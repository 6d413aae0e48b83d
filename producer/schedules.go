package producer

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/winchhq/winch/modules"
	"github.com/winchhq/winch/schedule"
	"github.com/winchhq/winch/schema"
)

// Schedule errors that carry a decision for the caller.
var (
	// ErrScheduleExists: the name is taken (by the caller or someone else).
	ErrScheduleExists = errors.New("schedule exists")
	// ErrNotOwner: only a schedule's owner may pause, resume or remove it
	// (with authorization on, the NATS server enforces it too).
	ErrNotOwner = errors.New("not the schedule's owner")
)

// ScheduleRequest asks for a schedule: Run (command, parameters, queue,
// principal, timeout, priority) whenever Spec says.
type ScheduleRequest struct {
	Name    string
	Spec    schedule.Spec
	CatchUp schedule.CatchUp
	Run     RunRequest
}

// ScheduleInfo is a schedule with when it fires next and what its last fire
// became.
type ScheduleInfo struct {
	schedule.Entry
	// Next is the next fire (zero: paused, or an --at that passed).
	Next time.Time `json:"next,omitzero"`
	// Last is the last fire's record, if any; LastState its job's state.
	Last      *schedule.Run `json:"last,omitempty"`
	LastState schema.State  `json:"last_state,omitempty"`
}

// ScheduleRun is one fire of a schedule, with the state of its job.
type ScheduleRun struct {
	schedule.Run
	State schema.State `json:"state,omitempty"`
}

func (c *Client) schedules(ctx context.Context) (*schedule.Store, error) {
	st, err := schedule.Open(ctx, c.js)
	if err != nil {
		return nil, fmt.Errorf("%w (run `winch init` to add the schedules stream): %w", ErrNoTopology, err)
	}
	return st, nil
}

// PrepareSchedule checks a schedule request as AddSchedule would, without
// writing anything: the name, the spec at now, the command and its
// parameters against cat (pinning the module's commit).
func PrepareSchedule(cat *modules.Catalog, req ScheduleRequest, now time.Time) (schedule.Definition, error) {
	if !schedule.ValidName(req.Name) {
		return schedule.Definition{}, fmt.Errorf("%w: %q is not a schedule name: use 1 to 40 lower-case letters, digits, '-' or '_', starting with a letter", schedule.ErrSpec, req.Name)
	}
	if err := req.Spec.Check(now); err != nil {
		return schedule.Definition{}, err
	}
	catchUp, err := schedule.ParseCatchUp(string(req.CatchUp))
	if err != nil {
		return schedule.Definition{}, err
	}
	r, err := Prepare(cat, req.Run)
	if err != nil {
		return schedule.Definition{}, err
	}
	if r.Queue == "" {
		r.Queue = schema.DefaultQueue
	}
	if !schema.ValidPrincipal(r.Principal) {
		return schedule.Definition{}, &schema.RequestError{Reason: fmt.Sprintf("principal %q is not valid", r.Principal)}
	}
	owner := r.Principal
	r.ID, r.Principal, r.IdempotencyKey, r.Version = "", "", "", 0
	return schedule.Definition{
		Version: schedule.Version, Name: req.Name, Owner: owner,
		Cron: strings.Join(strings.Fields(req.Spec.Cron), " "), TimeZone: req.Spec.TimeZone,
		Every: schema.Duration(req.Spec.Every), At: req.Spec.At.UTC(),
		CatchUp: catchUp, Request: r, CreatedAt: now.UTC(),
	}, nil
}

// AddSchedule validates the schedule (PrepareSchedule, against the
// registry's catalog now) and stores it; the server fires it from now on.
// A name already in use is ErrScheduleExists.
func (c *Client) AddSchedule(ctx context.Context, req ScheduleRequest) (schedule.Definition, error) {
	cat, err := c.Catalog(ctx)
	if err != nil {
		return schedule.Definition{}, err
	}
	return c.AddScheduleIn(ctx, cat, req)
}

// AddScheduleIn is AddSchedule against a catalog the caller holds.
func (c *Client) AddScheduleIn(ctx context.Context, cat *modules.Catalog, req ScheduleRequest) (schedule.Definition, error) {
	d, err := PrepareSchedule(cat, req, time.Now())
	if err != nil {
		return schedule.Definition{}, err
	}
	st, err := c.schedules(ctx)
	if err != nil {
		return schedule.Definition{}, err
	}
	if have, err := st.Get(ctx, d.Name); err == nil {
		if have.Owner == d.Owner {
			return schedule.Definition{}, fmt.Errorf("%w: you already have a schedule %s (winch schedule remove %s first)", ErrScheduleExists, d.Name, d.Name)
		}
		return schedule.Definition{}, fmt.Errorf("%w: %s belongs to %s; choose another name", ErrScheduleExists, d.Name, have.Owner)
	} else if !errors.Is(err, schedule.ErrNotFound) {
		return schedule.Definition{}, err
	}
	if err := c.putSchedule(ctx, st, d); err != nil {
		return schedule.Definition{}, err
	}
	return d, nil
}

func (c *Client) putSchedule(ctx context.Context, st *schedule.Store, d schedule.Definition) error {
	err := st.Put(ctx, d)
	if last := c.nc.LastError(); err != nil && errors.Is(last, nats.ErrPermissionViolation) {
		return fmt.Errorf("%w: you may not write schedules as %q (with authorization on, your principal is your NATS user)", ErrNotPermitted, d.Owner)
	}
	return err
}

// RunAt is a delayed run: a one-off schedule named "at-" and a random
// suffix that fires at at, rounded up to the whole second schedules fire
// on. It returns the id the job will have.
func (c *Client) RunAt(ctx context.Context, cat *modules.Catalog, run RunRequest, at time.Time, catchUp schedule.CatchUp) (string, schedule.Definition, error) {
	name := "at-" + schema.NewJobID()[16:]
	// Schedules fire on whole seconds: round up, so that the run is never
	// earlier than asked, nor a time just ahead (--in 1s) already past
	// once stored.
	if t := at.Truncate(time.Second); !t.Equal(at) {
		at = t.Add(time.Second)
	}
	d, err := PrepareSchedule(cat, ScheduleRequest{Name: name, Spec: schedule.Spec{At: at}, CatchUp: catchUp, Run: run}, time.Now())
	if err != nil {
		return "", schedule.Definition{}, err
	}
	st, err := c.schedules(ctx)
	if err != nil {
		return "", schedule.Definition{}, err
	}
	if err := c.putSchedule(ctx, st, d); err != nil {
		return "", schedule.Definition{}, err
	}
	return schedule.JobID(d.Name, d.Owner, d.At), d, nil
}

// Schedules lists every schedule with its next fire and last job.
func (c *Client) Schedules(ctx context.Context) ([]ScheduleInfo, error) {
	st, err := c.schedules(ctx)
	if err != nil {
		return nil, err
	}
	entries, err := st.List(ctx)
	if err != nil {
		return nil, err
	}
	lasts, err := st.LastRuns(ctx)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	out := make([]ScheduleInfo, 0, len(entries))
	for _, e := range entries {
		info := ScheduleInfo{Entry: e}
		if r, ok := lasts[scheduleKey(e.Name, e.Owner)]; ok {
			info.Last = &r
			info.LastState = c.runState(ctx, r)
		}
		info.Next = next(e, info.Last, now)
		out = append(out, info)
	}
	return out, nil
}

func scheduleKey(name, owner string) string { return "winch.schedules." + name + "." + owner }

// next is when e fires next, as far as a client can tell.
func next(e schedule.Entry, last *schedule.Run, now time.Time) time.Time {
	if e.Paused || e.Gone {
		return time.Time{}
	}
	if e.Every != 0 {
		if last != nil && last.Next.After(now) {
			return last.Next
		}
		from := e.Stored.Round(time.Second)
		if last != nil {
			from = last.Fire
		}
		return e.Spec().Next(now, from)
	}
	return e.Spec().Next(now, time.Time{})
}

func (c *Client) runState(ctx context.Context, r schedule.Run) schema.State {
	if r.Skipped != "" {
		return "skipped"
	}
	st, err := c.Status(ctx, r.Job)
	if err != nil {
		return ""
	}
	return st.State
}

// Schedule is one schedule and its kept fires, oldest first. A schedule
// that is gone (removed, or an --at that fired) but has fire records is
// returned with Gone set.
func (c *Client) Schedule(ctx context.Context, name string) (ScheduleInfo, []ScheduleRun, error) {
	st, err := c.schedules(ctx)
	if err != nil {
		return ScheduleInfo{}, nil, err
	}
	e, err := st.Get(ctx, name)
	if errors.Is(err, schedule.ErrNotFound) {
		owner, ok, ferr := st.RecordedOwner(ctx, name)
		if ferr != nil || !ok {
			return ScheduleInfo{}, nil, err
		}
		e = schedule.Entry{Definition: schedule.Definition{Name: name, Owner: owner}, Gone: true}
	} else if err != nil {
		return ScheduleInfo{}, nil, err
	}
	runs, err := st.Runs(ctx, e.Name, e.Owner)
	if err != nil {
		return ScheduleInfo{}, nil, err
	}
	info := ScheduleInfo{Entry: e}
	out := make([]ScheduleRun, len(runs))
	for i, r := range runs {
		out[i] = ScheduleRun{Run: r, State: c.runState(ctx, r)}
	}
	if len(runs) > 0 {
		last := runs[len(runs)-1]
		info.Last, info.LastState = &last, out[len(out)-1].State
	}
	info.Next = next(e, info.Last, time.Now())
	return info, out, nil
}

// PauseSchedule stops the schedule firing until ResumeSchedule; by must be
// its owner.
func (c *Client) PauseSchedule(ctx context.Context, name, by string) error {
	return c.setPaused(ctx, name, by, true)
}

// ResumeSchedule makes a paused schedule fire again (an interval counts
// from now). It is checked again as AddSchedule checks a new one, against
// the registry's catalog now (a module that moved on is pinned at its new
// commit; parameters it no longer takes are refused): by must own it, and
// an --at schedule whose time passed cannot be resumed.
func (c *Client) ResumeSchedule(ctx context.Context, name, by string) error {
	return c.setPaused(ctx, name, by, false)
}

func (c *Client) setPaused(ctx context.Context, name, by string, paused bool) error {
	st, e, err := c.ownSchedule(ctx, name, by)
	if err != nil {
		return err
	}
	d := e.Definition
	if !paused {
		if !e.At.IsZero() && !e.At.After(time.Now()) {
			return fmt.Errorf("%w: schedule %s was due at %s, which has passed while it was paused; remove it, and add it again with a new --at", schedule.ErrSpec, name, e.At.Format(time.RFC3339))
		}
		if d, err = c.recheck(ctx, e.Definition); err != nil {
			return fmt.Errorf("resume %s: %w", name, err)
		}
	}
	d.Paused = paused
	return c.putSchedule(ctx, st, d)
}

// recheck validates a stored definition again as PrepareSchedule does a
// new one, run as its owner: what is resumed was checked when it is
// written, whatever wrote what was read.
func (c *Client) recheck(ctx context.Context, d schedule.Definition) (schedule.Definition, error) {
	cat, err := c.Catalog(ctx)
	if err != nil {
		return schedule.Definition{}, err
	}
	r := d.Request
	again, err := PrepareSchedule(cat, ScheduleRequest{
		Name: d.Name, Spec: d.Spec(), CatchUp: d.CatchUp,
		Run: RunRequest{
			Command: r.Command, Params: r.Params, Queue: r.Queue, Principal: d.Owner,
			Timeout: time.Duration(r.Timeout), Notify: r.Notify, Priority: r.Priority,
			Each: r.Each, Parallel: r.Parallel, FailFast: r.FailFast,
		},
	}, time.Now())
	if err != nil {
		return schedule.Definition{}, err
	}
	again.CreatedAt = d.CreatedAt
	return again, nil
}

// RemoveSchedule deletes the schedule: it never fires again (its kept fire
// records stay). by must be its owner.
func (c *Client) RemoveSchedule(ctx context.Context, name, by string) error {
	st, e, err := c.ownSchedule(ctx, name, by)
	if err != nil {
		return err
	}
	return st.Remove(ctx, e.Name, e.Owner)
}

// ownSchedule reads schedule name for a change that only its owner may
// make: by must be the owner.
func (c *Client) ownSchedule(ctx context.Context, name, by string) (*schedule.Store, schedule.Entry, error) {
	st, err := c.schedules(ctx)
	if err != nil {
		return nil, schedule.Entry{}, err
	}
	e, err := st.Get(ctx, name)
	if err != nil {
		return nil, schedule.Entry{}, err
	}
	if e.Owner != by || !schema.ValidPrincipal(by) {
		return nil, schedule.Entry{}, fmt.Errorf("%w: %s belongs to %s", ErrNotOwner, name, e.Owner)
	}
	return st, e, nil
}
