package schema

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"time"
	"unicode/utf8"
)

// DefaultQueue is the queue a request goes to when it names none.
const DefaultQueue = "default"

// MaxRequestBytes bounds an encoded request; the broker's max payload is the
// hard limit, this one gives a clear error before it.
const MaxRequestBytes = 256 << 10

// Request asks for one command to run. Clients publish it, JSON encoded, on
// winch.jobs.<queue>.<principal> with the ID as the Nats-Msg-Id header.
type Request struct {
	// Version is the schema version of this document (Version).
	Version int `json:"version"`
	// ID names the job; see NewJobID and IdempotentJobID.
	ID string `json:"id"`
	// Command is "module.command", for example "core.echo".
	Command string `json:"command"`
	// Params are the command's parameters by name; the worker validates them
	// against the command's specification again before it runs anything.
	Params map[string]any `json:"params,omitempty"`
	// Queue routes the request to a pool of workers.
	Queue string `json:"queue"`
	// Principal is who asks. It must equal the last token of the subject the
	// request was published on, which the broker vouches for.
	Principal string `json:"principal"`
	// IdempotencyKey, when set, is what the ID was derived from.
	IdempotencyKey string `json:"idempotency_key,omitempty"`
	// Timeout bounds the run; the command's own timeout bounds it too, and
	// the shorter wins. Zero means the command's timeout alone.
	Timeout Duration `json:"timeout,omitempty"`
	// CreatedAt is when the client made the request.
	CreatedAt time.Time `json:"created_at"`
	// ModuleCommit is the commit of the command's module the client
	// validated the request against, and that the worker runs. Empty for
	// core commands, or to run what the registry names when the worker
	// takes it.
	ModuleCommit string `json:"module_commit,omitempty"`
}

var commitPattern = regexp.MustCompile(`^[0-9a-f]{40}$`)

// DecodeRequest decodes and structurally validates an encoded request. It
// rejects unknown fields, so that a misspelt field is an error rather than
// silently ignored. It does not check the parameters against a command; see
// CommandSpec.ValidateParams.
func DecodeRequest(data []byte) (Request, error) {
	var r Request
	if len(data) > MaxRequestBytes {
		return r, &RequestError{Reason: fmt.Sprintf("request is %d bytes, more than the %d allowed", len(data), MaxRequestBytes)}
	}
	if !utf8.Valid(data) {
		return r, &RequestError{Reason: "request is not valid UTF-8 JSON"}
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	dec.UseNumber()
	if err := dec.Decode(&r); err != nil {
		return Request{}, &RequestError{Reason: "request is not a valid JSON request document: " + describeJSONError(err)}
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return Request{}, &RequestError{Reason: "request has data after the JSON document"}
	}
	if err := r.Validate(); err != nil {
		return Request{}, err
	}
	return r, nil
}

// Validate checks the request's own fields (not its parameters).
func (r Request) Validate() error {
	switch {
	case r.Version != Version:
		return &RequestError{Reason: fmt.Sprintf("version is %d; this worker understands version %d", r.Version, Version)}
	case !ValidJobID(r.ID):
		return &RequestError{Reason: fmt.Sprintf("id %q is not valid: use 1 to 64 lower-case letters, digits, '-' or '_'", r.ID)}
	case r.Command == "":
		return &RequestError{Reason: "command is missing: name one as module.command, for example core.echo"}
	case !ValidQueue(r.Queue):
		return &RequestError{Reason: fmt.Sprintf("queue %q is not valid: use 1 to 32 lower-case letters, digits, '-' or '_'", r.Queue)}
	case !ValidPrincipal(r.Principal):
		return &RequestError{Reason: fmt.Sprintf("principal %q is not valid: use 1 to 64 letters, digits, '-', '_' or '@'", r.Principal)}
	case r.CreatedAt.IsZero():
		return &RequestError{Reason: "created_at is missing"}
	}
	if r.ModuleCommit != "" && !commitPattern.MatchString(r.ModuleCommit) {
		return &RequestError{Reason: fmt.Sprintf("module_commit %q is not a full commit hash (40 lower-case hex digits)", r.ModuleCommit)}
	}
	if _, _, ok := SplitCommand(r.Command); !ok {
		return &RequestError{Reason: fmt.Sprintf("command %q is not of the form module.command (lower-case names)", r.Command)}
	}
	return nil
}

// RequestError says why a request cannot run at all. A worker answers it with
// a rejected event and never retries.
type RequestError struct{ Reason string }

func (e *RequestError) Error() string { return e.Reason }

func describeJSONError(err error) string {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return fmt.Sprintf("%v (at byte %d)", syn, syn.Offset)
	case errors.As(err, &typ):
		return fmt.Sprintf("field %q must be %v, not a JSON %s", typ.Field, typ.Type, typ.Value)
	case errors.Is(err, io.EOF):
		return "it is empty"
	}
	return err.Error()
}
