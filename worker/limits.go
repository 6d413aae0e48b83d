package worker

import (
	"context"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/winchhq/winch/jobs"
	"github.com/winchhq/winch/schema"
)

// Concurrency limits (docs/ARCHITECTURE.md, "Concurrency limits"): before a
// job of a limited command is claimed, its request takes a slot of its key
// (jobs.Acquire). One that finds them all held waits: its request is kept
// in the slots bucket and acknowledged, its state says what it waits for,
// and no worker holds it. Whoever frees a slot (the end of a holder, of any
// kind) publishes the request of the job promoted into it again, and that
// request is taken like any other.

// slotVerdict is what acquiring a slot decided for a delivered request.
type slotVerdict int

const (
	slotGranted slotVerdict = iota // claim it
	slotWaits                      // acknowledged: it waits
	slotRetry                      // nak it: a write failed, or its job runs elsewhere
	slotOver                       // term it: the job ended
)

// acquireSlot takes a slot of the admitted request's key for it, or makes
// it wait. meta is the delivery's: its stream sequence is the request's
// place in line.
func (w *Worker) acquireSlot(ctx context.Context, msg jetstream.Msg, meta *jetstream.MsgMetadata, adm *admission) slotVerdict {
	req := adm.req
	log := w.log.With("job", req.ID, "concurrency", adm.slotKey)
	cur, err := w.store.Get(ctx, req.ID)
	if err != nil {
		log.Warn("read the job's state before taking a slot", "err", err)
		return slotRetry
	}
	if cur.State.State.Terminal() {
		return slotGranted // the claim finds it over, and frees what it held
	}
	me := jobs.SlotWaiter{Job: req.ID, Rank: jobs.PriorityRank(req.Priority), Seq: meta.Sequence.Stream}
	unlock := w.lockKey(adm.slotKey)
	defer unlock()
	var granted bool
	var wake []string
	var woken bool
	slot, err := w.limits.UpdateSlot(ctx, adm.slotKey, func(s jobs.Slot) jobs.Slot {
		i := s.HolderJobsIndex(req.ID)
		woken = i >= 0 && s.Holders[i].Session == ""
		var next jobs.Slot
		next, granted, wake = jobs.Acquire(s, adm.slotKey, adm.slotLimit, me, w.session, time.Now().UTC(), w.topo.Lease())
		return next
	})
	if err != nil {
		log.Warn("take a concurrency slot; the request will be redelivered", "err", err)
		return slotRetry
	}
	w.wake(ctx, adm.slotKey, wake)
	if granted {
		adm.woken = woken
		return slotGranted
	}
	if err := w.limits.KeepRequest(ctx, req.ID, jobs.KeptRequest{Subject: msg.Subject(), Request: msg.Data()}); err != nil {
		log.Warn("keep the waiting job's request; it will be redelivered", "err", err)
		return slotRetry
	}
	queued := jobs.Queued(req)
	var dec jobs.Decision
	_, err = w.store.Update(ctx, req.ID, nil, func(e jobs.Entry) (schema.JobState, bool, error) {
		dec = jobs.Wait(e.StateOr(queued), adm.slotKey, slot.HolderJobs(), time.Now().UTC())
		return dec.State, dec.Write, nil
	})
	if err != nil {
		log.Warn("record that the job waits; it will be redelivered", "err", err)
		return slotRetry
	}
	switch dec.Verdict {
	case jobs.Over:
		// Cancelled while it took its place in line: give the place up.
		w.freeSlot(ctx, adm.slotKey, req.ID)
		_ = w.limits.DropRequest(ctx, req.ID)
		return slotOver
	case jobs.Busy:
		return slotRetry
	}
	if dec.Write {
		w.publish(ctx, jobs.WaitingEvent(dec.State, w.cfg.ID, time.Now().UTC()))
		log.Info("job waits for a concurrency slot", "held_by", dec.State.HeldBy)
	}
	return slotWaits
}

// freeSlot gives up whatever job held or waited for in key's slots, and
// wakes the jobs promoted into the freed slots. It reports whether the
// entry was written (or had nothing of the job); a failure leaves the
// caller's request unacknowledged, so that its redelivery frees it.
func (w *Worker) freeSlot(ctx context.Context, key, job string) bool {
	unlock := w.lockKey(key)
	defer unlock()
	release := jobs.SlotRelease{Job: job, Lease: w.topo.Lease()}
	_, err := w.limits.UpdateSlot(ctx, key, func(s jobs.Slot) jobs.Slot {
		return release.Decide(s, time.Now().UTC())
	})
	if err != nil {
		w.log.Error("free a concurrency slot", "job", job, "concurrency", key, "err", err)
		return false
	}
	w.wake(ctx, key, release.Wake)
	return true
}

// wake publishes again the kept requests of jobs promoted into key's
// slots. A promoted job whose request is not kept (it was cancelled while
// it waited, or its worker died before it kept it: then its own request
// comes back and takes its place in line again) gives its slot up.
func (w *Worker) wake(ctx context.Context, key string, jobIDs []string) {
	for len(jobIDs) > 0 {
		job := jobIDs[0]
		jobIDs = jobIDs[1:]
		kept, found, err := w.limits.KeptRequest(ctx, job)
		if err != nil {
			w.log.Error("wake a waiting job; the next end in its key wakes it", "job", job, "err", err)
			continue
		}
		if found {
			if _, err := w.js.Publish(ctx, kept.Subject, kept.Request); err != nil {
				w.log.Error("publish a woken job's request; the next end in its key wakes it", "job", job, "err", err)
			} else {
				w.log.Debug("woke a waiting job", "job", job, "concurrency", key)
			}
			continue
		}
		var more []string
		_, err = w.limits.UpdateSlot(ctx, key, func(s jobs.Slot) jobs.Slot {
			more = nil
			if i := s.HolderJobsIndex(job); i < 0 || s.Holders[i].Session != "" {
				return s // taken meanwhile: its worker dropped the request
			}
			next, wake := jobs.FreeSlot(s, job, time.Now().UTC(), w.topo.Lease())
			more = wake
			return next
		})
		if err != nil {
			w.log.Error("give up the slot of a job without a request", "job", job, "err", err)
			continue
		}
		jobIDs = append(jobIDs, more...)
	}
}

// heldSlot is the concurrency key whose slot, or place in line, the job in
// state st has, or the admitted request's key.
func heldSlot(st schema.JobState, adm *admission) string {
	switch {
	case st.Slot != "":
		return st.Slot
	case st.WaitingFor != "":
		return st.WaitingFor
	case adm != nil:
		return adm.slotKey
	}
	return ""
}

// lockKey serializes this worker's writes of one key's entry: its runners
// would otherwise lose compare-and-sets to each other. Other workers'
// writes still race, and UpdateSlot retries those.
func (w *Worker) lockKey(key string) (unlock func()) {
	mu, _ := w.keyLocks.LoadOrStore(key, &sync.Mutex{})
	m := mu.(*sync.Mutex)
	m.Lock()
	return m.Unlock
}
