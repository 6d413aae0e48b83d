package audit

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/winchhq/winch/schema"
)

// Job is one job as the audit store knows it.
type Job struct {
	JobID      string         `json:"job_id"`
	State      schema.State   `json:"state"`
	Command    string         `json:"command"`
	Module     string         `json:"module"`
	Commit     string         `json:"commit,omitempty"`
	Principal  string         `json:"principal"`
	Queue      string         `json:"queue"`
	Priority   string         `json:"priority,omitempty"`
	Schedule   string         `json:"schedule,omitempty"`
	ParentID   string         `json:"parent_id,omitempty"`
	Attempt    int            `json:"attempt"`
	Worker     string         `json:"worker"`
	Executor   string         `json:"executor"`
	Params     map[string]any `json:"params,omitempty"`
	ExitCode   *int           `json:"exit_code,omitempty"`
	Error      string         `json:"error,omitempty"`
	Reason     string         `json:"reason,omitempty"`
	CreatedAt  time.Time      `json:"created_at"`
	StartedAt  time.Time      `json:"started_at,omitzero"`
	FinishedAt time.Time      `json:"finished_at,omitzero"`
	DurationMS uint64         `json:"duration_ms"`
}

// Filter selects jobs. Zero fields select everything.
type Filter struct {
	Principal string
	Command   string
	Module    string
	Queue     string
	// Schedule selects the jobs that a schedule's fires made.
	Schedule string
	// Parent selects the children of a fan-out.
	Parent string
	State  schema.State
	JobID  string
	Since  time.Time
	Until  time.Time
	// Grep selects jobs whose output contains the text.
	Grep  string
	Limit int
}

// Jobs returns the jobs that match, newest first. Each job's row is the one
// with the highest version (its end over its start), chosen with argMax
// rather than FINAL, so that a filter on the state can never see a
// superseded row.
func (s *Store) Jobs(ctx context.Context, f Filter) ([]Job, error) {
	var where []string
	var args []any
	add := func(cond string, arg any) {
		where = append(where, cond)
		args = append(args, arg)
	}
	if f.Principal != "" {
		add("principal = ?", f.Principal)
	}
	if f.Command != "" {
		add("command = ?", f.Command)
	}
	if f.Module != "" {
		add("module = ?", f.Module)
	}
	if f.Queue != "" {
		add("queue = ?", f.Queue)
	}
	if f.JobID != "" {
		add("job_id = ?", f.JobID)
	}
	if f.Schedule != "" {
		add("schedule = ?", f.Schedule)
	}
	if f.Parent != "" {
		add("parent_id = ?", f.Parent)
	}
	if !f.Since.IsZero() {
		add("created_at >= toDateTime(?)", f.Since.Unix())
	}
	if !f.Until.IsZero() {
		add("created_at < toDateTime(?)", f.Until.Unix())
	}
	if f.Grep != "" {
		// Output lives in the events table; the time range prunes its
		// monthly partitions.
		sub := "SELECT DISTINCT job_id FROM " + s.db + ".events WHERE kind = 'log' AND position(data, ?) > 0"
		args = append(args, f.Grep)
		if !f.Since.IsZero() {
			sub += " AND time >= toDateTime(?)"
			args = append(args, f.Since.Unix())
		}
		where = append(where, "job_id IN ("+sub+")")
	}
	cond := "1"
	if len(where) > 0 {
		cond = strings.Join(where, " AND ")
	}
	having := ""
	if f.State != "" {
		having = "HAVING last_state = ?"
		args = append(args, string(f.State))
	}
	limit := f.Limit
	if limit <= 0 {
		limit = 100
	}
	q := `SELECT job_id,
		argMax(state, version) AS last_state, any(command), any(module), any(principal), any(queue),
		argMax(attempt, version), argMax(worker, version), argMax(executor, version),
		argMax(param_names, version), argMax(param_values, version),
		argMax(has_exit, version), argMax(exit_code, version), argMax(error, version), argMax(reason, version),
		min(created_at) AS created, argMax(started_at, version), argMax(finished_at, version), argMax(duration_ms, version),
		argMax(commit, version), any(priority), any(schedule), max(parent_id)
	FROM ` + s.db + `.jobs WHERE ` + cond + `
	GROUP BY job_id ` + having + `
	ORDER BY created DESC, job_id DESC
	LIMIT ` + strconv.Itoa(limit)
	rows, err := s.conn.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("query jobs: %w", err)
	}
	defer rows.Close()
	var out []Job
	for rows.Next() {
		var (
			j              Job
			state          string
			attempt        uint32
			names, values  []string
			hasExit        uint8
			code           int32
			started, ended time.Time
		)
		if err := rows.Scan(&j.JobID, &state, &j.Command, &j.Module, &j.Principal, &j.Queue, &attempt, &j.Worker, &j.Executor,
			&names, &values, &hasExit, &code, &j.Error, &j.Reason, &j.CreatedAt, &started, &ended, &j.DurationMS, &j.Commit, &j.Priority, &j.Schedule, &j.ParentID); err != nil {
			return nil, err
		}
		j.State, j.Attempt, j.Params = schema.State(state), int(attempt), unflattenParams(names, values)
		if hasExit == 1 {
			c := int(code)
			j.ExitCode = &c
		}
		j.StartedAt, j.FinishedAt = nonEpoch(started), nonEpoch(ended)
		j.CreatedAt = j.CreatedAt.UTC()
		out = append(out, j)
	}
	return out, rows.Err()
}

// nonEpoch turns ClickHouse's zero DateTime (the epoch) into Go's zero time.
func nonEpoch(t time.Time) time.Time {
	if t.Unix() <= 0 {
		return time.Time{}
	}
	return t.UTC()
}

// Events returns every event of a job, in order, each once.
func (s *Store) Events(ctx context.Context, jobID string) ([]schema.Event, error) {
	rows, err := s.conn.Query(ctx, "SELECT "+eventColumns+" FROM "+s.db+".events WHERE job_id = ? ORDER BY attempt, seq", jobID)
	if err != nil {
		return nil, fmt.Errorf("query events of %s: %w", jobID, err)
	}
	defer rows.Close()
	var out []schema.Event
	for rows.Next() {
		var (
			ev                  schema.Event
			attempt             uint32
			seq, ns             uint64
			secs                time.Time
			kind, state, stream string
			hasExit             uint8
			code                int32
			names, values       []string
			priority            string
		)
		if err := rows.Scan(&ev.JobID, &attempt, &seq, &secs, &ns, &kind, &state, &stream, &ev.Data, &hasExit, &code,
			&ev.Error, &ev.Reason, &ev.Worker, &ev.Command, &ev.Principal, &ev.Queue, &names, &values, &ev.Executor, &ev.Image, &ev.Commit, &priority, &ev.Schedule, &ev.ParentID); err != nil {
			return nil, err
		}
		ev.Priority = schema.Priority(priority)
		ev.Attempt, ev.Seq = int(attempt), int(seq)
		// A batch inserted twice leaves two copies until a merge: keep one.
		if n := len(out); n > 0 && out[n-1].Attempt == ev.Attempt && out[n-1].Seq == ev.Seq {
			continue
		}
		ev.Time = time.Unix(0, int64(ns)).UTC()
		ev.Kind, ev.State, ev.Stream = schema.Kind(kind), schema.State(state), schema.Stream(stream)
		if hasExit == 1 {
			c := int(code)
			ev.ExitCode = &c
		}
		ev.Params = unflattenParams(names, values)
		out = append(out, ev)
	}
	return out, rows.Err()
}

// Prune drops the monthly partitions of both tables that hold nothing newer
// than before, and returns what it dropped ("events 202608"). A partition
// that also holds newer rows is kept whole.
func (s *Store) Prune(ctx context.Context, before time.Time) ([]string, error) {
	cutoff, _ := strconv.Atoi(before.UTC().Format("200601"))
	var dropped []string
	for _, table := range []string{"events", "jobs"} {
		rows, err := s.conn.Query(ctx, "SELECT DISTINCT partition FROM system.parts WHERE database = ? AND table = ? AND active", s.db, table)
		if err != nil {
			return dropped, fmt.Errorf("list partitions of %s: %w", table, err)
		}
		var parts []int
		for rows.Next() {
			var p string
			if err := rows.Scan(&p); err != nil {
				rows.Close()
				return dropped, err
			}
			if n, err := strconv.Atoi(strings.Trim(p, "'")); err == nil && n < cutoff {
				parts = append(parts, n)
			}
		}
		rows.Close()
		sort.Ints(parts)
		for _, p := range parts {
			if err := s.conn.Exec(ctx, fmt.Sprintf("ALTER TABLE %s.%s DROP PARTITION %d", s.db, table, p)); err != nil {
				return dropped, fmt.Errorf("drop partition %d of %s: %w", p, table, err)
			}
			dropped = append(dropped, fmt.Sprintf("%s %d", table, p))
		}
	}
	return dropped, nil
}

// CountEvents counts the distinct events stored for the jobs (all jobs if
// none are named), for checks and lag measurement.
func (s *Store) CountEvents(ctx context.Context, jobIDs ...string) (uint64, error) {
	q := "SELECT count() FROM (SELECT DISTINCT job_id, attempt, seq FROM " + s.db + ".events"
	var args []any
	if len(jobIDs) > 0 {
		q += " WHERE has(?, job_id)"
		args = append(args, jobIDs)
	}
	var n uint64
	err := s.conn.QueryRow(ctx, q+")", args...).Scan(&n)
	return n, err
}

// Bucket is how many jobs created in one minute are in one state now.
type Bucket struct {
	Minute time.Time    `json:"minute"`
	State  schema.State `json:"state"`
	Count  uint64       `json:"count"`
}

// PerMinute counts the jobs created since, by minute of creation and
// latest state (the console's chart), oldest minute first.
func (s *Store) PerMinute(ctx context.Context, since time.Time) ([]Bucket, error) {
	q := `SELECT toStartOfMinute(created) AS minute, last_state, count()
	FROM (SELECT job_id, argMax(state, version) AS last_state, min(created_at) AS created
		FROM ` + s.db + `.jobs WHERE created_at >= toDateTime(?) GROUP BY job_id)
	GROUP BY minute, last_state ORDER BY minute, last_state`
	rows, err := s.conn.Query(ctx, q, since.Unix())
	if err != nil {
		return nil, fmt.Errorf("count jobs per minute: %w", err)
	}
	defer rows.Close()
	var out []Bucket
	for rows.Next() {
		var b Bucket
		var state string
		if err := rows.Scan(&b.Minute, &state, &b.Count); err != nil {
			return nil, err
		}
		b.Minute, b.State = b.Minute.UTC(), schema.State(state)
		out = append(out, b)
	}
	return out, rows.Err()
}
