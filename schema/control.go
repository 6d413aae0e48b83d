package schema

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// Action is what a control request asks a worker to do to a job.
type Action string

// Control actions.
const (
	ActionCancel Action = "cancel"
)

// ControlRequest asks the workers to act on a job. Clients publish it on
// winch.control.<action>.<job>.<principal>; like a job request, the last
// token names who asks, and the broker vouches for it. A worker decides it
// with the lifecycle rules (package jobs) and records the outcome: clients
// never write job states or events themselves.
type ControlRequest struct {
	Version   int       `json:"version"`
	ID        string    `json:"id"` // of the request itself, its Nats-Msg-Id
	Action    Action    `json:"action"`
	JobID     string    `json:"job_id"`
	Principal string    `json:"principal"`
	CreatedAt time.Time `json:"created_at"`
}

// ControlReply is a worker's answer to a control request, sent to the
// client's inbox when it asked for one.
type ControlReply struct {
	JobID string `json:"job_id"`
	// Outcome says what the worker decided.
	Outcome ControlOutcome `json:"outcome"`
	// State is the job's state after the decision.
	State State  `json:"state,omitempty"`
	Error string `json:"error,omitempty"`
}

// ControlOutcome is the decision on a control request.
type ControlOutcome string

// Control outcomes.
const (
	// OutcomeCancelled: the job had not started and never will.
	OutcomeCancelled ControlOutcome = "cancelled"
	// OutcomeStopping: the job runs; its worker is stopping it.
	OutcomeStopping ControlOutcome = "stopping"
	// OutcomeFinished: the job had already ended.
	OutcomeFinished ControlOutcome = "finished"
	// OutcomeRefused: the principal may not do that to the job.
	OutcomeRefused ControlOutcome = "refused"
	// OutcomeNotFound: no such job.
	OutcomeNotFound ControlOutcome = "not_found"
)

// Validate checks a control request as a worker receives it.
func (c ControlRequest) Validate() error {
	switch {
	case c.Version != Version:
		return fmt.Errorf("version %d is not supported (this worker speaks %d)", c.Version, Version)
	case c.Action != ActionCancel:
		return fmt.Errorf("action %q is not known: the only action is %q", c.Action, ActionCancel)
	case !ValidJobID(c.JobID):
		return fmt.Errorf("job_id %q is not a job id", c.JobID)
	case !ValidPrincipal(c.Principal):
		return fmt.Errorf("principal %q is not valid", c.Principal)
	case !ValidJobID(c.ID):
		return fmt.Errorf("id %q is not valid: use lower-case letters, digits, '-' and '_'", c.ID)
	}
	return nil
}

// controlFields are the field names of a control request document.
var controlFields = []string{"version", "id", "action", "job_id", "principal", "created_at"}

// DecodeControlRequest decodes and validates a control request as strictly
// as control.schema.json: names match exactly (encoding/json alone would
// take "Action" for action), each once, none null, nothing unknown.
func DecodeControlRequest(data []byte) (ControlRequest, error) {
	var c ControlRequest
	if len(data) > MaxRequestBytes || !utf8.Valid(data) {
		return ControlRequest{}, errors.New("decode control request: not a UTF-8 JSON document of at most 256 KiB")
	}
	err := eachMember(data, "field", func(name string, raw []byte) error {
		switch {
		case !slices.Contains(controlFields, name):
			return fmt.Errorf("unknown field %q (the fields are %s)", name, strings.Join(controlFields, ", "))
		case jsonKind(raw) == "null":
			return fmt.Errorf("field %q is null (leave out a field that has no value)", name)
		}
		return nil
	})
	if err != nil {
		return ControlRequest{}, fmt.Errorf("decode control request: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return ControlRequest{}, fmt.Errorf("decode control request: %s", describeJSONError(err))
	}
	if err := c.Validate(); err != nil {
		return ControlRequest{}, fmt.Errorf("control request: %w", err)
	}
	return c, nil
}
