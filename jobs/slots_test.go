package jobs_test

import (
	"reflect"
	"testing"
	"time"

	"github.com/winchhq/winch/jobs"
	"github.com/winchhq/winch/schema"
)

const lease = 10 * time.Second

func holders(ids ...string) []jobs.SlotHolder {
	out := make([]jobs.SlotHolder, len(ids))
	for i, j := range ids {
		out[i] = holder(j, "s-"+j, tCreated)
	}
	return out
}

func holder(job, session string, since time.Time) jobs.SlotHolder {
	return jobs.SlotHolder{Job: job, Session: session, Since: since}
}

func waiter(job string, rank int, seq uint64) jobs.SlotWaiter {
	return jobs.SlotWaiter{Job: job, Rank: rank, Seq: seq, Since: tCreated}
}

func waitingJobs(s jobs.Slot) []string {
	var out []string
	for _, w := range s.Waiting {
		out = append(out, w.Job)
	}
	return out
}

func TestAcquire(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name        string
		slot        jobs.Slot
		limit       int
		w           jobs.SlotWaiter
		wantGranted bool
		wantHolders []string
		wantWaiting []string
		wantWake    []string
	}{
		{name: "free slot", slot: jobs.Slot{}, limit: 1, w: waiter("a", 1, 1), wantGranted: true, wantHolders: []string{"a"}},
		{name: "full: waits", slot: jobs.Slot{Limit: 1, Holders: holders("a")}, limit: 1, w: waiter("b", 1, 2),
			wantHolders: []string{"a"}, wantWaiting: []string{"b"}},
		{name: "waits in arrival order", slot: jobs.Slot{Limit: 1, Holders: holders("a"), Waiting: []jobs.SlotWaiter{waiter("b", 1, 2), waiter("d", 1, 9)}},
			limit: 1, w: waiter("c", 1, 5), wantHolders: []string{"a"}, wantWaiting: []string{"b", "c", "d"}},
		{name: "priority before arrival", slot: jobs.Slot{Limit: 1, Holders: holders("a"), Waiting: []jobs.SlotWaiter{waiter("b", 1, 2), waiter("d", 2, 1)}},
			limit: 1, w: waiter("h", 0, 50), wantHolders: []string{"a"}, wantWaiting: []string{"h", "b", "d"}},
		{name: "a redelivery keeps its place", slot: jobs.Slot{Limit: 1, Holders: holders("a"), Waiting: []jobs.SlotWaiter{waiter("b", 1, 2), waiter("c", 1, 3)}},
			limit: 1, w: waiter("b", 1, 2), wantHolders: []string{"a"}, wantWaiting: []string{"b", "c"}},
		{name: "a holder taken again keeps its slot", slot: jobs.Slot{Limit: 1, Holders: holders("a"), Waiting: []jobs.SlotWaiter{waiter("b", 1, 2)}},
			limit: 1, w: waiter("a", 1, 1), wantGranted: true, wantHolders: []string{"a"}, wantWaiting: []string{"b"}},
		{name: "a raised limit wakes those ahead first", slot: jobs.Slot{Limit: 1, Holders: holders("a"), Waiting: []jobs.SlotWaiter{waiter("b", 1, 2)}},
			limit: 3, w: waiter("c", 1, 3), wantGranted: true, wantHolders: []string{"a", "b", "c"}, wantWake: []string{"b"}},
		{name: "a lowered limit keeps holders, new ones wait", slot: jobs.Slot{Limit: 3, Holders: holders("a", "b")},
			limit: 1, w: waiter("c", 1, 3), wantHolders: []string{"a", "b"}, wantWaiting: []string{"c"}},
		{name: "a stale reservation is woken again", slot: jobs.Slot{Limit: 1, Holders: []jobs.SlotHolder{holder("a", "", tNow.Add(-2*lease))}},
			limit: 1, w: waiter("b", 1, 2), wantHolders: []string{"a"}, wantWaiting: []string{"b"}, wantWake: []string{"a"}},
		{name: "a fresh reservation is not", slot: jobs.Slot{Limit: 1, Holders: []jobs.SlotHolder{holder("a", "", tNow.Add(-lease/2))}},
			limit: 1, w: waiter("b", 1, 2), wantHolders: []string{"a"}, wantWaiting: []string{"b"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			before := tt.slot.HolderJobs()
			next, granted, wake := jobs.Acquire(tt.slot, "k", tt.limit, tt.w, "mine", tNow, lease)
			if granted != tt.wantGranted || !reflect.DeepEqual(next.HolderJobs(), tt.wantHolders) ||
				!reflect.DeepEqual(waitingJobs(next), tt.wantWaiting) || !reflect.DeepEqual(wake, tt.wantWake) {
				t.Fatalf("granted %v holders %v waiting %v wake %v; want %v %v %v %v", granted, next.HolderJobs(), waitingJobs(next), wake,
					tt.wantGranted, tt.wantHolders, tt.wantWaiting, tt.wantWake)
			}
			if granted && next.Holders[next.HolderJobsIndex(tt.w.Job)].Session != "mine" {
				t.Fatalf("the granted holder has session %+v", next.Holders)
			}
			if next.Limit != tt.limit {
				t.Fatalf("limit %d, want the latest request's %d", next.Limit, tt.limit)
			}
			if !reflect.DeepEqual(tt.slot.HolderJobs(), before) {
				t.Fatal("Acquire changed the entry it decided from")
			}
		})
	}
}

func TestFreeSlot(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name        string
		slot        jobs.Slot
		job         string
		wantHolders []string
		wantWaiting []string
		wantWake    []string
	}{
		{"holder ends, first waiter woken", jobs.Slot{Limit: 1, Holders: holders("a"), Waiting: []jobs.SlotWaiter{waiter("b", 1, 2), waiter("c", 1, 3)}},
			"a", []string{"b"}, []string{"c"}, []string{"b"}},
		{"waiter cancelled", jobs.Slot{Limit: 1, Holders: holders("a"), Waiting: []jobs.SlotWaiter{waiter("b", 1, 2), waiter("c", 1, 3)}},
			"b", []string{"a"}, []string{"c"}, nil},
		{"unknown job: nothing changes", jobs.Slot{Limit: 1, Holders: holders("a")}, "z", []string{"a"}, nil, nil},
		{"last one out", jobs.Slot{Limit: 2, Holders: holders("a")}, "a", []string{}, nil, nil},
		{"two freed slots wake two", jobs.Slot{Limit: 3, Holders: holders("a"), Waiting: []jobs.SlotWaiter{waiter("b", 1, 2), waiter("c", 1, 3), waiter("d", 1, 4)}},
			"a", []string{"b", "c", "d"}, nil, []string{"b", "c", "d"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			next, wake := jobs.FreeSlot(tt.slot, tt.job, tNow, lease)
			if !reflect.DeepEqual(next.HolderJobs(), tt.wantHolders) || !reflect.DeepEqual(waitingJobs(next), tt.wantWaiting) || !reflect.DeepEqual(wake, tt.wantWake) {
				t.Fatalf("holders %v waiting %v wake %v; want %v %v %v", next.HolderJobs(), waitingJobs(next), wake, tt.wantHolders, tt.wantWaiting, tt.wantWake)
			}
			for _, h := range next.Holders {
				if h.Job != "a" && h.Session != "" {
					t.Fatalf("a woken holder has a session before any worker took it: %+v", h)
				}
			}
		})
	}
}

func TestWait(t *testing.T) {
	t.Parallel()
	queued := jobs.Queued(testRequest())
	running := queued
	running.State, running.Session = schema.StateRunning, holderSession
	waiting := queued
	waiting.State, waiting.WaitingFor, waiting.HeldBy = schema.StateWaiting, "k", []string{"a"}
	cancelled := queued
	cancelled.State = schema.StateCancelled
	for _, tt := range []struct {
		name        string
		cur         schema.JobState
		wantVerdict jobs.Verdict
		wantWrite   bool
	}{
		{"queued waits", queued, jobs.Waits, true},
		{"already waiting: no write", waiting, jobs.Waits, false},
		{"cancelled meanwhile", cancelled, jobs.Over, false},
		{"taken meanwhile", running, jobs.Busy, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d := jobs.Wait(tt.cur, "k", []string{"a"}, tNow)
			if d.Verdict != tt.wantVerdict || d.Write != tt.wantWrite {
				t.Fatalf("verdict %s write %v, want %s %v", d.Verdict, d.Write, tt.wantVerdict, tt.wantWrite)
			}
			if d.Write && (d.State.State != schema.StateWaiting || d.State.WaitingFor != "k" || !reflect.DeepEqual(d.State.HeldBy, []string{"a"})) {
				t.Fatalf("state %+v", d.State)
			}
		})
	}
	// A waiting job is claimed like a queued one, and cancelled like one.
	c := claimant(true)
	c.Slot = "k"
	d := jobs.Claim(waiting, false, c, tNow)
	if d.Verdict != jobs.Run || d.State.State != schema.StateRunning || d.State.Slot != "k" || d.State.WaitingFor != "" || d.State.HeldBy != nil {
		t.Fatalf("claim of a waiting job: %s %+v", d.Verdict, d.State)
	}
	st, outcome, write := jobs.Cancel(waiting, "alice", false, tNow)
	if outcome != schema.OutcomeCancelled || !write || st.State != schema.StateCancelled {
		t.Fatalf("cancel of a waiting job: %s %v %s", outcome, write, st.State)
	}
}

// A release's compare-and-set may be stored without its answer (a
// failover): the next try reads an entry that no longer holds the job, and
// must still wake whom the stored write promoted.
func TestSlotReleaseAcrossTries(t *testing.T) {
	t.Parallel()
	now := tCreated.Add(time.Second)
	full := jobs.Slot{Key: "k", Limit: 1, Holders: holders("a"), Waiting: []jobs.SlotWaiter{waiter("b", 1, 2), waiter("c", 1, 3)}}
	staleHolder := jobs.Slot{Key: "k", Limit: 2, Holders: []jobs.SlotHolder{holder("a", "s-a", tCreated), holder("old", "", tCreated.Add(-time.Hour))}}
	for _, tt := range []struct {
		name     string
		tries    []jobs.Slot // the entry each try reads
		wantWake []string
	}{
		{name: "one try", tries: []jobs.Slot{full}, wantWake: []string{"b"}},
		{name: "stored, answer lost: the next try finds it done", tries: []jobs.Slot{full, afterRelease(full, "a", now)}, wantWake: []string{"b"}},
		{name: "a rival changed it first: decided again", tries: []jobs.Slot{full, {Key: "k", Limit: 1, Holders: holders("a"), Waiting: []jobs.SlotWaiter{waiter("c", 1, 3)}}}, wantWake: []string{"c"}},
		{name: "released already, nothing promoted", tries: []jobs.Slot{{Key: "k", Limit: 1, Holders: holders("x")}}, wantWake: nil},
		{name: "a stale promotion is woken again", tries: []jobs.Slot{staleHolder}, wantWake: []string{"old"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := jobs.SlotRelease{Job: "a", Lease: lease}
			for _, s := range tt.tries {
				r.Decide(s, now)
			}
			if !reflect.DeepEqual(r.Wake, tt.wantWake) {
				t.Errorf("wake %v, want %v", r.Wake, tt.wantWake)
			}
		})
	}
}

func afterRelease(s jobs.Slot, job string, now time.Time) jobs.Slot {
	next, _ := jobs.FreeSlot(s, job, now, lease)
	return next
}
