package jobs_test

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/winchhq/winch/broker"
	"github.com/winchhq/winch/jobs"
	"github.com/winchhq/winch/schema"
)

func newStore(t *testing.T) (*jobs.Store, jetstream.KeyValue) {
	t.Helper()
	kv := bucket(t, connect(t, natsURL), broker.StateBucket)
	return jobs.NewStore(kv), kv
}

// queuedJob is a fresh job's queued state.
func queuedJob() schema.JobState {
	req := testRequest()
	req.ID = schema.NewJobID()
	return jobs.Queued(req)
}

// put writes st as the job's entry behind the store's back: another writer.
func put(t *testing.T, kv jetstream.KeyValue, st schema.JobState) uint64 {
	t.Helper()
	rev, err := kv.Put(testContext(t), st.JobID, st.Encode())
	if err != nil {
		t.Fatal(err)
	}
	return rev
}

func mustGet(t *testing.T, s *jobs.Store, id string) jobs.Entry {
	t.Helper()
	e, err := s.Get(testContext(t), id)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestStoreGetMissing(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	id := schema.NewJobID()
	e := mustGet(t, s, id)
	if e.Exists() || e.Rev != 0 || e.State.JobID != id || e.State.State != "" {
		t.Errorf("Get of a job without state = %+v, want Rev 0 and only the JobID", e)
	}
}

func TestStoreGetUndecodable(t *testing.T) {
	t.Parallel()
	s, kv := newStore(t)
	id := schema.NewJobID()
	if _, err := kv.Put(testContext(t), id, []byte("not json")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(testContext(t), id); err == nil {
		t.Fatal("Get of an undecodable entry: no error")
	}
	calls := 0
	_, err := s.Update(testContext(t), id, nil, func(jobs.Entry) (schema.JobState, bool, error) {
		calls++
		return schema.JobState{}, false, nil
	})
	if err == nil || calls != 0 {
		t.Errorf("Update of an undecodable entry: err %v after %d decisions; want an error before deciding", err, calls)
	}
}

func TestStoreUpdateCreates(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	want := queuedJob()
	var seen []jobs.Entry
	e, err := s.Update(testContext(t), want.JobID, nil, func(cur jobs.Entry) (schema.JobState, bool, error) {
		seen = append(seen, cur)
		return want, true, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(seen) != 1 || seen[0].Exists() {
		t.Errorf("decide saw %+v, want one call with no entry", seen)
	}
	if !e.Exists() {
		t.Errorf("Update returned Rev 0")
	}
	checkState(t, "returned", e.State, want)
	got := mustGet(t, s, want.JobID)
	if got.Rev != e.Rev {
		t.Errorf("stored revision %d, Update returned %d", got.Rev, e.Rev)
	}
	checkState(t, "stored", got.State, want)
}

func TestStoreUpdateKnownCreates(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	cur := queuedJob()
	calls := 0
	e, err := s.Update(testContext(t), cur.JobID, &jobs.Entry{State: cur}, func(got jobs.Entry) (schema.JobState, bool, error) {
		calls++
		checkState(t, "known entry", got.State, cur)
		d := jobs.Claim(got.State, false, claimant(false), tNow)
		return d.State, d.Write, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if calls != 1 {
		t.Errorf("decide called %d times, want 1", calls)
	}
	stored := mustGet(t, s, cur.JobID)
	if stored.Rev != e.Rev || stored.State.State != schema.StateRunning || stored.State.Session != otherSession {
		t.Errorf("stored %+v at %d; Update returned %d", stored.State, stored.Rev, e.Rev)
	}
}

// A known Rev 0 entry when another worker created the job first: the
// create fails, Update reads the entry and decides again from it.
func TestStoreUpdateCreateConflict(t *testing.T) {
	t.Parallel()
	s, kv := newStore(t)
	cur := queuedJob()
	theirs := with(cur, func(st *schema.JobState) {
		st.State, st.Attempt, st.Worker, st.Session = schema.StateRunning, 1, "w1", holderSession
	})
	theirRev := put(t, kv, theirs)
	var seen []jobs.Entry
	e, err := s.Update(testContext(t), cur.JobID, &jobs.Entry{State: cur}, func(got jobs.Entry) (schema.JobState, bool, error) {
		seen = append(seen, got)
		d := jobs.Claim(got.State, true, claimant(false), tNow) // its holder is alive
		return d.State, d.Write, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(seen) != 2 || seen[1].Rev != theirRev {
		t.Fatalf("decide saw %+v; want the known entry, then theirs at %d", seen, theirRev)
	}
	checkState(t, "second decision's input", seen[1].State, theirs)
	if e.Rev != theirRev {
		t.Errorf("Update returned rev %d, want the standing %d", e.Rev, theirRev)
	}
	checkState(t, "standing", e.State, theirs)
	checkState(t, "stored", mustGet(t, s, cur.JobID).State, theirs)
}

// A stale known entry: the compare-and-set fails, Update reads the entry
// another writer left and decides again from it.
func TestStoreUpdateRevisionConflict(t *testing.T) {
	t.Parallel()
	s, kv := newStore(t)
	first := queuedJob()
	rev1 := put(t, kv, first)
	// Another worker claims it and dies; we still hold rev1.
	claimed := jobs.Claim(first, false, jobs.Claimant{Worker: "w1", Session: holderSession}, tNow).State
	rev2 := put(t, kv, claimed)
	var seen []jobs.Entry
	e, err := s.Update(testContext(t), first.JobID, &jobs.Entry{State: first, Rev: rev1}, func(cur jobs.Entry) (schema.JobState, bool, error) {
		seen = append(seen, cur)
		d := jobs.Claim(cur.State, false, claimant(false), tNow)
		return d.State, d.Write, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(seen) != 2 || seen[0].Rev != rev1 || seen[1].Rev != rev2 {
		t.Fatalf("decide saw revisions %v; want %d then %d", revs(seen), rev1, rev2)
	}
	if e.Rev <= rev2 || e.State.Attempt != 2 || e.State.Session != otherSession {
		t.Errorf("Update wrote attempt %d for %q at %d; want attempt 2 for %q after %d", e.State.Attempt, e.State.Session, e.Rev, otherSession, rev2)
	}
	stored := mustGet(t, s, first.JobID)
	if stored.Rev != e.Rev {
		t.Errorf("stored rev %d, Update returned %d", stored.Rev, e.Rev)
	}
	checkState(t, "stored", stored.State, e.State)
}

func revs(es []jobs.Entry) []uint64 {
	var out []uint64
	for _, e := range es {
		out = append(out, e.Rev)
	}
	return out
}

func TestStoreUpdateNoWrite(t *testing.T) {
	t.Parallel()
	s, kv := newStore(t)
	t.Run("missing", func(t *testing.T) {
		id := schema.NewJobID()
		e, err := s.Update(testContext(t), id, nil, func(cur jobs.Entry) (schema.JobState, bool, error) {
			return queuedJob(), false, nil
		})
		if err != nil || e.Exists() || e.State.JobID != id {
			t.Errorf("Update = %+v, %v; want the missing entry, no error", e, err)
		}
		if mustGet(t, s, id).Exists() {
			t.Error("a decision not to write created the entry")
		}
	})
	t.Run("existing", func(t *testing.T) {
		st := ended(schema.StateSucceeded)
		st.JobID = schema.NewJobID()
		rev := put(t, kv, st)
		e, err := s.Update(testContext(t), st.JobID, nil, func(cur jobs.Entry) (schema.JobState, bool, error) {
			d := jobs.Claim(cur.State, false, claimant(false), tNow)
			return d.State, d.Write, nil
		})
		if err != nil || e.Rev != rev {
			t.Errorf("Update = rev %d, %v; want %d, no error", e.Rev, err, rev)
		}
		checkState(t, "returned", e.State, st)
		if got := mustGet(t, s, st.JobID); got.Rev != rev {
			t.Errorf("entry now at %d, want untouched at %d", got.Rev, rev)
		}
	})
}

func TestStoreUpdateDecideError(t *testing.T) {
	t.Parallel()
	s, kv := newStore(t)
	st := queuedJob()
	rev := put(t, kv, st)
	errNo := errors.New("decided against it")
	e, err := s.Update(testContext(t), st.JobID, nil, func(cur jobs.Entry) (schema.JobState, bool, error) {
		return cur.State, true, errNo // write is ignored with an error
	})
	if !errors.Is(err, errNo) {
		t.Errorf("err %v, want decide's", err)
	}
	if e.Rev != rev {
		t.Errorf("returned rev %d, want the entry decide saw, %d", e.Rev, rev)
	}
	checkState(t, "returned", e.State, st)
	if got := mustGet(t, s, st.JobID); got.Rev != rev {
		t.Errorf("entry now at %d, want untouched at %d", got.Rev, rev)
	}
}

// Every compare-and-set fails, deterministically: the known entry is stale,
// and each decision changes the entry behind the store's back before the
// store writes. Update gives up with ErrContended after a bounded number of
// decisions (maxTries, 8).
func TestStoreUpdateContended(t *testing.T) {
	t.Parallel()
	s, kv := newStore(t)
	st := queuedJob()
	rev := put(t, kv, st)
	put(t, kv, st) // rev is now stale
	calls := 0
	_, err := s.Update(testContext(t), st.JobID, &jobs.Entry{State: st, Rev: rev}, func(cur jobs.Entry) (schema.JobState, bool, error) {
		calls++
		put(t, kv, cur.State) // the rival writes first, every time
		next := cur.State
		next.Attempt++
		return next, true, nil
	})
	if !errors.Is(err, jobs.ErrContended) {
		t.Fatalf("err %v, want ErrContended", err)
	}
	if calls < 2 || calls > 8 {
		t.Errorf("decide called %d times; want it retried, at most maxTries (8)", calls)
	}
	if got := mustGet(t, s, st.JobID); got.State.Attempt != st.Attempt {
		t.Errorf("a contended Update wrote attempt %d", got.State.Attempt)
	}
}

// A rival that keeps writing the entry while Update runs: Update ends,
// having written or with ErrContended, never looping for ever.
func TestStoreUpdateAgainstARival(t *testing.T) {
	t.Parallel()
	s, kv := newStore(t)
	st := queuedJob()
	put(t, kv, st)
	ctx := testContext(t)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := kv.Put(ctx, st.JobID, st.Encode()); err != nil {
				return
			}
		}
	})
	defer wg.Wait()
	defer close(stop)
	done := make(chan error, 1)
	go func() {
		_, err := s.Update(ctx, st.JobID, nil, func(cur jobs.Entry) (schema.JobState, bool, error) {
			next := cur.State
			next.Attempt = 42
			return next, true, nil
		})
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil && !errors.Is(err, jobs.ErrContended) {
			t.Errorf("err %v, want nil or ErrContended", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Update did not return while a rival kept writing")
	}
}

func TestStoreWatch(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	ctx := testContext(t)
	st := queuedJob()
	if _, err := s.Update(ctx, st.JobID, nil, func(jobs.Entry) (schema.JobState, bool, error) { return st, true, nil }); err != nil {
		t.Fatal(err)
	}
	w, err := s.Watch(ctx, st.JobID)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	next := func() schema.JobState {
		t.Helper()
		for {
			select {
			case e := <-w.Updates():
				if e == nil {
					continue // the end of the current values
				}
				got, err := schema.DecodeJobState(e.Value())
				if err != nil {
					t.Fatal(err)
				}
				return got
			case <-time.After(10 * time.Second):
				t.Fatal("no update")
			}
		}
	}
	checkState(t, "current", next(), st)
	e, err := s.Update(ctx, st.JobID, nil, func(cur jobs.Entry) (schema.JobState, bool, error) {
		d := jobs.Claim(cur.State, false, claimant(false), tNow)
		return d.State, d.Write, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	checkState(t, "change", next(), e.State)
}
