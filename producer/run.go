package producer

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/winchhq/winch/modules"
	"github.com/winchhq/winch/schema"
)

// ErrUnknownCommand is wrapped by the error for a command no module
// declares; its message suggests the nearest known name.
var ErrUnknownCommand = modules.ErrUnknownCommand

// RunRequest asks for one command to run.
type RunRequest struct {
	// Command is "module.command", for example "core.echo".
	Command string
	// Params are the command's parameters by name: decoded JSON
	// (json.Number or float64 for numbers, []any for lists) or Go values.
	Params map[string]any
	// Queue defaults to schema.DefaultQueue.
	Queue string
	// Principal is who asks; with authorization on, the NATS user.
	Principal string
	// ID names the job (default: a new id, or one derived from
	// IdempotencyKey).
	ID             string
	IdempotencyKey string
	// Timeout bounds the run, with the command's own timeout (0: that alone).
	Timeout time.Duration
	// Notify are webhooks to call when the job ends, besides the command's
	// own (its manifest's notify). A schedule passes its targets here.
	Notify []schema.NotifyTarget
	// Priority orders it among the requests waiting on its queue (empty:
	// normal).
	Priority schema.Priority
	// Each makes it a fan-out: one child job per value (see
	// schema.Request.Each), at most Parallel at once, stopping at the first
	// failure if FailFast.
	Each     *schema.Each
	Parallel int
	FailFast bool
}

// ParamError is what is wrong with one parameter.
type ParamError struct {
	// Param is the parameter's name, as the command declares it.
	Param string
	// Message says what is wrong: "required", `want a whole number, got "x"`.
	Message string
}

func (e *ParamError) Error() string { return e.Param + ": " + e.Message }

// InvalidParamsError is every problem with a request's parameters, found
// before anything was published.
type InvalidParamsError struct {
	Command string
	Params  []*ParamError
}

func (e *InvalidParamsError) Error() string {
	parts := make([]string, len(e.Params))
	for i, p := range e.Params {
		parts[i] = p.Error()
	}
	return "invalid parameters for " + e.Command + ": " + strings.Join(parts, "; ")
}

// Unwrap gives each *ParamError to errors.As.
func (e *InvalidParamsError) Unwrap() []error {
	out := make([]error, len(e.Params))
	for i, p := range e.Params {
		out[i] = p
	}
	return out
}

// IsInvalid reports whether err says the request itself is wrong, so that
// sending it again cannot help: an unknown command, invalid parameters, or
// a field Submit rejects (*schema.RequestError).
func IsInvalid(err error) bool {
	var params *InvalidParamsError
	var req *schema.RequestError
	return errors.Is(err, ErrUnknownCommand) || errors.As(err, &params) || errors.As(err, &req)
}

// Prepare turns req into the request to submit, as the worker will check
// it: the command resolved in cat (an error wrapping ErrUnknownCommand if
// it is not there), the parameters validated against its specification (an
// *InvalidParamsError listing every problem) and normalized, with their
// defaults, and the module's commit pinned, so that the worker runs the
// version the parameters were checked against.
func Prepare(cat *modules.Catalog, req RunRequest) (schema.Request, error) {
	cmd, err := cat.Lookup(req.Command)
	if err != nil {
		return schema.Request{}, err
	}
	if req.Each != nil {
		return prepareFanout(cmd, req)
	}
	params, err := cmd.Spec.ValidateParams(req.Params)
	if err != nil {
		var v *schema.ValidationError
		if !errors.As(err, &v) {
			return schema.Request{}, err
		}
		invalid := &InvalidParamsError{Command: cmd.Name}
		for _, p := range v.Problems {
			invalid.Params = append(invalid.Params, &ParamError{Param: p.Field, Message: p.Message})
		}
		return schema.Request{}, invalid
	}
	return schema.Request{
		ID: req.ID, Command: cmd.Name, Params: params, Queue: req.Queue, Principal: req.Principal,
		IdempotencyKey: req.IdempotencyKey, Timeout: schema.Duration(req.Timeout), ModuleCommit: cmd.Commit,
		Notify:   req.Notify,
		Priority: req.Priority,
	}, nil
}

// Run is what `winch run` does before it follows: it resolves the command
// in the catalog as the registry has it now, validates the parameters (see
// Prepare), and submits the request. Nothing is published for a request
// IsInvalid rejects. Follow the job with Follow(ctx, sub.Request.ID, ...).
func (c *Client) Run(ctx context.Context, req RunRequest) (Submitted, error) {
	cat, err := c.Catalog(ctx)
	if err != nil {
		return Submitted{}, err
	}
	return c.RunIn(ctx, cat, req)
}

// RunIn is Run against a catalog the caller already holds (to show a
// command's help, or to parse its parameters from flags).
func (c *Client) RunIn(ctx context.Context, cat *modules.Catalog, req RunRequest) (Submitted, error) {
	r, err := Prepare(cat, req)
	if err != nil {
		return Submitted{}, err
	}
	return c.Submit(ctx, r)
}
