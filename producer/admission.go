package producer

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/winchhq/winch/broker"
	"github.com/winchhq/winch/modules"
	"github.com/winchhq/winch/schema"
)

// ErrUndecidedAdmission: no worker took the request within the wait; it is
// still queued.
var ErrUndecidedAdmission = errors.New("no worker has taken the request yet")

// AwaitAdmission waits until a worker has decided whether the job may run,
// and returns that decision: the accepted event, or the rejected one (a
// principal without the command's roles, a module commit that is gone).
// Workers are the authority on who may run what (their WINCH_ROLES_FILE),
// so a front end that wants to answer "forbidden" at once, with the refusal
// on the record, asks them rather than guessing. When ctx ends first, the
// error wraps ErrUndecidedAdmission and the job stays queued.
func (c *Client) AwaitAdmission(ctx context.Context, id string) (schema.Event, error) {
	var decision schema.Event
	stop := errors.New("decided")
	_, err := c.Follow(ctx, id, UntilDone, func(ev schema.Event) error {
		if ev.Kind == schema.KindAccepted || ev.Kind == schema.KindRejected || ev.Terminal() {
			decision = ev
			return stop
		}
		return nil
	})
	switch {
	case errors.Is(err, stop):
		return decision, nil
	case ctx.Err() != nil:
		return schema.Event{}, fmt.Errorf("%w: %s", ErrUndecidedAdmission, id)
	}
	return schema.Event{}, err
}

// Modules returns the modules in the registry, by name.
func (c *Client) Modules(ctx context.Context) ([]modules.Entry, error) {
	kv, err := c.js.KeyValue(ctx, broker.ModulesBucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, fmt.Errorf("%w: %w", ErrRegistryUnavailable, ErrNoTopology)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrRegistryUnavailable, err)
	}
	return (&modules.Registry{KV: kv}).List(ctx)
}
