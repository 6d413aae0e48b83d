package producer

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/winchhq/winch/broker"
	"github.com/winchhq/winch/schema"
)

// ErrNoEvents is returned by a replay of a job that has no events in the
// stream (unknown, or older than the stream keeps).
var ErrNoEvents = errors.New("no events for this job in the events stream")

// FollowMode says when Follow stops.
type FollowMode int

const (
	// UntilDone delivers every event, waiting for new ones, until the event
	// that ends the job.
	UntilDone FollowMode = iota
	// Replay delivers the events stored now, then stops.
	Replay
)

// Follow delivers the job's events in order, from its first, to fn. It
// returns the last event delivered. An error from fn stops it and is
// returned.
func (c *Client) Follow(ctx context.Context, id string, mode FollowMode, fn func(schema.Event) error) (schema.Event, error) {
	var last schema.Event
	if !schema.ValidJobID(id) {
		return last, fmt.Errorf("%w: %q is not a job id", ErrNotFound, id)
	}
	stream, err := c.js.Stream(ctx, broker.EventsStream)
	if err != nil {
		return last, fmt.Errorf("open events stream: %w", err)
	}
	if mode == Replay {
		if _, err := stream.GetLastMsgForSubject(ctx, broker.JobEventsFilter(id)); errors.Is(err, jetstream.ErrMsgNotFound) {
			return last, fmt.Errorf("%w: %s", ErrNoEvents, id)
		} else if err != nil {
			return last, fmt.Errorf("look up events of %s: %w", id, err)
		}
	}
	cons, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{broker.JobEventsFilter(id)},
		DeliverPolicy:  jetstream.DeliverAllPolicy,
		// The client does not delete an ordered consumer when it stops; the
		// server does once it is idle this long. The default (5m) lets a busy
		// CLI pile up a thousand of them, the server's per-stream default limit.
		InactiveThreshold: 10 * time.Second,
	})
	if err != nil {
		return last, fmt.Errorf("follow %s: %w", id, err)
	}
	it, err := cons.Messages()
	if err != nil {
		return last, fmt.Errorf("follow %s: %w", id, err)
	}
	defer func() {
		// Delete it now rather than leave it to the idle timeout: a
		// thousand followers a minute would otherwise fill the stream's
		// consumer limit.
		if info := cons.CachedInfo(); info != nil {
			delCtx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_ = stream.DeleteConsumer(delCtx, info.Name)
			cancel()
		}
	}()
	stopped := make(chan struct{})
	defer close(stopped)
	go func() {
		select {
		case <-ctx.Done():
		case <-stopped:
		}
		it.Stop()
	}()
	for {
		msg, err := it.Next()
		if err != nil {
			if ctx.Err() != nil {
				return last, context.Cause(ctx)
			}
			return last, fmt.Errorf("follow %s: %w", id, err)
		}
		ev, err := schema.DecodeEvent(msg.Data())
		if err != nil {
			c.log.Warn("skip undecodable event", "subject", msg.Subject(), "err", err)
			continue
		}
		if err := fn(ev); err != nil {
			return ev, err
		}
		last = ev
		if mode == UntilDone && ev.Terminal() {
			return last, nil
		}
		if meta, err := msg.Metadata(); mode == Replay && err == nil && meta.NumPending == 0 {
			return last, nil
		}
	}
}
