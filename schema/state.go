package schema

import (
	"encoding/json"
	"fmt"
	"time"
)

// State is where a job is in its life.
type State string

// Job states. The last six are terminal: a job never leaves them.
const (
	StateQueued State = "queued"
	// StateWaiting: admitted, but every slot of its concurrency key is held;
	// it starts when one is freed (WaitingFor, HeldBy).
	StateWaiting   State = "waiting"
	StateRunning   State = "running"
	StateSucceeded State = "succeeded"
	StateFailed    State = "failed"
	StateCancelled State = "cancelled"
	StateTimedOut  State = "timed_out"
	StateRejected  State = "rejected"
	StateDead      State = "dead"
)

// Terminal reports whether a job in state s is over.
func (s State) Terminal() bool {
	switch s {
	case StateSucceeded, StateFailed, StateCancelled, StateTimedOut, StateRejected, StateDead:
		return true
	}
	return false
}

// JobState is the latest state of a job, kept in the WINCH_JOBS_STATE bucket
// under the job's ID. Only workers write it, through package jobs, with
// compare-and-set on the entry's revision, so that one job is claimed by one
// worker at a time (docs/ARCHITECTURE.md, "The job lifecycle").
type JobState struct {
	JobID     string `json:"job_id"`
	State     State  `json:"state"`
	Command   string `json:"command,omitempty"`
	Commit    string `json:"commit,omitempty"` // of the command's module
	Principal string `json:"principal,omitempty"`
	Queue     string `json:"queue,omitempty"`
	// Priority and Schedule are the request's (see Request).
	Priority Priority `json:"priority,omitempty"`
	Schedule string   `json:"schedule,omitempty"`
	// Params are the job's parameters, secrets masked, once a worker has
	// validated them.
	Params map[string]any `json:"params,omitempty"`

	// Worker holds the job while it is running. Session names the worker's
	// liveness entry (in the WINCH_WORKERS bucket) for this run of it: a
	// running job whose session is no longer alive has lost its worker.
	Worker   string `json:"worker,omitempty"`
	Session  string `json:"session,omitempty"`
	Attempt  int    `json:"attempt"`
	Retry    bool   `json:"retry,omitempty"`
	Executor string `json:"executor,omitempty"`

	CreatedAt  time.Time `json:"created_at,omitzero"`
	StartedAt  time.Time `json:"started_at,omitzero"`
	FinishedAt time.Time `json:"finished_at,omitzero"`

	ExitCode *int   `json:"exit_code,omitempty"`
	Error    string `json:"error,omitempty"`
	Reason   string `json:"reason,omitempty"`

	// CancelRequested asks the worker running the job to stop it.
	CancelRequested bool   `json:"cancel_requested,omitempty"`
	CancelledBy     string `json:"cancelled_by,omitempty"`

	// Notify are the webhooks to call when the job ends; its final event
	// carries them.
	Notify []NotifyTarget `json:"notify,omitempty"`

	// ParentID names the fan-out parent whose child this job is.
	ParentID string `json:"parent_id,omitempty"`
	// WaitingFor is the concurrency key a waiting job waits for, HeldBy the
	// jobs that held its slots when it began to wait.
	WaitingFor string   `json:"waiting_for,omitempty"`
	HeldBy     []string `json:"held_by,omitempty"`
	// Slot is the concurrency key whose slot the job holds; it is freed
	// when the job ends.
	Slot string `json:"slot,omitempty"`
	// Fanout is a fan-out parent's progress over its children.
	Fanout *FanoutProgress `json:"fanout,omitempty"`

	// FinalSeq is the seq of the event that ended the job, so that a worker
	// that finds the job over can publish that event again, identically.
	FinalSeq int `json:"final_seq,omitempty"`
}

// DecodeJobState decodes a state bucket entry.
func DecodeJobState(data []byte) (JobState, error) {
	var s JobState
	if err := json.Unmarshal(data, &s); err != nil {
		return JobState{}, fmt.Errorf("decode job state: %w", err)
	}
	return s, nil
}

// Encode returns the JSON form stored in the state bucket.
func (s JobState) Encode() []byte {
	b, err := json.Marshal(s)
	if err != nil {
		// Only Params can fail to encode (validated params cannot); keep the
		// state without them rather than lose it.
		s.Params = map[string]any{"_error": "parameters could not be encoded: " + err.Error()}
		b, _ = json.Marshal(s)
	}
	return b
}

// FinalEvent is the event that ended the job, rebuilt from its state.
func (s JobState) FinalEvent() Event {
	kind := KindFinished
	if s.State == StateRejected {
		kind = KindRejected
	}
	return Event{
		JobID: s.JobID, Attempt: s.Attempt, Seq: s.FinalSeq, Time: s.FinishedAt,
		Kind: kind, State: s.State, ExitCode: s.ExitCode, Error: s.Error, Reason: s.Reason,
		Worker: s.Worker, Command: s.Command, Commit: s.Commit, Principal: s.Principal, Queue: s.Queue,
		Priority: s.Priority, Schedule: s.Schedule, Params: s.Params, CreatedAt: s.CreatedAt, StartedAt: s.StartedAt, Executor: s.Executor,
		Notify: s.Notify, ParentID: s.ParentID, Fanout: s.Fanout,
	}
}

// FanoutProgress is how far a fan-out parent is: its children are the jobs
// <parent>-<index> (FanoutChildID), one per value, launched in order.
type FanoutProgress struct {
	// Param is the parameter each child gets its value in.
	Param    string `json:"param"`
	Total    int    `json:"total"`
	Parallel int    `json:"parallel"`
	FailFast bool   `json:"fail_fast,omitempty"`
	// Launched children are the first Launched; of them, those that ended
	// are counted by how. Skipped are those never launched because the
	// fan-out stopped (cancel, --fail-fast).
	Launched  int `json:"launched"`
	Succeeded int `json:"succeeded"`
	Failed    int `json:"failed"`
	Cancelled int `json:"cancelled"`
	Skipped   int `json:"skipped,omitempty"`
}

// Done is how many children have ended.
func (p FanoutProgress) Done() int { return p.Succeeded + p.Failed + p.Cancelled }

// Running is how many launched children have not ended.
func (p FanoutProgress) Running() int { return p.Launched - p.Done() }

// String is the progress as people read it: "3/4 done, 1 running".
func (p FanoutProgress) String() string {
	s := fmt.Sprintf("%d/%d done, %d running", p.Done(), p.Total, p.Running())
	if p.Failed > 0 {
		s += fmt.Sprintf(", %d failed", p.Failed)
	}
	if p.Cancelled > 0 {
		s += fmt.Sprintf(", %d cancelled", p.Cancelled)
	}
	if p.Skipped > 0 {
		s += fmt.Sprintf(", %d skipped", p.Skipped)
	}
	return s
}

// FanoutChildID names the child of parent for the value at index.
func FanoutChildID(parent string, index int) string {
	return fmt.Sprintf("%s-%d", parent, index)
}
