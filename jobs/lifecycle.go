// Package jobs owns a job's life: its states and every transition between
// them as plain functions (this file), the one store that writes them
// (store.go), the events that record them (events.go) and the liveness of
// the worker sessions that hold them (sessions.go). Everything that changes
// a job goes through it, and only workers change jobs; clients read with it
// what a queued job is (Queued, Unclaimed). docs/ARCHITECTURE.md has the
// state diagram.
package jobs

import (
	"errors"
	"fmt"
	"time"

	"github.com/winchhq/winch/schema"
)

// Event sequence numbers. An attempt's worker numbers its own events 1, 2,
// ...; an event that someone else writes about the attempt (its loss, its
// death, a cancel before it started) takes ObserverSeq, so that it sorts
// after anything the worker may have written. (JobID, Attempt, Seq) is an
// event's identity, so an event written twice is stored once.
const (
	ObserverSeq = 1_000_000_000
	// ReapedSeq numbers the event of a reaped leftover of an attempt.
	ReapedSeq = ObserverSeq - 1
)

// Alive is the one rule for whether a worker session holds its jobs: it
// announced itself (Sessions.Beat) less than a lease ago.
func Alive(seen, now time.Time, lease time.Duration) bool {
	return !seen.IsZero() && now.Sub(seen) < lease
}

// Verdict says what a delivered request does.
type Verdict int

const (
	// Run: the job is claimed; run the command.
	Run Verdict = iota
	// Over: the job has ended (perhaps just now); drop the request.
	Over
	// Busy: a live worker holds the job; deliver the request again later.
	Busy
	// Waits: the job waits for a concurrency slot (Wait); its request is
	// kept aside until one is freed.
	Waits
)

func (v Verdict) String() string {
	return [...]string{"run", "over", "busy", "waits"}[v]
}

// Claimant is a worker that received a request and would run it.
type Claimant struct {
	Worker, Session, Executor string
	// Retry says whether the command may run again after it started.
	Retry bool
	// Commit is the module commit the command comes from; Params the
	// validated parameters, secrets masked.
	Commit string
	Params map[string]any
	// Notify are the webhooks for the job's end: the request's and the
	// command's manifest's.
	Notify []schema.NotifyTarget
	// Slot is the concurrency key whose slot the job holds, if any.
	Slot string
}

// Decision is a transition's result: the next state, whether it must be
// written, and (for a claim) what to do with the request.
type Decision struct {
	State   schema.JobState
	Write   bool
	Verdict Verdict
}

// Queued is the state of a job whose request is in the queue and that no
// worker has claimed: it is what a job without a state entry is.
func Queued(req schema.Request) schema.JobState {
	st := schema.JobState{JobID: req.ID, State: schema.StateQueued, Command: req.Command,
		Principal: req.Principal, Queue: req.Queue, Priority: req.Priority, Schedule: req.Schedule, CreatedAt: req.CreatedAt, Notify: req.Notify,
		ParentID: req.ParentID}
	if req.Each != nil {
		// A fan-out is one before any worker takes it.
		st.Fanout = &schema.FanoutProgress{Param: req.Each.Param, Total: len(req.Each.Values), Parallel: max(req.Parallel, 1), FailFast: req.FailFast}
	}
	return st
}

// Claim decides what a delivered request does to its job, given the job's
// current state (Queued(req) if it has none) and whether the session that
// holds it, if it runs, is alive.
func Claim(cur schema.JobState, holderAlive bool, c Claimant, now time.Time) Decision {
	switch {
	case cur.State.Terminal():
		return Decision{State: cur, Verdict: Over}
	case cur.State == schema.StateRunning && holderAlive:
		return Decision{State: cur, Verdict: Busy}
	case cur.CancelRequested:
		// Cancelled while it ran, and its worker died before it could stop
		// it: the job ends as asked rather than running again.
		next := cur
		next.State, next.FinishedAt, next.FinalSeq = schema.StateCancelled, now, ObserverSeq
		next.Error = "cancelled by " + cur.CancelledBy
		return Decision{State: next, Write: true, Verdict: Over}
	case cur.State == schema.StateRunning && !cur.StartedAt.IsZero() && !cur.Retry:
		// The command ran and may not run twice.
		return Decision{State: Lose(cur, now), Write: true, Verdict: Over}
	}
	// Queued, waiting (its slot is now its), or held by a dead worker before
	// the command started (or whose command may run again): take it.
	next := cur
	next.State = schema.StateRunning
	next.Attempt++
	next.Worker, next.Session, next.Executor = c.Worker, c.Session, c.Executor
	next.Retry, next.Commit, next.Params, next.Notify = c.Retry, c.Commit, c.Params, c.Notify
	next.Slot, next.WaitingFor, next.HeldBy = c.Slot, "", nil
	next.StartedAt = time.Time{}
	return Decision{State: next, Write: true, Verdict: Run}
}

// ErrNotHolder is returned by transitions that only the holder of a running
// job may make, when the state says someone else holds it, or it is over.
var ErrNotHolder = errors.New("this worker no longer holds the job")

// Holds reports whether session holds the job in attempt.
func Holds(cur schema.JobState, session string, attempt int) bool {
	return cur.State == schema.StateRunning && cur.Session == session && cur.Attempt == attempt
}

// Start records, before the command starts, that it may be running: a
// worker that dies from here on leaves a command that may have run.
func Start(cur schema.JobState, session string, attempt int, now time.Time) (schema.JobState, error) {
	if !Holds(cur, session, attempt) {
		return cur, ErrNotHolder
	}
	cur.StartedAt = now
	return cur, nil
}

// Ending is how an attempt ended, as its worker saw it.
type Ending struct {
	// Cancelled: stopped because a cancel was asked for.
	Cancelled bool
	// TimedOut is the timeout that stopped the command, if one did.
	TimedOut time.Duration
	// Err: the command could not be run at all.
	Err error
	// ExitCode and Reason (schema.ReasonOOMKilled) from the executor.
	ExitCode int
	Reason   string
	// StartedAt is when the command started, if it did: the state records
	// it before the start only for commands that may not run twice.
	StartedAt time.Time
}

// Finish records how the attempt ended; seq is the number of the attempt's
// final event.
func Finish(cur schema.JobState, session string, attempt int, e Ending, seq int, now time.Time) (schema.JobState, error) {
	if !Holds(cur, session, attempt) {
		return cur, ErrNotHolder
	}
	cur.FinishedAt, cur.FinalSeq, cur.Reason = now, seq, e.Reason
	if cur.StartedAt.IsZero() {
		cur.StartedAt = e.StartedAt
	}
	switch {
	case e.Cancelled:
		cur.State, cur.Error = schema.StateCancelled, "cancelled by "+cur.CancelledBy
	case e.TimedOut > 0:
		cur.State, cur.Error = schema.StateTimedOut, "timed out after "+e.TimedOut.String()
	case e.Err != nil:
		cur.State, cur.Error = schema.StateFailed, e.Err.Error()
		if cur.StartedAt.IsZero() {
			cur.Reason = schema.ReasonNotStarted
		}
	default:
		code := e.ExitCode
		cur.State, cur.ExitCode = schema.StateSucceeded, &code
		if code != 0 {
			cur.State = schema.StateFailed
		}
		if e.Reason == schema.ReasonOOMKilled {
			cur.State, cur.Error = schema.StateFailed, "killed: out of memory"
		}
	}
	return cur, nil
}

// FinishedBy says that cur is the end that Finish recorded for this
// holder's attempt: what a holder whose write was stored but unanswered
// reads back. Observers' ends (Lose, Dead) carry other sequence numbers.
func FinishedBy(cur schema.JobState, session string, attempt, seq int) bool {
	return cur.State.Terminal() && cur.Session == session && cur.Attempt == attempt && cur.FinalSeq == seq && !cur.FinishedAt.IsZero()
}

// Lose records that the job's worker died while its command ran.
func Lose(cur schema.JobState, now time.Time) schema.JobState {
	if cur.State.Terminal() {
		return cur
	}
	cur.State, cur.Reason, cur.FinishedAt = schema.StateFailed, schema.ReasonWorkerLost, now
	cur.Error = fmt.Sprintf("worker lost: %s stopped answering while the command ran", cur.Worker)
	cur.FinalSeq = ObserverSeq
	return cur
}

// Release hands the job back to its queue, when the holder stops (its drain
// deadline passed) or its executor could not start the command for a passing
// reason. A command that started and may not run twice is not handed back:
// it was stopped, and the job ends failed, reason interrupted. handedBack
// says which; seq numbers the final event if there is one.
func Release(cur schema.JobState, session string, attempt int, why string, seq int, now time.Time) (next schema.JobState, handedBack bool, err error) {
	if !Holds(cur, session, attempt) {
		return cur, false, ErrNotHolder
	}
	if !cur.StartedAt.IsZero() && !cur.Retry {
		cur.State, cur.Reason, cur.FinishedAt, cur.FinalSeq = schema.StateFailed, schema.ReasonInterrupted, now, seq
		cur.Error = fmt.Sprintf("interrupted: %s while the command ran; it may not run twice (retry: false), so it was stopped and not handed back", why)
		return cur, false, nil
	}
	cur.State, cur.Worker, cur.Session, cur.StartedAt = schema.StateQueued, "", "", time.Time{}
	return cur, true, nil
}

// Reject records that a request can never run. principal is who published
// it (the subject's last token), whatever the payload claims. A job that
// runs is left to its holder (Busy), or, if that is dead, to the
// dead-letter rules. The rejection is an attempt of its own, after any
// earlier one, so that its event never shares an earlier event's identity.
func Reject(cur schema.JobState, req schema.Request, principal, worker string, reason error, now time.Time) Decision {
	switch cur.State {
	case schema.StateSucceeded, schema.StateFailed, schema.StateCancelled, schema.StateTimedOut, schema.StateRejected, schema.StateDead:
		return Decision{State: cur, Verdict: Over}
	case schema.StateRunning:
		return Decision{State: cur, Verdict: Busy}
	}
	createdAt := req.CreatedAt
	if !cur.CreatedAt.IsZero() {
		createdAt = cur.CreatedAt
	}
	return Decision{State: schema.JobState{
		JobID: cur.JobID, State: schema.StateRejected, ParentID: req.ParentID, Command: req.Command, Principal: principal,
		Queue: req.Queue, Priority: req.Priority, Schedule: req.Schedule, Params: req.Params, CreatedAt: createdAt, Attempt: cur.Attempt + 1, Worker: worker,
		FinishedAt: now, Error: reason.Error(), Reason: rejectReason(reason), FinalSeq: 1, Notify: req.Notify,
	}, Write: true, Verdict: Over}
}

// ErrForbidden is wrapped by the reason of a request whose principal may
// not run its command; its rejection says so (schema.ReasonForbidden), so
// that a front end can tell "not allowed" from "can never run".
var ErrForbidden = errors.New("forbidden")

func rejectReason(reason error) string {
	if errors.Is(reason, ErrForbidden) {
		return schema.ReasonForbidden
	}
	return ""
}

// Dead records that the job's request ran out of deliveries, unless the job
// is over or a live worker still runs it.
func Dead(cur schema.JobState, holderAlive bool, why string, now time.Time) Decision {
	if cur.State.Terminal() || (cur.State == schema.StateRunning && holderAlive) {
		return Decision{State: cur, Verdict: Over}
	}
	cur.State, cur.Reason, cur.Error, cur.FinishedAt = schema.StateDead, schema.ReasonDead, why, now
	cur.FinalSeq = ObserverSeq
	return Decision{State: cur, Write: true, Verdict: Over}
}

// Cancel decides a cancel request from principal by: the job's own principal,
// or one with the admin role, may cancel it. A queued job ends at once and
// never starts; a running one is marked, and its worker stops it.
func Cancel(cur schema.JobState, by string, admin bool, now time.Time) (schema.JobState, schema.ControlOutcome, bool) {
	switch {
	case cur.State.Terminal():
		return cur, schema.OutcomeFinished, false
	case by != cur.Principal && !admin:
		return cur, schema.OutcomeRefused, false
	case cur.CancelRequested:
		return cur, schema.OutcomeStopping, false
	case cur.State == schema.StateRunning:
		cur.CancelRequested, cur.CancelledBy = true, by
		return cur, schema.OutcomeStopping, true
	}
	cur.State, cur.FinishedAt, cur.FinalSeq = schema.StateCancelled, now, ObserverSeq
	cur.Error = "cancelled by " + by + " before it started"
	cur.CancelRequested, cur.CancelledBy = true, by
	return cur, schema.OutcomeCancelled, true
}

// RefusalReason says why by may not cancel the job.
func RefusalReason(cur schema.JobState, by string) string {
	return fmt.Sprintf("%s may not cancel job %s of %s: only its own principal or one with the %q role may", by, cur.JobID, cur.Principal, AdminRole)
}

// AdminRole may act on anyone's jobs.
const AdminRole = "admin"
