// Package producer is the client side of winch: submit a request, follow its
// events, read its state, cancel it, list jobs. The CLI uses it; so can any
// Go service that wants to run commands through winch.
package producer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/winchhq/winch/broker"
	"github.com/winchhq/winch/schema"
)

// Errors that carry a decision for the caller.
var (
	ErrNotPermitted = errors.New("not permitted by the NATS server")
	ErrNotFound     = errors.New("no such job")
	ErrFinished     = errors.New("job already finished")
	ErrNoTopology   = errors.New("winch streams not found on this NATS server")
)

// Client submits and observes jobs.
type Client struct {
	nc    *nats.Conn
	js    jetstream.JetStream
	state jetstream.KeyValue
	log   *slog.Logger
}

// New binds a client to the winch topology on nc's server.
func New(ctx context.Context, nc *nats.Conn, log *slog.Logger) (*Client, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	kv, err := js.KeyValue(ctx, broker.StateBucket)
	if err != nil {
		if errors.Is(err, jetstream.ErrBucketNotFound) || errors.Is(err, jetstream.ErrJetStreamNotEnabled) {
			return nil, fmt.Errorf("%w (start `winch dev`, `winch worker` or `winch broker` once to create them)", ErrNoTopology)
		}
		return nil, fmt.Errorf("open state bucket: %w", err)
	}
	return &Client{nc: nc, js: js, state: kv, log: log}, nil
}

// Submitted describes a published request.
type Submitted struct {
	Request schema.Request
	// Duplicate is true when the broker already had a request with this ID:
	// nothing new was queued.
	Duplicate bool
}

// Submit fills in the request's defaults (ID, version, queue, time),
// validates it and publishes it with its ID as Nats-Msg-Id, so that a
// retried Submit cannot queue the job twice. It does not check parameters
// against the command; callers that know the catalog do that first.
func (c *Client) Submit(ctx context.Context, req schema.Request) (Submitted, error) {
	req.Version = schema.Version
	if req.Queue == "" {
		req.Queue = schema.DefaultQueue
	}
	if req.ID == "" {
		if req.IdempotencyKey != "" {
			req.ID = schema.IdempotentJobID(req.Principal, req.IdempotencyKey)
		} else {
			req.ID = schema.NewJobID()
		}
	}
	if req.CreatedAt.IsZero() {
		req.CreatedAt = time.Now().UTC()
	}
	if err := req.Validate(); err != nil {
		return Submitted{}, err
	}
	data, err := json.Marshal(req)
	if err != nil {
		return Submitted{}, fmt.Errorf("encode request: %w", err)
	}
	subject := broker.JobSubject(req.Queue, req.Principal)
	ack, err := c.js.Publish(ctx, subject, data, jetstream.WithMsgID(req.ID), jetstream.WithExpectStream(broker.JobsStream))
	if last := c.nc.LastError(); err != nil && errors.Is(last, nats.ErrPermissionViolation) && strings.Contains(last.Error(), subject) {
		return Submitted{}, fmt.Errorf("%w: you may not publish requests as %q on queue %q (with authorization on, your principal is your NATS user: set WINCH_PRINCIPAL to it)",
			ErrNotPermitted, req.Principal, req.Queue)
	}
	if err != nil {
		if errors.Is(err, jetstream.ErrNoStreamResponse) {
			return Submitted{}, fmt.Errorf("publish request: %w: %w", ErrNoTopology, err)
		}
		return Submitted{}, fmt.Errorf("publish request: %w", err)
	}
	// The state entry is written after the publish, so that a failure here
	// leaves a queued request (which a worker will record) rather than a
	// state entry for a request that was never queued.
	st := schema.JobState{
		JobID: req.ID, State: schema.StateQueued, Command: req.Command,
		Principal: req.Principal, Queue: req.Queue, CreatedAt: req.CreatedAt,
	}
	if _, err := c.state.Create(ctx, req.ID, st.Encode()); err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
		c.log.Warn("record queued state", "job", req.ID, "err", err)
	}
	return Submitted{Request: req, Duplicate: ack.Duplicate}, nil
}

// Status returns the job's latest state.
func (c *Client) Status(ctx context.Context, id string) (schema.JobState, error) {
	st, _, err := c.get(ctx, id)
	return st, err
}

func (c *Client) get(ctx context.Context, id string) (schema.JobState, uint64, error) {
	if !schema.ValidJobID(id) {
		return schema.JobState{}, 0, fmt.Errorf("%w: %q is not a job id", ErrNotFound, id)
	}
	e, err := c.state.Get(ctx, id)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return schema.JobState{}, 0, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	if err != nil {
		return schema.JobState{}, 0, fmt.Errorf("read state of %s: %w", id, err)
	}
	st, err := schema.DecodeJobState(e.Value())
	return st, e.Revision(), err
}

// Cancel asks for the job to stop. A queued job is cancelled at once, and
// never starts; a running one is stopped by its worker, which records the
// end (see Wait). by names who cancelled, for the audit.
func (c *Client) Cancel(ctx context.Context, id, by string) (schema.JobState, error) {
	for {
		st, rev, err := c.get(ctx, id)
		if err != nil {
			return st, err
		}
		switch {
		case st.State.Terminal():
			return st, fmt.Errorf("%w: %s is %s", ErrFinished, id, st.State)
		case st.CancelRequested:
			return st, nil
		case st.State == schema.StateQueued:
			st.State = schema.StateCancelled
			st.FinishedAt = time.Now().UTC()
			st.Error = "cancelled by " + by + " before it started"
			st.CancelRequested, st.CancelledBy = true, by
			st.FinalSeq = 1
		default:
			st.CancelRequested, st.CancelledBy = true, by
		}
		if _, err := c.state.Update(ctx, id, st.Encode(), rev); errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			continue // someone else wrote in between; decide again
		} else if err != nil {
			return st, fmt.Errorf("cancel %s: %w", id, err)
		}
		if st.State == schema.StateCancelled {
			if err := c.publishEvent(ctx, st.FinalEvent()); err != nil {
				return st, err
			}
		}
		return st, nil
	}
}

func (c *Client) publishEvent(ctx context.Context, ev schema.Event) error {
	data, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	_, err = c.js.Publish(ctx, broker.EventSubject(ev.JobID, string(ev.Kind)), data, jetstream.WithMsgID(ev.MsgID()))
	if err != nil {
		return fmt.Errorf("publish %s event of %s: %w", ev.Kind, ev.JobID, err)
	}
	return nil
}

// Wait blocks until the job is in a terminal state, and returns that state.
func (c *Client) Wait(ctx context.Context, id string) (schema.JobState, error) {
	w, err := c.state.Watch(ctx, id)
	if err != nil {
		return schema.JobState{}, err
	}
	defer func() { _ = w.Stop() }()
	for {
		select {
		case <-ctx.Done():
			return schema.JobState{}, context.Cause(ctx)
		case e := <-w.Updates():
			if e == nil || e.Operation() != jetstream.KeyValuePut {
				continue
			}
			st, err := schema.DecodeJobState(e.Value())
			if err != nil {
				return st, err
			}
			if st.State.Terminal() {
				return st, nil
			}
		}
	}
}

// List returns the jobs whose state is one of states (all jobs if none),
// oldest first.
func (c *Client) List(ctx context.Context, states ...schema.State) ([]schema.JobState, error) {
	w, err := c.state.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		return nil, err
	}
	defer func() { _ = w.Stop() }()
	var out []schema.JobState
	for {
		select {
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		case e := <-w.Updates():
			if e == nil { // the watcher has delivered every current value
				return out, nil
			}
			st, err := schema.DecodeJobState(e.Value())
			if err != nil {
				c.log.Warn("skip undecodable state entry", "key", e.Key(), "err", err)
				continue
			}
			if len(states) == 0 || containsState(states, st.State) {
				out = append(out, st)
			}
		}
	}
}

func containsState(states []schema.State, s schema.State) bool {
	for _, x := range states {
		if x == s {
			return true
		}
	}
	return false
}

// QueueStatus says how busy a queue is, to explain a wait.
type QueueStatus struct {
	Queue string
	// Exists is false when no worker ever served the queue.
	Exists bool
	// Pending requests not yet delivered to any worker.
	Pending uint64
	// InFlight requests delivered and not yet acknowledged.
	InFlight int
	// IdleWorkers are workers waiting for a request right now.
	IdleWorkers int
}

// Queue reports the state of a queue's shared consumer.
func (c *Client) Queue(ctx context.Context, queue string) (QueueStatus, error) {
	qs := QueueStatus{Queue: queue}
	cons, err := c.js.Consumer(ctx, broker.JobsStream, broker.ConsumerName(queue))
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		return qs, nil
	}
	if err != nil {
		return qs, err
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return qs, err
	}
	qs.Exists = true
	qs.Pending = info.NumPending
	qs.InFlight = info.NumAckPending
	qs.IdleWorkers = info.NumWaiting
	return qs, nil
}
