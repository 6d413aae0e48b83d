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
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/winchhq/winch/broker"
	"github.com/winchhq/winch/jobs"
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
	// catalog is kept while KeepCatalog watches the registry.
	catalog catalogCache
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
	var kv jetstream.KeyValue
	err = broker.AcrossFailover(ctx, func(ctx context.Context) (err error) {
		kv, err = js.KeyValue(ctx, broker.StateBucket)
		return err
	})
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
	if len(data) > req.SizeLimit() {
		return Submitted{}, &schema.RequestError{Reason: fmt.Sprintf("the request is %d bytes encoded, more than the %d a request may be: shorten its values, or split a fan-out", len(data), req.SizeLimit())}
	}
	subject := broker.PriorityJobSubject(req.Queue, req.Priority.SubjectToken(), req.ID, req.Principal)
	ack, err := c.publishRequest(ctx, subject, data, req.ID)
	if last := c.nc.LastError(); err != nil && errors.Is(last, nats.ErrPermissionViolation) && strings.Contains(last.Error(), subject) {
		return Submitted{}, fmt.Errorf("%w: you may not publish requests as %q on queue %q (with authorization on, your principal is your NATS user: set WINCH_PRINCIPAL to it)",
			ErrNotPermitted, req.Principal, req.Queue)
	}
	if err != nil {
		if errors.Is(err, jetstream.ErrNoStreamResponse) { // still, after a failover's time
			return Submitted{}, fmt.Errorf("publish request: %w: %w", ErrNoTopology, err)
		}
		return Submitted{}, fmt.Errorf("publish request: %w", err)
	}
	// Nothing else is written: the request in the queue is the job's
	// record until a worker claims it (see Status and List).
	return Submitted{Request: req, Duplicate: ack.Duplicate}, nil
}

// publishRequest publishes a request and waits for the stream to have it.
// When the stream does not answer, it is either not there (no topology:
// said at once) or between leaders (a server of a cluster was lost): then
// the same request is published again until it is stored
// (broker.AcrossFailover); its id, the message id, makes a repeat one the
// stream drops.
func (c *Client) publishRequest(ctx context.Context, subject string, data []byte, id string) (*jetstream.PubAck, error) {
	var ack *jetstream.PubAck
	err := broker.AcrossFailover(ctx, func(ctx context.Context) (err error) {
		ack, err = c.js.Publish(ctx, subject, data, jetstream.WithMsgID(id), jetstream.WithExpectStream(broker.JobsStream))
		if errors.Is(err, jetstream.ErrNoStreamResponse) {
			if _, serr := c.js.Stream(ctx, broker.JobsStream); errors.Is(serr, jetstream.ErrStreamNotFound) {
				return fmt.Errorf("%w: %v", ErrNoTopology, err) // an answer: no more tries
			}
		}
		return err
	})
	return ack, err
}

// Status returns the job's latest state: what its worker recorded or, for a
// job that no worker has claimed yet, queued, from its request.
func (c *Client) Status(ctx context.Context, id string) (schema.JobState, error) {
	if !schema.ValidJobID(id) {
		return schema.JobState{}, fmt.Errorf("%w: %q is not a job id", ErrNotFound, id)
	}
	e, err := c.state.Get(ctx, id)
	if err == nil {
		st, err := schema.DecodeJobState(e.Value())
		if err == nil && st.State == schema.StateRunning && st.StartedAt.IsZero() {
			st.StartedAt = c.startedAt(ctx, st)
		}
		return st, err
	}
	if !errors.Is(err, jetstream.ErrKeyNotFound) {
		return schema.JobState{}, fmt.Errorf("read state of %s: %w", id, err)
	}
	s, err := c.js.Stream(ctx, broker.JobsStream)
	if err != nil {
		return schema.JobState{}, fmt.Errorf("open the queue: %w", err)
	}
	st, _, found, err := jobs.UnclaimedJob(ctx, s, id)
	if err != nil {
		return schema.JobState{}, err
	}
	if !found {
		return schema.JobState{}, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	return st, nil
}

// startedAt is when the running attempt's command started, from its
// started event: workers record the start in the state only for commands
// that may not run twice, where the record buys a guarantee.
func (c *Client) startedAt(ctx context.Context, st schema.JobState) time.Time {
	s, err := c.js.Stream(ctx, broker.EventsStream)
	if err != nil {
		return time.Time{}
	}
	raw, err := s.GetLastMsgForSubject(ctx, broker.EventSubject(st.JobID, string(schema.KindStarted)))
	if err != nil {
		return time.Time{}
	}
	ev, err := schema.DecodeEvent(raw.Data)
	if err != nil || ev.Attempt != st.Attempt {
		return time.Time{}
	}
	return ev.Time
}

// Errors of a cancel, beside ErrNotFound and ErrFinished.
var (
	// ErrRefused: the principal may not cancel the job. The refusal is in
	// the job's events.
	ErrRefused = errors.New("cancel refused")
	// ErrUndecided: no worker decided the request in time. It stays in
	// the control stream, and the first worker to start decides it.
	ErrUndecided = errors.New("no worker has decided the cancel yet")
)

// CancelTimeout bounds how long Cancel waits for a worker's decision.
const CancelTimeout = 10 * time.Second

// Cancel asks the workers to stop the job, as principal by, and returns
// their decision: a queued job is cancelled at once and never starts; a
// running one is stopped by its worker, which records the end (see Wait).
// Only the job's own principal, or one with the admin role, may cancel it:
// anyone else gets ErrRefused, and the refusal is audited. The client
// writes nothing but the request.
func (c *Client) Cancel(ctx context.Context, id, by string) (schema.ControlReply, error) {
	// What is certain without a worker is answered here: a job that does
	// not exist, or is over. The rest is the workers' to decide.
	st, err := c.Status(ctx, id)
	if err != nil {
		return schema.ControlReply{}, err
	}
	if st.State.Terminal() {
		return schema.ControlReply{JobID: id, Outcome: schema.OutcomeFinished, State: st.State}, fmt.Errorf("%w: %s is %s", ErrFinished, id, st.State)
	}
	creq := schema.ControlRequest{Version: schema.Version, ID: schema.NewJobID(), Action: schema.ActionCancel,
		JobID: id, Principal: by, CreatedAt: time.Now().UTC()}
	if err := creq.Validate(); err != nil {
		return schema.ControlReply{}, err
	}
	data, err := json.Marshal(creq)
	if err != nil {
		return schema.ControlReply{}, err
	}
	inbox := c.nc.NewRespInbox()
	sub, err := c.nc.SubscribeSync(inbox)
	if err != nil {
		return schema.ControlReply{}, err
	}
	defer func() { _ = sub.Unsubscribe() }()
	subject := broker.ControlSubject(string(creq.Action), id, by)
	msg := &nats.Msg{Subject: subject, Data: data, Header: nats.Header{}}
	msg.Header.Set(jetstream.MsgIDHeader, creq.ID)
	msg.Header.Set(jetstream.ExpectedStreamHeader, broker.ControlStream)
	msg.Header.Set(broker.ControlReplyHeader, inbox)
	if _, err := c.js.PublishMsg(ctx, msg); err != nil {
		if last := c.nc.LastError(); errors.Is(last, nats.ErrPermissionViolation) && strings.Contains(last.Error(), subject) {
			return schema.ControlReply{}, fmt.Errorf("%w: you may not send control requests as %q (with authorization on, your principal is your NATS user: set WINCH_PRINCIPAL to it)", ErrNotPermitted, by)
		}
		return schema.ControlReply{}, fmt.Errorf("publish the cancel request: %w", err)
	}
	wait, cancel := context.WithTimeout(ctx, CancelTimeout)
	defer cancel()
	m, err := sub.NextMsgWithContext(wait)
	if err != nil {
		if ctx.Err() != nil {
			return schema.ControlReply{}, ctx.Err()
		}
		return schema.ControlReply{JobID: id}, fmt.Errorf("%w within %s: it is kept, and decided when a worker runs", ErrUndecided, CancelTimeout)
	}
	var reply schema.ControlReply
	if err := json.Unmarshal(m.Data, &reply); err != nil {
		return schema.ControlReply{}, fmt.Errorf("decode the decision: %w", err)
	}
	switch reply.Outcome {
	case schema.OutcomeRefused:
		return reply, fmt.Errorf("%w: %s", ErrRefused, reply.Error)
	case schema.OutcomeNotFound:
		return reply, fmt.Errorf("%w: %s", ErrNotFound, id)
	case schema.OutcomeFinished:
		return reply, fmt.Errorf("%w: %s is %s", ErrFinished, id, reply.State)
	}
	return reply, nil
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
// oldest first: those workers have recorded, and those still queued that no
// worker has claimed yet, read from the queue itself.
//
// Asked only for states a job has not ended in (winch ps), it reads the
// requests in the queue and their own states, not every state the bucket
// keeps; asked for ended ones too (winch ps -a), it reads them all.
func (c *Client) List(ctx context.Context, states ...schema.State) ([]schema.JobState, error) {
	if len(states) > 0 && !slices.ContainsFunc(states, schema.State.Terminal) {
		return c.listActive(ctx, states)
	}
	w, err := c.state.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		return nil, err
	}
	defer func() { _ = w.Stop() }()
	var out []schema.JobState
	known := map[string]bool{}
	for done := false; !done; {
		select {
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		case e := <-w.Updates():
			if e == nil { // the watcher has delivered every current value
				done = true
				break
			}
			known[e.Key()] = true
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
	return c.withUnclaimed(ctx, out, known, states)
}

// withUnclaimed adds to out the queued jobs no worker has recorded (not in
// known), when states asks for queued ones, and sorts them oldest first.
func (c *Client) withUnclaimed(ctx context.Context, out []schema.JobState, known map[string]bool, states []schema.State) ([]schema.JobState, error) {
	if len(states) == 0 || containsState(states, schema.StateQueued) {
		queued, err := c.unclaimed(ctx, known, false)
		if err != nil {
			return nil, err
		}
		for _, st := range queued {
			if len(states) == 0 || containsState(states, st.State) {
				out = append(out, st)
			}
		}
	}
	slices.SortStableFunc(out, func(a, b schema.JobState) int { return a.CreatedAt.Compare(b.CreatedAt) })
	return out, nil
}

// unclaimed lists the requests in the queue whose jobs are not in known;
// with verify, as their own state says (queued when there is none, left
// out when ended). The queue is read a thousand requests at a time
// (batched direct gets).
func (c *Client) unclaimed(ctx context.Context, known map[string]bool, verify bool) ([]schema.JobState, error) {
	var queued []schema.JobState
	at := map[string]int{}
	err := broker.ReadAll(ctx, c.nc, broker.JobsStream, broker.AllRequests, func(m broker.StoredMsg) error {
		st, ok := jobs.QueuedRequest(m.Subject, m.Data, m.Time)
		if !ok || known[st.JobID] {
			return nil
		}
		if i, seen := at[st.JobID]; seen { // the later request of a job stands
			queued[i] = st
			return nil
		}
		at[st.JobID] = len(queued)
		queued = append(queued, st)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list the queue: %w", err)
	}
	if !verify || len(queued) == 0 {
		return queued, nil
	}
	ids := make([]string, len(queued))
	for i, st := range queued {
		ids[i] = st.JobID
	}
	states, _, err := jobs.States(ctx, c.nc, ids)
	if err != nil {
		return nil, fmt.Errorf("read the states of queued jobs: %w", err)
	}
	out := queued[:0]
	for _, st := range queued {
		if recorded, ok := states[st.JobID]; ok {
			if recorded.State.Terminal() {
				continue // ended; its request not yet acknowledged
			}
			st = recorded
		}
		out = append(out, st)
	}
	return out, nil
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

// NotifierWarning is what to tell whoever submitted job jobID with
// webhooks notify when no notifier is listening (they wait in the events
// stream until one starts); "" when there is nothing to say, or when it
// cannot be known.
func (c *Client) NotifierWarning(ctx context.Context, jobID string, notify []schema.NotifyTarget) string {
	if len(notify) == 0 {
		return ""
	}
	if ok, err := c.notifierListening(ctx); err == nil && !ok {
		return fmt.Sprintf("no notifier is running: job %s's webhooks wait until one starts (winch notifier)", jobID)
	}
	return ""
}

// notifierListening reports whether a notifier is waiting for jobs' ends
// (it has a pull outstanding on the notifiers' consumer): without one,
// webhooks wait in the events stream until one starts.
func (c *Client) notifierListening(ctx context.Context) (bool, error) {
	cons, err := c.js.Consumer(ctx, broker.EventsStream, broker.NotifierConsumer)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return false, err
	}
	return info.NumWaiting > 0, nil
}

// Queue reports the state of a queue's shared consumers, all priorities
// together.
func (c *Client) Queue(ctx context.Context, queue string) (QueueStatus, error) {
	qs := QueueStatus{Queue: queue}
	for _, prio := range broker.Priorities {
		cons, err := c.js.Consumer(ctx, broker.JobsStream, broker.PriorityConsumerName(queue, prio))
		if errors.Is(err, jetstream.ErrConsumerNotFound) {
			continue
		}
		if err != nil {
			return qs, err
		}
		info, err := cons.Info(ctx)
		if err != nil {
			return qs, err
		}
		qs.Exists = true
		qs.Pending += info.NumPending
		qs.InFlight += info.NumAckPending
		// An idle worker polls every priority: count it once.
		qs.IdleWorkers = max(qs.IdleWorkers, info.NumWaiting)
	}
	return qs, nil
}
