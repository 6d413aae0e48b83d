package jobs

import (
	"slices"
	"time"

	"github.com/winchhq/winch/schema"
)

// Concurrency limits (docs/ARCHITECTURE.md, "Concurrency limits"). Each
// concurrency key has one entry in the slots bucket: the jobs that hold its
// slots and, in order, the jobs that wait for one. The functions here decide
// how an entry changes; SlotStore writes it with compare-and-set.
//
// A holder that is woken (its request published again for a worker to
// take) has no session until a worker takes it; a request cannot be lost
// between the promotion and its publication because whoever promoted it
// still holds an unacknowledged request of its own, whose redelivery wakes
// again every reservation older than a lease (Stale).

// Slot is a concurrency key's entry.
type Slot struct {
	Key string `json:"key"`
	// Limit is the one the latest request asked for: a limit that changes
	// in a new module commit applies from the next request on.
	Limit   int          `json:"limit"`
	Holders []SlotHolder `json:"holders,omitempty"`
	Waiting []SlotWaiter `json:"waiting,omitempty"`
}

// SlotHolder is a job that holds a slot. Session is that of the worker that
// took it; "" while it is woken and no worker has taken it yet.
type SlotHolder struct {
	Job     string    `json:"job"`
	Session string    `json:"session,omitempty"`
	Since   time.Time `json:"since"`
}

// SlotWaiter is a job waiting for a slot. They are kept in the order they
// start in: by priority, then by arrival (the request's stream sequence).
type SlotWaiter struct {
	Job   string    `json:"job"`
	Rank  int       `json:"rank"`
	Seq   uint64    `json:"seq"`
	Since time.Time `json:"since"`
}

// PriorityRank orders priorities for waiting: high first.
func PriorityRank(p schema.Priority) int {
	switch p.Or() {
	case schema.PriorityHigh:
		return 0
	case schema.PriorityLow:
		return 2
	}
	return 1
}

// HolderJobs are the jobs holding the slot.
func (s Slot) HolderJobs() []string {
	out := make([]string, len(s.Holders))
	for i, h := range s.Holders {
		out[i] = h.Job
	}
	return out
}

func (s Slot) holder(job string) int {
	return slices.IndexFunc(s.Holders, func(h SlotHolder) bool { return h.Job == job })
}

func (s Slot) waiter(job string) int {
	return slices.IndexFunc(s.Waiting, func(w SlotWaiter) bool { return w.Job == job })
}

// clone copies the slices, so that a decision never changes the entry it
// was made from (a compare-and-set that fails decides again from it).
func (s Slot) clone() Slot {
	s.Holders = slices.Clone(s.Holders)
	s.Waiting = slices.Clone(s.Waiting)
	return s
}

// Acquire decides the request of w.Job, taken by session, for a slot of s
// under limit. granted says the job holds a slot and may be claimed; if not,
// it waits, in its place. wake are jobs promoted to holders that must be
// published again (the free slots went to jobs ahead of it), and reserved
// holders not taken within a lease.
func Acquire(s Slot, key string, limit int, w SlotWaiter, session string, now time.Time, lease time.Duration) (next Slot, granted bool, wake []string) {
	next = s.clone()
	next.Key, next.Limit = key, limit
	if i := next.holder(w.Job); i >= 0 {
		// It holds one: woken, or taken again after its worker died.
		next.Holders[i].Session = session
		if j := next.waiter(w.Job); j >= 0 {
			next.Waiting = slices.Delete(next.Waiting, j, j+1)
		}
		return next, true, stale(next, now, lease)
	}
	if next.waiter(w.Job) < 0 {
		w.Since = now
		at, _ := slices.BinarySearchFunc(next.Waiting, w, func(a, b SlotWaiter) int {
			if a.Rank != b.Rank {
				return a.Rank - b.Rank
			}
			switch {
			case a.Seq < b.Seq:
				return -1
			case a.Seq > b.Seq:
				return 1
			}
			return 0
		})
		next.Waiting = slices.Insert(next.Waiting, at, w)
	}
	next, woken := promote(next, now)
	if i := next.holder(w.Job); i >= 0 {
		next.Holders[i].Session = session
		granted = true
		woken = slices.DeleteFunc(woken, func(j string) bool { return j == w.Job })
	}
	return next, granted, orNil(append(woken, stale(next, now, lease)...))
}

// FreeSlot decides the end of job (any end: it finished, was cancelled while
// it waited, was lost): it no longer holds or waits for a slot of s. wake
// are the jobs promoted into the slots it frees, and stale reservations.
func FreeSlot(s Slot, job string, now time.Time, lease time.Duration) (next Slot, wake []string) {
	next = s.clone()
	if i := next.holder(job); i >= 0 {
		next.Holders = slices.Delete(next.Holders, i, i+1)
	}
	if i := next.waiter(job); i >= 0 {
		next.Waiting = slices.Delete(next.Waiting, i, i+1)
	}
	next, woken := promote(next, now)
	return next, orNil(append(woken, stale(next, now, lease)...))
}

// SlotRelease is FreeSlot across the tries of one compare-and-set
// (SlotStore.UpdateSlot). A try that finds nothing to change after an
// earlier try changed the entry keeps the earlier try's Wake: that write was
// stored though its answer was lost (a failover), and the jobs it promoted
// are woken by no one else.
type SlotRelease struct {
	Job   string
	Lease time.Duration
	// Wake are the jobs to wake once the entry is written.
	Wake []string
}

// Decide is the next entry of s with r.Job's slot or place in line freed.
func (r *SlotRelease) Decide(s Slot, now time.Time) Slot {
	next, wake := FreeSlot(s, r.Job, now, r.Lease)
	if SlotChanged(s, next) {
		r.Wake = wake
		return next
	}
	for _, j := range wake {
		if !slices.Contains(r.Wake, j) {
			r.Wake = append(r.Wake, j)
		}
	}
	return next
}

// promote moves waiters into free slots, first in line first.
func promote(s Slot, now time.Time) (Slot, []string) {
	var woken []string
	for len(s.Holders) < s.Limit && len(s.Waiting) > 0 {
		w := s.Waiting[0]
		s.Waiting = s.Waiting[1:]
		s.Holders = append(s.Holders, SlotHolder{Job: w.Job, Since: now})
		woken = append(woken, w.Job)
	}
	if len(s.Waiting) == 0 {
		s.Waiting = nil
	}
	return s, woken
}

// stale are the holders woken more than a lease ago that no worker took:
// their publication may have been lost with the worker that woke them.
func stale(s Slot, now time.Time, lease time.Duration) []string {
	var out []string
	for _, h := range s.Holders {
		if h.Session == "" && now.Sub(h.Since) > lease {
			out = append(out, h.Job)
		}
	}
	return out
}

// SlotChanged reports whether next differs from cur, so that an unchanged
// entry is not written.
func SlotChanged(cur, next Slot) bool {
	return cur.Key != next.Key || cur.Limit != next.Limit || !slices.Equal(cur.Holders, next.Holders) || !slices.Equal(cur.Waiting, next.Waiting)
}

// WaitSeq numbers a job's waiting event, in the attempt before the one it
// will run as: after anything an earlier attempt wrote, before the next
// attempt's first event.
const WaitSeq = ObserverSeq - 2

// Wait records that an admitted job waits for a slot of key, held by
// heldBy. A job that ended (cancelled meanwhile) is Over; one that runs is
// Busy (a redelivery of a request whose job was woken and taken).
func Wait(cur schema.JobState, key string, heldBy []string, now time.Time) Decision {
	switch {
	case cur.State.Terminal():
		return Decision{State: cur, Verdict: Over}
	case cur.State == schema.StateRunning:
		return Decision{State: cur, Verdict: Busy}
	case cur.State == schema.StateWaiting && cur.WaitingFor == key:
		return Decision{State: cur, Verdict: Waits}
	}
	next := cur
	next.State, next.WaitingFor, next.HeldBy = schema.StateWaiting, key, heldBy
	return Decision{State: next, Write: true, Verdict: Waits}
}

// WaitingEvent is the event of a job that began to wait.
func WaitingEvent(st schema.JobState, worker string, now time.Time) schema.Event {
	return schema.Event{JobID: st.JobID, Attempt: st.Attempt, Seq: WaitSeq, Time: now, Kind: schema.KindWaiting, State: schema.StateWaiting,
		Worker: worker, Command: st.Command, Principal: st.Principal, Queue: st.Queue, Priority: st.Priority, Schedule: st.Schedule,
		CreatedAt: st.CreatedAt, ParentID: st.ParentID, WaitingFor: st.WaitingFor, HeldBy: st.HeldBy}
}

// HolderJobsIndex is the index of job among the holders, or -1.
func (s Slot) HolderJobsIndex(job string) int { return s.holder(job) }

func orNil(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	return s
}
