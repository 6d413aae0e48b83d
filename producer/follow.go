package producer

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
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
	return c.FollowAfter(ctx, id, 0, mode, func(ev schema.Event, _ uint64) error { return fn(ev) })
}

// FollowAfter is Follow from the event after the one at stream sequence
// after (0: from the first), giving fn each event's stream sequence too.
// The sequence names a position in the job's history that a follower who
// lost its connection resumes from, with no event missed or repeated (the
// gateway's Last-Event-ID).
func (c *Client) FollowAfter(ctx context.Context, id string, after uint64, mode FollowMode, fn func(ev schema.Event, seq uint64) error) (schema.Event, error) {
	var last schema.Event
	if !schema.ValidJobID(id) {
		return last, fmt.Errorf("%w: %q is not a job id", ErrNotFound, id)
	}
	stream, err := c.js.Stream(ctx, broker.EventsStream)
	if err != nil {
		return last, fmt.Errorf("open events stream: %w", err)
	}
	if mode == Replay || after > 0 {
		raw, err := stream.GetLastMsgForSubject(ctx, broker.JobEventsFilter(id))
		switch {
		case errors.Is(err, jetstream.ErrMsgNotFound) && mode == Replay:
			return last, fmt.Errorf("%w: %s", ErrNoEvents, id)
		case err != nil && !errors.Is(err, jetstream.ErrMsgNotFound):
			return last, fmt.Errorf("look up events of %s: %w", id, err)
		case err == nil && raw.Sequence <= after:
			// Nothing after the position: a replay is done, and so is a
			// follower of a job whose last event ended it.
			ev, decErr := schema.DecodeEvent(raw.Data)
			if mode == Replay || (decErr == nil && ev.Terminal()) {
				return ev, nil
			}
		}
	}
	for {
		ev, seq, err := c.followConsumer(ctx, stream, id, after, mode, fn)
		if ev.JobID != "" {
			last = ev
		}
		if !errors.Is(err, errStalled) {
			return last, err
		}
		// The consumer missed events the stream has (seen once in 120
		// followers after their server was killed): follow again from the
		// last one delivered.
		c.log.Warn("the events consumer stalled; following again", "job", id, "after", seq)
		after = seq
	}
}

// stallCheck is how long a follower waits in silence before it asks the
// stream whether the job has events it was not given.
const stallCheck = 20 * time.Second

// errStalled says the ordered consumer stopped delivering events that the
// stream holds.
var errStalled = errors.New("events consumer stalled")

// followConsumer delivers the job's events after the stream sequence after
// through one ordered consumer, until the mode's end, an error, or the
// consumer stalls (errStalled); it returns the last event delivered and its
// stream sequence.
func (c *Client) followConsumer(ctx context.Context, stream jetstream.Stream, id string, after uint64, mode FollowMode, fn func(ev schema.Event, seq uint64) error) (schema.Event, uint64, error) {
	var last schema.Event
	lastSeq := after
	cfg := jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{broker.JobEventsFilter(id)},
		DeliverPolicy:  jetstream.DeliverAllPolicy,
		// The client does not delete an ordered consumer when it stops; the
		// server does once it is idle this long. The default (5m) lets a busy
		// CLI pile up a thousand of them, the server's per-stream default limit.
		InactiveThreshold: 10 * time.Second,
	}
	if after > 0 {
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, after+1
	}
	cons, err := stream.OrderedConsumer(ctx, cfg)
	if err != nil {
		return last, lastSeq, fmt.Errorf("follow %s: %w", id, err)
	}
	// A small buffer per follower: a gateway may hold a thousand of them
	// on one chatty job, and each refills as it is read.
	it, err := cons.Messages(jetstream.PullMaxMessages(64))
	if err != nil {
		return last, lastSeq, fmt.Errorf("follow %s: %w", id, err)
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
		msg, err := it.Next(jetstream.NextMaxWait(stallCheck))
		if errors.Is(err, nats.ErrTimeout) && ctx.Err() == nil {
			if raw, getErr := stream.GetLastMsgForSubject(ctx, broker.JobEventsFilter(id)); getErr == nil && raw.Sequence > lastSeq {
				return last, lastSeq, errStalled
			}
			continue
		}
		if err != nil {
			if ctx.Err() != nil {
				return last, lastSeq, context.Cause(ctx)
			}
			return last, lastSeq, fmt.Errorf("follow %s: %w", id, err)
		}
		meta, metaErr := msg.Metadata()
		var seq uint64
		if metaErr == nil {
			seq = meta.Sequence.Stream
		}
		ev, err := schema.DecodeEvent(msg.Data())
		if err != nil {
			c.log.Warn("skip undecodable event", "subject", msg.Subject(), "err", err)
			lastSeq = max(lastSeq, seq)
			continue
		}
		if err := fn(ev, seq); err != nil {
			return ev, seq, err
		}
		last, lastSeq = ev, seq
		if mode == UntilDone && ev.Terminal() {
			return last, lastSeq, nil
		}
		if mode == Replay && metaErr == nil && meta.NumPending == 0 {
			return last, lastSeq, nil
		}
	}
}
