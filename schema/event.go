package schema

import (
	"encoding/json"
	"fmt"
	"time"
)

// Kind says what an event reports.
type Kind string

// Event kinds, in the order a run emits them. rejected and finished end a
// job; released hands it back to the queue for another attempt.
const (
	KindAccepted Kind = "accepted" // a worker claimed the job; carries the request
	KindRejected Kind = "rejected" // the request can never run; Error says why
	KindStarted  Kind = "started"  // the command started; carries executor and image
	KindLog      Kind = "log"      // one or more lines of output on Stream
	KindReleased Kind = "released" // the worker handed the job back (draining)
	// KindWaiting: every slot of the job's concurrency key is held;
	// WaitingFor names the key, HeldBy the jobs that hold it.
	KindWaiting  Kind = "waiting"
	KindFinished Kind = "finished" // the job ended in State
	KindReaped   Kind = "reaped"   // what a lost worker left of an attempt (a container) was removed
	// KindCancelRefused records a cancel request that was not allowed:
	// Principal is who asked, Error why it was refused.
	KindCancelRefused Kind = "cancel_refused"
)

// Stream names the output stream of a log event.
type Stream string

// Output streams.
const (
	Stdout Stream = "stdout"
	Stderr Stream = "stderr"
	// StreamBuild is the log of building a module's image for the job.
	StreamBuild Stream = "build"
)

// Reasons refine a failed state for machines.
const (
	ReasonWorkerLost = "worker_lost" // the worker died while the command ran
	ReasonOOMKilled  = "oom_killed"  // the command exceeded its memory limit
	ReasonDead       = "max_deliveries"
	// ReasonInterrupted: the worker was stopped while a command that may not
	// run twice was running, and its drain deadline passed.
	ReasonInterrupted = "interrupted"
	// ReasonNotStarted: the command could not be started on any delivery
	// (the container engine stayed unreachable, its image did not build).
	ReasonNotStarted = "not_started"
	// ReasonForbidden: a rejected request's principal lacks the roles its
	// command declares.
	ReasonForbidden = "forbidden"
)

// Event is one thing that happened to a job, published on
// winch.events.<job>.<kind>. Events of a job are ordered by (Attempt, Seq);
// (JobID, Attempt, Seq) identifies an event, and is its Nats-Msg-Id, so a
// re-published event is dropped by the stream and collapsed by the audit.
type Event struct {
	JobID   string    `json:"job_id"`
	Attempt int       `json:"attempt"`
	Seq     int       `json:"seq"`
	Time    time.Time `json:"time"`
	Kind    Kind      `json:"kind"`
	// State is the job's state after this event, when the event changed it.
	State State `json:"state,omitempty"`
	// Stream and Data carry output, on log events.
	Stream Stream `json:"stream,omitempty"`
	Data   string `json:"data,omitempty"`
	// ExitCode is the command's exit code, on finished events of commands
	// that exited.
	ExitCode *int   `json:"exit_code,omitempty"`
	Error    string `json:"error,omitempty"`
	Reason   string `json:"reason,omitempty"`
	Worker   string `json:"worker,omitempty"`

	// The request, on accepted, rejected and finished events, so that each
	// of them describes the job on its own (parameters marked secret masked).
	Command   string         `json:"command,omitempty"`
	Commit    string         `json:"commit,omitempty"` // of the command's module
	Principal string         `json:"principal,omitempty"`
	Queue     string         `json:"queue,omitempty"`
	Params    map[string]any `json:"params,omitempty"`
	Priority  Priority       `json:"priority,omitempty"`
	Schedule  string         `json:"schedule,omitempty"`

	// Where it ran, on started events.
	Executor string `json:"executor,omitempty"`
	Image    string `json:"image,omitempty"`

	// When the job was asked for and when its command started, on events
	// that end a job, so that the audit has the whole job from one event.
	CreatedAt time.Time `json:"created_at,omitzero"`
	StartedAt time.Time `json:"started_at,omitzero"`

	// Notify are the webhooks to call for the job's end (the request's and
	// the manifest's), on the events that end a job, for the notifier.
	Notify []NotifyTarget `json:"notify,omitempty"`

	// ParentID names the fan-out parent of a child job, on every event the
	// job's worker writes.
	ParentID string `json:"parent_id,omitempty"`
	// WaitingFor and HeldBy, on waiting events.
	WaitingFor string   `json:"waiting_for,omitempty"`
	HeldBy     []string `json:"held_by,omitempty"`
	// Fanout, on a fan-out parent's events: its progress.
	Fanout *FanoutProgress `json:"fanout,omitempty"`
}

// MsgID is the event's Nats-Msg-Id.
func (e Event) MsgID() string { return fmt.Sprintf("%s.%d.%d", e.JobID, e.Attempt, e.Seq) }

// Terminal reports whether the event ends its job.
func (e Event) Terminal() bool { return e.Kind == KindFinished || e.Kind == KindRejected }

// DecodeEvent decodes an event. Unknown fields are ignored: events come
// from workers that may be newer than the reader, and a client must not lose
// a job's end because a worker added a field.
func DecodeEvent(data []byte) (Event, error) {
	var e Event
	if err := json.Unmarshal(data, &e); err != nil {
		return Event{}, fmt.Errorf("decode event: %s", describeJSONError(err))
	}
	if !ValidJobID(e.JobID) || e.Kind == "" {
		return Event{}, fmt.Errorf("decode event: job_id %q or kind %q is missing or invalid", e.JobID, e.Kind)
	}
	return e, nil
}
