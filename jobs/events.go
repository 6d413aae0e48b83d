package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/winchhq/winch/broker"
	"github.com/winchhq/winch/schema"
)

// Publisher writes events to the events stream; only workers use it. Each
// event's Nats-Msg-Id is its identity (schema.Event.MsgID), so an event
// published again (a retry, a redelivered request that finds its job over)
// is stored once.
type Publisher struct {
	js      jetstream.JetStream
	log     *slog.Logger
	counter EventCounter // may be nil (CountWith)
}

// NewPublisher publishes with js.
func NewPublisher(js jetstream.JetStream, log *slog.Logger) *Publisher {
	return &Publisher{js: js, log: log}
}

func encode(ev schema.Event) (*nats.Msg, error) {
	if ev.Time.IsZero() {
		ev.Time = time.Now().UTC()
	}
	data, err := json.Marshal(ev)
	if err != nil {
		return nil, fmt.Errorf("encode %s event of %s: %w", ev.Kind, ev.JobID, err)
	}
	return &nats.Msg{Subject: broker.EventSubject(ev.JobID, string(ev.Kind)), Data: data,
		Header: map[string][]string{jetstream.MsgIDHeader: {ev.MsgID()}, jetstream.ExpectedStreamHeader: {broker.EventsStream}}}, nil
}

// Publish writes one event and waits for the stream to have it, retrying
// until ctx ends: events are the audit trail.
func (p *Publisher) Publish(ctx context.Context, ev schema.Event) error {
	msg, err := encode(ev)
	if err != nil {
		return err
	}
	p.count(ev.Kind)
	return p.publishSync(ctx, msg)
}

func (p *Publisher) publishSync(ctx context.Context, msg *nats.Msg) error {
	for try := 1; ; try++ {
		// Each try waits for its own answer: a publish that reached a
		// server as it died, or a stream without a leader, is never
		// answered, even once there is one.
		tryCtx, cancel := context.WithTimeout(ctx, broker.TryTimeout)
		_, err := p.js.PublishMsg(tryCtx, msg)
		cancel()
		if err == nil {
			return nil
		}
		// Every failure but a refusal may pass (no stream leader while a
		// cluster fails over, a reconnect): try again, backing off, for as
		// long as ctx allows. The message id makes a repeat harmless.
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) && apiErr.Code < 500 && apiErr.Code != 0 {
			return fmt.Errorf("publish %s: %w", msg.Subject, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("publish %s: %w", msg.Subject, err)
		case <-time.After(min(time.Duration(try)*100*time.Millisecond, 2*time.Second)):
		}
	}
}

// Attempt numbers and sends the events of one attempt. Emit does not wait
// for each acknowledgement (the order is kept by seq, and by the one
// connection they go out on); Flush waits for all of them, and the worker
// calls it before it acknowledges the request, so that a request is never
// acknowledged while an event of its job may still be lost.
type Attempt struct {
	p       *Publisher
	job     string
	attempt int
	worker  string

	mu      sync.Mutex
	seq     int
	pending []pendingEvent
	// pendingBytes is the size of the events in pending.
	pendingBytes int
	failed       error // an event that could not be published, for Flush to report
}

type pendingEvent struct {
	msg    *nats.Msg
	future jetstream.PubAckFuture // nil: publish it again in Flush
}

// Attempt starts numbering the events of attempt of job, written by worker.
func (p *Publisher) Attempt(job string, attempt int, worker string) *Attempt {
	return &Attempt{p: p, job: job, attempt: attempt, worker: worker}
}

// NextSeq reserves the next sequence number, for an event whose content
// depends on it (the final event, whose seq the state records).
func (a *Attempt) NextSeq() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.seq++
	return a.seq
}

// Emit numbers ev (unless it carries a reserved Seq) and sends it.
func (a *Attempt) Emit(ev schema.Event) {
	a.mu.Lock()
	defer a.mu.Unlock()
	ev.JobID, ev.Attempt, ev.Worker = a.job, a.attempt, a.worker
	if ev.Seq == 0 {
		a.seq++
		ev.Seq = a.seq
	}
	msg, err := encode(ev)
	if err != nil {
		a.p.log.Error("event dropped", "job", a.job, "err", err)
		return
	}
	// Settled acknowledgements are forgotten as we go, so that a long run
	// with much output holds only the unacknowledged ones.
	kept := a.pending[:0]
	for _, pe := range a.pending {
		if pe.future != nil {
			switch err := settled(pe.future); {
			case err == nil:
				a.pendingBytes -= len(pe.msg.Data)
				continue
			case err != errPending:
				pe.future = nil // failed: Flush publishes it again
			}
		}
		kept = append(kept, pe)
	}
	clear(a.pending[len(kept):]) // let the settled messages go
	a.pending = kept
	// Back-pressure: a command that writes faster than the stream takes
	// its output waits here, rather than the worker holding its output.
	for len(a.pending) >= maxUnacked || (len(a.pending) > 0 && a.pendingBytes+len(msg.Data) > maxUnackedBytes) {
		a.settleOldest()
	}
	a.p.count(ev.Kind)
	f, err := a.p.js.PublishMsgAsync(msg)
	if err != nil {
		f = nil
	}
	a.pending = append(a.pending, pendingEvent{msg: msg, future: f})
	a.pendingBytes += len(msg.Data)
}

// maxUnacked and maxUnackedBytes bound the events of an attempt in flight:
// what is held while the stream catches up is a few log batches (64 KiB each
// by default), not the command's output.
const (
	maxUnacked      = 64
	maxUnackedBytes = 128 << 10
)

// settleOldest waits for the oldest event in flight, publishing it again
// if it failed. a.mu is held.
func (a *Attempt) settleOldest() {
	pe := a.pending[0]
	a.pending[0] = pendingEvent{}
	a.pending = a.pending[1:]
	a.pendingBytes -= len(pe.msg.Data)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ack, cancelAck := context.WithTimeout(ctx, broker.TryTimeout)
	defer cancelAck()
	if pe.future != nil && awaitAck(ack, pe.future) {
		return
	}
	if err := a.p.publishSync(ctx, pe.msg); err != nil {
		a.failed = fmt.Errorf("event lost: %w", err)
		a.p.log.Error("event lost", "job", a.job, "err", err)
	}
}

// settled returns nil if f was acknowledged, errPending if not yet, or the
// publish error.
func settled(f jetstream.PubAckFuture) error {
	select {
	case <-f.Ok():
		return nil
	case err := <-f.Err():
		return err
	default:
		return errPending
	}
}

var errPending = errors.New("pending")

// Flush waits until the stream has every event emitted so far, publishing
// again (synchronously, with retries) any that failed.
func (a *Attempt) Flush(ctx context.Context) error {
	a.mu.Lock()
	pending := a.pending
	a.pending, a.pendingBytes = nil, 0
	firstErr := a.failed
	a.mu.Unlock()
	// One try's time for all the acknowledgements still out.
	acks, cancel := context.WithTimeout(ctx, broker.TryTimeout)
	defer cancel()
	for _, pe := range pending {
		if pe.future != nil && awaitAck(acks, pe.future) {
			continue
		}
		if err := a.p.publishSync(ctx, pe.msg); err != nil && firstErr == nil {
			firstErr = err
		}
	}
	return firstErr
}

// awaitAck waits for f's acknowledgement until ctx ends, which callers
// bound to one try's time: an asynchronous publish whose answer was lost
// (its server died, its stream had no leader) is never answered, so it is
// published again instead, and its message ID makes the repeat harmless.
func awaitAck(ctx context.Context, f jetstream.PubAckFuture) bool {
	select {
	case <-f.Ok():
		return true
	case <-f.Err():
	case <-ctx.Done():
	}
	return false
}
