package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/winchhq/winch/broker"
	"github.com/winchhq/winch/jobs"
	"github.com/winchhq/winch/modules"
	"github.com/winchhq/winch/producer"
	"github.com/winchhq/winch/schedule"
	"github.com/winchhq/winch/schema"
)

// SubmitRequest is the body of POST /v1/jobs. The principal is not a
// field: it is whoever the credentials say.
type SubmitRequest struct {
	// Command is module.command, like core.echo.
	Command string `json:"command"`
	// Params by name, as JSON values of their types.
	Params map[string]any `json:"params,omitempty"`
	// Queue defaults to "default".
	Queue string `json:"queue,omitempty"`
	// Timeout bounds the run, like "30s" (the command's own applies too).
	Timeout string `json:"timeout,omitempty"`
	// Each makes it a fan-out: one child job per value, at most Parallel
	// at once, stopping at the first failure if FailFast (winch run --each).
	Each     *schema.Each `json:"each,omitempty"`
	Parallel int          `json:"parallel,omitempty"`
	FailFast bool         `json:"fail_fast,omitempty"`
	// Priority is high, normal (the default) or low (winch run --priority).
	Priority string `json:"priority,omitempty"`
	// Notify are webhooks to call when the job ends (winch run --notify,
	// --notify-on, --notify-format).
	Notify *NotifyRequest `json:"notify,omitempty"`
	// At (RFC 3339) or In (a duration, like 2h) make it a delayed run: a
	// one-off schedule whose fire is the job (winch run --at/--in).
	At string `json:"at,omitempty"`
	In string `json:"in,omitempty"`
}

// NotifyRequest is --notify URL... --notify-on STATE,... --notify-format.
type NotifyRequest struct {
	URLs   []string       `json:"urls"`
	On     []schema.State `json:"on,omitempty"`
	Format string         `json:"format,omitempty"`
}

// SubmitFields are the names a submit body may have, from SubmitRequest's
// own tags: the decoder refuses any other.
var SubmitFields = jsonFields(reflect.TypeFor[SubmitRequest]())

func jsonFields(t reflect.Type) []string {
	var out []string
	for f := range t.Fields() {
		out = append(out, strings.Split(f.Tag.Get("json"), ",")[0])
	}
	return out
}

// errBody is a body that is not a SubmitRequest; its message says what to
// send instead.
type errBody struct{ msg string }

func (e *errBody) Error() string { return e.msg }

// DecodeSubmit decodes a submit body strictly: one JSON object, known
// fields of their types, numbers kept exact. Each error says what was
// wrong and what to send.
func DecodeSubmit(data []byte, maxParams int) (SubmitRequest, error) {
	var req SubmitRequest
	if len(bytes.TrimSpace(data)) == 0 {
		return req, &errBody{`the body is empty: send a JSON object like {"command": "core.echo", "params": {"text": "hi"}}`}
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return SubmitRequest{}, &errBody{describeDecodeError(err, data)}
	}
	if _, err := dec.Token(); err != io.EOF {
		return SubmitRequest{}, &errBody{"the body holds more than one JSON value: send one object"}
	}
	// encoding/json matches names regardless of case; the API does not.
	var names map[string]json.RawMessage
	if err := json.Unmarshal(data, &names); err == nil {
		for name := range names {
			if !slices.Contains(SubmitFields, name) {
				return SubmitRequest{}, &errBody{fmt.Sprintf("unknown field %q: a submit takes %s (names are lower case; parameters go inside \"params\")", name, strings.Join(SubmitFields, ", "))}
			}
		}
	}
	if req.Command == "" {
		return SubmitRequest{}, &errBody{`"command" is required: module.command, like core.echo (GET /v1/commands lists them)`}
	}
	if req.Each == nil && (req.Parallel != 0 || req.FailFast) {
		return SubmitRequest{}, &errBody{`"parallel" and "fail_fast" apply to a fan-out: give "each" too, like "each": {"param": "name", "values": ["a", "b"]}`}
	}
	if len(req.Params) > maxParams {
		return SubmitRequest{}, &errBody{fmt.Sprintf("%d parameters is more than the %d a request may have", len(req.Params), maxParams)}
	}
	return req, nil
}

func describeDecodeError(err error, data []byte) string {
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	msg := strings.TrimPrefix(err.Error(), "json: ")
	switch {
	case errors.As(err, &syntax):
		return fmt.Sprintf("the body is not valid JSON (at byte %d: %s): send a JSON object like {\"command\": \"core.echo\", \"params\": {\"text\": \"hi\"}}", syntax.Offset, msg)
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return "the body ends in the middle of its JSON: send a whole object"
	case errors.As(err, &typ):
		field := typ.Field
		if field == "" {
			return fmt.Sprintf("the body must be a JSON object, not %s", typ.Value)
		}
		want := "a string"
		switch {
		case strings.HasPrefix(field, "params"):
			want = "an object of parameters by name"
		case field == "each":
			want = `an object like {"param": "name", "values": ["a", "b"]}`
		case field == "each.values":
			want = "a list of strings"
		case field == "parallel":
			want = "a whole number"
		case field == "fail_fast":
			want = "true or false"
		case field == "notify":
			want = `an object like {"urls": ["https://example.com/hook"], "on": ["failed"], "format": "json"}`
		case field == "notify.urls", field == "notify.on":
			want = "a list of strings"
		}
		return fmt.Sprintf("%q must be %s, not %s", field, want, typ.Value)
	case strings.HasPrefix(msg, "unknown field "):
		name := strings.Trim(strings.TrimPrefix(msg, "unknown field "), `"`)
		if name == "principal" {
			return `"principal" is not a field: a job's principal is who the credentials say`
		}
		// encoding/json does not say where: a name the body's top level
		// does not have is inside one of its objects.
		var top map[string]json.RawMessage
		if json.Unmarshal(data, &top) == nil {
			if _, ok := top[name]; !ok {
				var in, takes []string
				for _, nested := range []struct{ field, takes string }{{"notify", "urls, on, format"}, {"each", "param, values"}} {
					if _, ok := top[nested.field]; ok {
						in = append(in, strconv.Quote(nested.field))
						takes = append(takes, nested.field+" takes "+nested.takes)
					}
				}
				if len(in) > 0 {
					return fmt.Sprintf("unknown field %q in %s: %s", name, strings.Join(in, " or "), strings.Join(takes, "; "))
				}
			}
		}
		return fmt.Sprintf("unknown field %q: a submit takes %s (parameters go inside \"params\")", name, strings.Join(SubmitFields, ", "))
	}
	return "the body could not be read as a submit: " + msg
}

// idempotencyKey checks the Idempotency-Key header.
func idempotencyKey(r *http.Request) (string, error) {
	k := r.Header.Get("Idempotency-Key")
	if k == "" {
		return "", nil
	}
	if len(k) > 255 || strings.IndexFunc(k, func(c rune) bool { return c > unicode.MaxASCII || !unicode.IsPrint(c) }) >= 0 {
		return "", errors.New("the Idempotency-Key header must be at most 255 printable ASCII characters")
	}
	return k, nil
}

// Submitted is the answer to a submit.
type Submitted struct {
	ID        string `json:"id"`
	Command   string `json:"command"`
	Queue     string `json:"queue"`
	Principal string `json:"principal"`
	// State is left out for a delayed run: its job exists from At on.
	State schema.State `json:"state,omitempty"`
	// Duplicate: a request with this id (the same Idempotency-Key) was
	// already queued; nothing new runs.
	Duplicate bool  `json:"duplicate"`
	Links     Links `json:"links"`
	// At and Schedule, for a delayed run: when it runs, and the one-off
	// schedule that runs it (removing that schedule cancels it).
	At       *time.Time `json:"at,omitempty"`
	Schedule string     `json:"schedule,omitempty"`
	// Warnings are what the caller may want to fix that did not stop the
	// submit (webhooks with no notifier running), as winch run says them.
	Warnings []string `json:"warnings,omitempty"`
}

// warnings are winch run's notes on a submit that went through.
func (s *Server) warnings(ctx context.Context, jobID string, notify []schema.NotifyTarget) []string {
	if warning := s.cfg.Client.NotifierWarning(ctx, jobID, notify); warning != "" {
		return []string{warning}
	}
	return nil
}

// Links are where to look at a job next.
type Links struct {
	Self    string `json:"self"`
	Events  string `json:"events"`
	Cancel  string `json:"cancel"`
	Console string `json:"console"`
}

func linksOf(id string) Links {
	p := "/v1/jobs/" + url.PathEscape(id)
	return Links{Self: p, Events: p + "/events", Cancel: p + "/cancel", Console: "/#/jobs/" + url.PathEscape(id)}
}

func (s *Server) submit(w http.ResponseWriter, r *http.Request, id Identity) {
	_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(30 * time.Second))
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.Limits.MaxBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			problem(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("the body is larger than %d bytes", tooBig.Limit))
			return
		}
		problem(w, http.StatusBadRequest, "the body could not be read: "+err.Error())
		return
	}
	body, err := DecodeSubmit(data, s.cfg.Limits.MaxParams)
	if err != nil {
		problem(w, http.StatusBadRequest, err.Error())
		return
	}
	key, err := idempotencyKey(r)
	if err != nil {
		problem(w, http.StatusBadRequest, err.Error())
		return
	}
	var timeout time.Duration
	if body.Timeout != "" {
		if timeout, err = time.ParseDuration(body.Timeout); err != nil || timeout < 0 {
			problem(w, http.StatusBadRequest, fmt.Sprintf("\"timeout\" %q: want a duration like 30s or 10m", body.Timeout))
			return
		}
	}
	opts, status, err := runOptions(body, key, time.Now())
	if err != nil {
		problem(w, status, err.Error())
		return
	}
	// From here the request is the gateway's to finish: a caller that goes
	// away does not leave it half-published.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 15*time.Second)
	defer cancel()
	catalog, err := s.cfg.Client.Catalog(ctx)
	if err != nil {
		s.fail(w, err)
		return
	}
	run := producer.RunRequest{
		Command: body.Command, Params: body.Params, Queue: body.Queue, Principal: id.Principal,
		IdempotencyKey: key, Timeout: timeout, Each: body.Each, Parallel: body.Parallel, FailFast: body.FailFast,
		Priority: opts.priority, Notify: opts.notify,
	}
	if !opts.at.IsZero() {
		s.submitLater(ctx, w, catalog, run, opts.at)
		return
	}
	prepared, err := producer.Prepare(catalog, run)
	if err != nil {
		s.fail(w, err)
		return
	}
	sub, err := s.cfg.Client.Submit(ctx, prepared)
	if err != nil {
		s.fail(w, err)
		return
	}
	jobID := sub.Request.ID
	s.log.Info("job submitted", "job", jobID, "command", prepared.Command, "principal", id.Principal, "duplicate", sub.Duplicate)
	out := Submitted{ID: jobID, Command: sub.Request.Command, Queue: sub.Request.Queue, Principal: id.Principal,
		State: schema.StateQueued, Duplicate: sub.Duplicate, Links: linksOf(jobID), Warnings: s.warnings(ctx, jobID, prepared.Notify)}
	if sub.Duplicate {
		if st, err := s.cfg.Client.Status(ctx, jobID); err == nil {
			out.State = st.State
		}
	}
	if cmd, err := catalog.Lookup(prepared.Command); err == nil && len(cmd.Spec.Roles) > 0 {
		// The workers decide who may run a command with roles (their
		// WINCH_ROLES_FILE, as for the CLI); wait for that decision so that
		// a refusal is a 403 here, and on the record there.
		wait, stop := context.WithTimeout(ctx, s.cfg.Limits.AdmissionWait)
		ev, err := s.cfg.Client.AwaitAdmission(wait, jobID)
		stop()
		switch {
		case err == nil && ev.Kind == schema.KindRejected && ev.Reason == schema.ReasonForbidden:
			writeProblem(w, Problem{Status: http.StatusForbidden, Detail: ev.Error, JobID: jobID})
			return
		case err == nil && ev.Kind == schema.KindRejected:
			writeProblem(w, Problem{Status: http.StatusUnprocessableEntity, Detail: ev.Error, JobID: jobID})
			return
		case err == nil:
			out.State = ev.State
			if out.State == "" {
				out.State = schema.StateRunning
			}
		}
	}
	w.Header().Set("Location", out.Links.Self)
	writeJSON(w, http.StatusAccepted, out)
}

// submitOptions are what a submit asks beyond the command: as winch run's
// --priority, --notify* and --at/--in.
type submitOptions struct {
	priority schema.Priority
	notify   []schema.NotifyTarget
	at       time.Time // zero: now
}

// runOptions checks a submit's priority, webhooks and time as winch run
// checks its flags; the status is 400 for a value of the wrong form, 422
// for a time already past.
func runOptions(body SubmitRequest, key string, now time.Time) (submitOptions, int, error) {
	var o submitOptions
	var err error
	if o.priority, err = schema.ParsePriority(body.Priority); err != nil {
		return o, http.StatusBadRequest, fmt.Errorf("\"priority\": %w", err)
	}
	if n := body.Notify; n != nil {
		if len(n.URLs) == 0 {
			return o, http.StatusBadRequest, errors.New(`"notify" needs "urls": the webhooks to call when the job ends, like {"urls": ["https://example.com/hook"]}`)
		}
		if len(n.URLs) > schema.MaxNotifyTargets {
			return o, http.StatusBadRequest, fmt.Errorf(`"notify" has %d urls; at most %d`, len(n.URLs), schema.MaxNotifyTargets)
		}
		if o.notify, err = schema.NotifyTargets(n.URLs, n.On, n.Format); err != nil {
			return o, http.StatusBadRequest, fmt.Errorf(`"notify": %w`, err)
		}
	}
	if body.At == "" && body.In == "" {
		return o, 0, nil
	}
	switch {
	case body.At != "" && body.In != "":
		return o, http.StatusBadRequest, errors.New(`give "at" or "in", not both`)
	case body.Each != nil:
		return o, http.StatusBadRequest, errors.New(`"at" and "in" do not take "each" yet: schedule each run, or run the fan-out now`)
	case key != "":
		return o, http.StatusBadRequest, errors.New(`the Idempotency-Key header does not apply to a delayed run ("at", "in"): its job id comes from its schedule and time`)
	}
	if body.In != "" {
		d, err := time.ParseDuration(body.In)
		if err != nil || d <= 0 {
			return o, http.StatusBadRequest, fmt.Errorf(`"in" %q: want a duration ahead, like 90s or 2h`, body.In)
		}
		o.at = now.Add(d) // RunAt rounds it up to the second it fires on

	} else {
		if o.at, err = time.Parse(time.RFC3339, body.At); err != nil {
			return o, http.StatusBadRequest, fmt.Errorf(`"at" %q is not a time: write RFC 3339 with its offset, like 2026-12-01T03:00:00Z`, body.At)
		}
		if !o.at.Truncate(time.Second).After(now) {
			return o, http.StatusUnprocessableEntity, fmt.Errorf(`"at" %s is not in the future (it is %s now)`, o.at.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
		}
	}
	return o, 0, nil
}

// submitLater is winch run --at/--in: a one-off schedule, whose fire is an
// ordinary job with an id known now.
func (s *Server) submitLater(ctx context.Context, w http.ResponseWriter, catalog *modules.Catalog, run producer.RunRequest, at time.Time) {
	jobID, d, err := s.cfg.Client.RunAt(ctx, catalog, run, at, "")
	if err != nil {
		s.fail(w, err)
		return
	}
	s.log.Info("job scheduled", "job", jobID, "command", d.Request.Command, "principal", run.Principal, "at", d.At, "schedule", d.Name)
	when := d.At.UTC()
	out := Submitted{ID: jobID, Command: d.Request.Command, Queue: d.Request.Queue, Principal: run.Principal,
		Links: linksOf(jobID), At: &when, Schedule: d.Name, Warnings: s.warnings(ctx, jobID, run.Notify)}
	w.Header().Set("Location", out.Links.Self)
	writeJSON(w, http.StatusAccepted, out)
}

// fail answers with the problem err is: what the caller can fix is a 4xx
// saying what; what is the system's is a 5xx.
func (s *Server) fail(w http.ResponseWriter, err error) {
	var invalid *producer.InvalidParamsError
	var reqErr *schema.RequestError
	switch {
	case errors.As(err, &invalid):
		p := Problem{Status: http.StatusUnprocessableEntity, Detail: err.Error()}
		for _, e := range invalid.Params {
			p.Errors = append(p.Errors, ParamProblem{Param: e.Param, Message: e.Message})
		}
		writeProblem(w, p)
	case errors.Is(err, producer.ErrUnknownCommand):
		problem(w, http.StatusUnprocessableEntity, err.Error()+" (GET /v1/commands lists them)")
	case errors.As(err, &reqErr), errors.Is(err, schedule.ErrSpec):
		problem(w, http.StatusUnprocessableEntity, err.Error())
	case errors.Is(err, producer.ErrNotFound):
		problem(w, http.StatusNotFound, err.Error())
	case errors.Is(err, producer.ErrNoTopology), errors.Is(err, producer.ErrRegistryUnavailable), errors.Is(err, broker.ErrUnreachable):
		problem(w, http.StatusServiceUnavailable, err.Error())
	case errors.Is(err, producer.ErrNotPermitted):
		s.log.Error("the gateway's NATS user may not publish for this principal", "err", err)
		problem(w, http.StatusServiceUnavailable, "the gateway's NATS user may not publish requests for this principal: give it the gateway user of nats.conf")
	case errors.Is(err, context.DeadlineExceeded):
		problem(w, http.StatusGatewayTimeout, "NATS did not answer in time: "+err.Error())
	default:
		s.log.Error("gateway request failed", "err", err)
		problem(w, http.StatusInternalServerError, "the gateway failed: "+err.Error())
	}
}

// Job is a job's state with where to look next.
type Job struct {
	schema.JobState
	Links Links `json:"links"`
}

func (s *Server) getJob(w http.ResponseWriter, r *http.Request, _ Identity) {
	st, err := s.cfg.Client.Status(r.Context(), r.PathValue("id"))
	if err != nil {
		s.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, Job{JobState: st, Links: linksOf(st.JobID)})
}

// stateGroups are the names the list's state filter takes beside states.
var stateGroups = map[string][]schema.State{
	"active":   {schema.StateQueued, schema.StateWaiting, schema.StateRunning},
	"finished": {schema.StateSucceeded, schema.StateFailed, schema.StateCancelled, schema.StateTimedOut, schema.StateRejected, schema.StateDead},
}

var allStates = []schema.State{schema.StateQueued, schema.StateWaiting, schema.StateRunning, schema.StateSucceeded, schema.StateFailed,
	schema.StateCancelled, schema.StateTimedOut, schema.StateRejected, schema.StateDead}

// parseStates reads state=queued,running (or active, finished), repeatable.
func parseStates(vals []string) ([]schema.State, error) {
	var out []schema.State
	for _, v := range vals {
		for _, name := range strings.Split(v, ",") {
			name = trimmed(name)
			switch {
			case name == "":
			case stateGroups[name] != nil:
				out = append(out, stateGroups[name]...)
			case slices.Contains(allStates, schema.State(name)):
				out = append(out, schema.State(name))
			default:
				return nil, fmt.Errorf("state %q is not one of queued, running, succeeded, failed, cancelled, timed_out, rejected, dead, active, finished", name)
			}
		}
	}
	return out, nil
}

func parseLimit(s string, def, max int) (int, error) {
	if s == "" {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > max {
		return 0, fmt.Errorf("limit %q: want a whole number from 1 to %d", s, max)
	}
	return n, nil
}

// JobList is a page of jobs, newest first.
type JobList struct {
	Jobs []Job `json:"jobs"`
	// Truncated: more jobs matched than the limit.
	Truncated bool `json:"truncated"`
}

func (s *Server) listJobs(w http.ResponseWriter, r *http.Request, _ Identity) {
	q := r.URL.Query()
	states, err := parseStates(q["state"])
	if err != nil {
		problem(w, http.StatusBadRequest, err.Error())
		return
	}
	limit, err := parseLimit(q.Get("limit"), 100, 1000)
	if err != nil {
		problem(w, http.StatusBadRequest, err.Error())
		return
	}
	list, err := s.cfg.Client.List(r.Context(), states...)
	if err != nil {
		s.fail(w, err)
		return
	}
	out := JobList{Jobs: []Job{}}
	for i := len(list) - 1; i >= 0; i-- {
		st := list[i]
		if (q.Get("principal") != "" && st.Principal != q.Get("principal")) ||
			(q.Get("command") != "" && st.Command != q.Get("command")) ||
			(q.Get("queue") != "" && st.Queue != q.Get("queue")) {
			continue
		}
		if len(out.Jobs) == limit {
			out.Truncated = true
			break
		}
		out.Jobs = append(out.Jobs, Job{JobState: st, Links: linksOf(st.JobID)})
	}
	writeJSON(w, http.StatusOK, out)
}

// CancelResult is the workers' decision on a cancel.
type CancelResult struct {
	JobID   string                `json:"job_id"`
	Outcome schema.ControlOutcome `json:"outcome"`
	State   schema.JobState       `json:"state"`
}

func (s *Server) cancel(w http.ResponseWriter, r *http.Request, id Identity) {
	wait, err := parseWait(r.URL.Query().Get("wait"))
	if err != nil {
		problem(w, http.StatusBadRequest, err.Error())
		return
	}
	ctx, stop := context.WithTimeout(context.WithoutCancel(r.Context()), producer.CancelTimeout+wait+5*time.Second)
	defer stop()
	job := r.PathValue("id")
	reply, err := s.cfg.Client.Cancel(ctx, job, id.Principal)
	switch {
	case errors.Is(err, producer.ErrRefused):
		s.log.Info("cancel refused", "job", job, "principal", id.Principal)
		writeProblem(w, Problem{Status: http.StatusForbidden, Detail: err.Error() + fmt.Sprintf(" (only its own principal, or one with the %q role on the workers, may)", jobs.AdminRole), JobID: job})
		return
	case errors.Is(err, producer.ErrFinished):
		writeProblem(w, Problem{Status: http.StatusConflict, Detail: err.Error() + "; nothing to cancel", JobID: job})
		return
	case errors.Is(err, producer.ErrUndecided):
		writeJSON(w, http.StatusAccepted, map[string]any{"job_id": job, "outcome": "undecided", "detail": err.Error()})
		return
	case err != nil:
		s.fail(w, err)
		return
	}
	s.log.Info("cancel", "job", job, "principal", id.Principal, "outcome", reply.Outcome)
	st, err := s.cfg.Client.Status(ctx, job)
	if err != nil {
		s.fail(w, err)
		return
	}
	if reply.Outcome == schema.OutcomeStopping && wait > 0 {
		waitCtx, cancel := context.WithTimeout(ctx, wait)
		if final, err := s.cfg.Client.Wait(waitCtx, job); err == nil {
			st = final
		}
		cancel()
	}
	writeJSON(w, http.StatusOK, CancelResult{JobID: job, Outcome: reply.Outcome, State: st})
}

func parseWait(s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 || d > time.Minute {
		return 0, fmt.Errorf("wait %q: want a duration up to 1m, like 10s", s)
	}
	return d, nil
}
