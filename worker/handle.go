package worker

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/winchhq/winch/jobs"
	"github.com/winchhq/winch/schema"
)

// settleTimeout bounds the writes of handling a request (claim, reject,
// bury), which must happen even when the job's own context is gone.
const settleTimeout = 10 * time.Second

// endTimeout bounds recording how a job that ran ended: its state and its
// events are retried for this long, through a broker's failover (a
// cluster elects a new stream leader in seconds), before the worker gives
// up and leaves the request to be redelivered.
const endTimeout = time.Minute

// delivery is what the worker does with a delivered request: the attempt
// acknowledges it through this, never holding the JetStream message itself.
type delivery interface {
	InProgress() error
	Ack() error
	Nak(delay time.Duration) error
	Term() error
}

// jsDelivery is a delivery of a JetStream message.
type jsDelivery struct{ msg jetstream.Msg }

func (d jsDelivery) InProgress() error             { return d.msg.InProgress() }
func (d jsDelivery) Ack() error                    { return d.msg.Ack() }
func (d jsDelivery) Nak(delay time.Duration) error { return d.msg.NakWithDelay(delay) }
func (d jsDelivery) Term() error                   { return d.msg.Term() }

var _ delivery = jsDelivery{}

// keepInProgress tells the broker every interval that d is still being
// worked on, so that it is not redelivered, until the returned stop is
// called. It is a timer that re-arms itself, not a goroutine: it is used
// around steps that nearly always end long before it fires (finding a
// command, recording an end).
func keepInProgress(d delivery, interval time.Duration) (stop func()) {
	var mu sync.Mutex
	var beat *time.Timer
	mu.Lock()
	defer mu.Unlock()
	beat = time.AfterFunc(interval, func() {
		_ = d.InProgress()
		mu.Lock()
		defer mu.Unlock()
		if beat != nil {
			beat.Reset(interval)
		}
	})
	return func() {
		mu.Lock()
		defer mu.Unlock()
		beat.Stop()
		beat = nil
	}
}

// handle takes one delivered request through admission and the claim to an
// attempt, or to a term or a nak.
func (w *Worker) handle(msg jetstream.Msg, l *lane) {
	ctx, cancel := context.WithTimeout(context.Background(), settleTimeout)
	defer cancel()
	d := jsDelivery{msg}
	meta, err := msg.Metadata()
	if err != nil {
		w.log.Error("message without metadata; terminating it", "subject", msg.Subject(), "err", err)
		_ = d.Term()
		return
	}
	lastTry := meta.NumDelivered >= uint64(w.topo.MaxDeliver)

	adm, err := w.admit(d, msg.Subject(), msg.Data(), rejectedID(msg, meta), lastTry)
	var rej *rejection
	switch {
	case errors.As(err, &rej):
		if w.reject(ctx, rej) == jobs.Busy {
			_ = d.Nak(w.topo.Lease())
			return
		}
		_ = d.Term()
		return
	case err != nil:
		w.log.Warn("cannot get the command's module; the request will be redelivered", "subject", msg.Subject(), "err", err)
		_ = d.Nak(2 * time.Second)
		return
	}

	log := w.log.With("job", adm.req.ID, "command", adm.req.Command)
	if adm.slotKey != "" {
		switch w.acquireSlot(ctx, msg, meta, &adm) {
		case slotWaits:
			_ = d.Ack() // its request is kept until a slot is its
			return
		case slotRetry:
			_ = d.Nak(time.Second)
			return
		case slotOver:
			_ = d.Term()
			return
		}
	}
	entry, dec, wait, err := w.claim(ctx, l.store, adm)
	switch {
	case err != nil && lastTry:
		log.Error("cannot claim the job on its last delivery; it is dead", "err", err)
		if _, err := w.bury(ctx, adm.req.ID, &adm.req, "could not be claimed on its last delivery: "+err.Error()); err != nil {
			log.Error("record the dead job; its request is kept for the dead-letter rules", "err", err)
			_ = d.Nak(time.Second)
			return
		}
		if adm.slotKey != "" && !w.freeSlot(ctx, adm.slotKey, adm.req.ID) {
			_ = d.Nak(time.Second)
			return
		}
		_ = d.Term()
		return
	case err != nil:
		log.Warn("cannot claim the job; it will be redelivered", "err", err)
		_ = d.Nak(time.Second)
		return
	case dec.Verdict == jobs.Over:
		// Already over (a duplicate, a cancel before start, a lost attempt
		// just recorded): make sure its end is published, then drop it.
		log.Debug("job is over; dropping the request", "state", dec.State.State)
		w.publish(ctx, dec.State.FinalEvent())
		if key := heldSlot(dec.State, &adm); key != "" && !w.freeSlot(ctx, key, adm.req.ID) {
			_ = d.Nak(time.Second) // its redelivery frees the slot
			return
		}
		if adm.req.Each != nil && dec.State.State == schema.StateCancelled {
			// Cancelled while its driver died: its children are cancelled
			// here instead.
			w.cancelChildren(ctx, dec.State)
		}
		w.tellParent(ctx, dec.State)
		_ = d.Term()
		return
	case dec.Verdict == jobs.Busy:
		log.Debug("job is held by a live worker; trying again later", "holder", dec.State.Worker)
		_ = d.Nak(max(wait+100*time.Millisecond, w.topo.HeartbeatInterval()))
		return
	}
	if adm.woken {
		_ = w.limits.DropRequest(ctx, adm.req.ID)
	}
	if adm.req.Each != nil {
		w.startFanout(d, adm, entry, log)
		return
	}
	a := &attempt{w: w, d: d, adm: adm, log: log, entry: entry, lastTry: lastTry, delivered: int(meta.NumDelivered),
		store: l.store, events: l.events.Attempt(adm.req.ID, entry.State.Attempt, w.cfg.ID)}
	a.run()
}

// claim takes the job with compare-and-set, so that it runs on one worker at
// a time, and decides from what the state says whether to run it, drop the
// request, or leave it for later (wait says how long the holder has).
func (w *Worker) claim(ctx context.Context, store *jobs.Store, adm admission) (entry jobs.Entry, dec jobs.Decision, wait time.Duration, err error) {
	c := jobs.Claimant{Worker: w.cfg.ID, Session: w.session, Executor: w.cfg.Executor.Name(),
		Retry: adm.cmd.Spec.Retry, Commit: adm.cmd.Commit, Params: adm.masked, Notify: adm.req.Notify, Slot: adm.slotKey}
	if n := adm.cmd.Spec.Notify; n != nil {
		c.Notify = append(slices.Clip(c.Notify), *n)
	}
	if adm.req.Each != nil {
		// A fan-out parent runs nothing itself: another worker may always
		// take over driving it.
		c.Retry, c.Executor = true, "fanout"
	}
	// Most requests find no state: try to create it before reading anything.
	known := &jobs.Entry{State: jobs.Queued(adm.req)}
	entry, err = store.Update(ctx, adm.req.ID, known, func(cur jobs.Entry) (schema.JobState, bool, error) {
		st := cur.StateOr(known.State)
		alive := false
		switch {
		case st.State == schema.StateRunning && st.Session == w.session:
			// This worker holds it: alive only if it still runs it. An
			// attempt that could not record its end leaves its claim
			// behind; the redelivery to this worker takes it over.
			alive, wait = w.isRunning(adm.req.ID), w.topo.Lease()
		case st.State == schema.StateRunning:
			var err error
			if alive, wait, err = w.sessions.Alive(ctx, st.Session); err != nil {
				return st, false, err
			}
		}
		if st.State == schema.StateRunning && !alive {
			// Its worker is gone. What that worker started may still run
			// (a container outlives it): stop it first, so that the job
			// never runs twice at once.
			startedThere, err := w.clearLeftovers(ctx, adm.req.ID)
			if err != nil {
				return st, false, err
			}
			if startedThere && st.StartedAt.IsZero() {
				st.StartedAt = time.Now().UTC()
			}
		}
		dec = jobs.Claim(st, alive, c, time.Now().UTC())
		return dec.State, dec.Write, nil
	})
	if err == nil && dec.Write && dec.Verdict == jobs.Over && dec.State.Reason == schema.ReasonWorkerLost {
		w.log.Warn("job's worker was lost while it ran", "job", adm.req.ID, "lost_worker", dec.State.Worker)
	}
	return entry, dec, wait, err
}

// reject records that a request can never run and publishes why; Busy says
// that a live worker runs the job, which a rejection must not overwrite.
func (w *Worker) reject(ctx context.Context, rej *rejection) jobs.Verdict {
	w.log.Warn("request rejected", "job", rej.id, "principal", rej.principal, "reason", rej.reason)
	now := time.Now().UTC()
	queued := jobs.Queued(rej.req)
	queued.JobID = rej.id
	dec := jobs.Reject(queued, rej.req, rej.principal, w.cfg.ID, rej.reason, now)
	held := "" // a woken job's slot, which its rejection frees
	if schema.ValidJobID(rej.id) {
		_, err := w.store.Update(ctx, rej.id, nil, func(cur jobs.Entry) (schema.JobState, bool, error) {
			held = heldSlot(cur.State, nil)
			dec = jobs.Reject(cur.StateOr(queued), rej.req, rej.principal, w.cfg.ID, rej.reason, now)
			return dec.State, dec.Write, nil
		})
		if err != nil {
			w.log.Error("record rejection", "job", rej.id, "err", err)
		}
	}
	if dec.Verdict != jobs.Busy {
		w.publish(ctx, dec.State.FinalEvent())
		w.tellParent(ctx, dec.State)
		if held != "" {
			w.freeSlot(ctx, held, rej.id)
			_ = w.limits.DropRequest(ctx, rej.id)
		}
	}
	return dec.Verdict
}

// bury records a job as dead, unless it is over or a live worker runs it,
// and says whether the job is over now. req, when known, describes a job
// that has no state yet.
func (w *Worker) bury(ctx context.Context, id string, req *schema.Request, why string) (over bool, err error) {
	entry, err := w.store.Update(ctx, id, nil, func(cur jobs.Entry) (schema.JobState, bool, error) {
		st := cur.State
		if req != nil {
			st = cur.StateOr(jobs.Queued(*req))
		}
		alive := false
		if st.State == schema.StateRunning {
			var err error
			if alive, _, err = w.sessions.Alive(ctx, st.Session); err != nil {
				return st, false, err
			}
		}
		d := jobs.Dead(st, alive, why, time.Now().UTC())
		return d.State, d.Write, nil
	})
	if err != nil {
		return false, fmt.Errorf("record dead job %s: %w", id, err)
	}
	if !entry.State.State.Terminal() {
		return false, nil
	}
	w.publish(ctx, entry.State.FinalEvent())
	if key := heldSlot(entry.State, nil); key != "" && !w.freeSlot(ctx, key, id) {
		return true, fmt.Errorf("free the concurrency slot of dead job %s", id)
	}
	w.tellParent(ctx, entry.State)
	return true, nil
}

// publish writes one event, logging what it could not.
func (w *Worker) publish(ctx context.Context, ev schema.Event) {
	if err := w.events.Publish(ctx, ev); err != nil {
		w.log.Error("publish event", "job", ev.JobID, "kind", ev.Kind, "err", err)
	}
}
