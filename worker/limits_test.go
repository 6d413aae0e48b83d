package worker_test

import (
	"bufio"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/winchhq/winch/internal/jobtest"
	"github.com/winchhq/winch/schema"
	"github.com/winchhq/winch/worker"
)

// run is one run of a command that logs "start|end <job> <ns>" lines.
type run struct {
	job        string
	start, end int64
}

// readRuns reads such a log: each job's start and end, in the order they
// started.
func readRuns(t *testing.T, path string) []run {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	byJob := map[string]*run{}
	var order []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) != 3 {
			t.Fatalf("log line %q", sc.Text())
		}
		ns, _ := strconv.ParseInt(fields[2], 10, 64)
		r := byJob[fields[1]]
		if r == nil {
			r = &run{job: fields[1]}
			byJob[fields[1]] = r
		}
		switch fields[0] {
		case "start":
			if r.start != 0 {
				t.Fatalf("job %s started twice", r.job)
			}
			r.start = ns
			order = append(order, r.job)
		case "end":
			r.end = ns
		}
	}
	out := make([]run, len(order))
	for i, j := range order {
		out[i] = *byJob[j]
	}
	return out
}

// overlap is the most runs that were running at one time.
func overlap(runs []run) int {
	ws := make([]window, len(runs))
	for i, r := range runs {
		ws[i] = window{start: time.Unix(0, r.start), end: time.Unix(0, r.end)}
	}
	return maxOverlap(ws)
}

// Two requests with the same key and limit 1 never run at once, over 50
// pairs spread across three workers, and both of each pair succeed.
func TestConcurrencyLimitOneNeverOverlaps(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for range 3 {
		e.StartWorker(worker.Config{Concurrency: 4})
	}
	dir := t.TempDir()
	var ids []string
	for pair := range 50 {
		log := filepath.Join(dir, strconv.Itoa(pair))
		for range 2 {
			ids = append(ids, e.Submit("test.locked", map[string]any{"key": e.Queue + "-" + strconv.Itoa(pair), "log": log, "seconds": 0.05}))
		}
	}
	followAll(t, e, ids, schema.StateSucceeded)
	for pair := range 50 {
		runs := readRuns(t, filepath.Join(dir, strconv.Itoa(pair)))
		if len(runs) != 2 {
			t.Fatalf("pair %d: %d runs: %+v", pair, len(runs), runs)
		}
		if n := overlap(runs); n > 1 {
			t.Fatalf("pair %d ran at once: %+v", pair, runs)
		}
	}
}

// followAll follows every job to its end, several at a time, and fails
// unless each ends in want.
func followAll(t *testing.T, e *jobtest.Env, ids []string, want schema.State) {
	t.Helper()
	var mu sync.Mutex
	var bad []string
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for _, id := range ids {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			if end := jobtest.Last(e.Follow(id)); end.State != want {
				mu.Lock()
				bad = append(bad, id+": "+string(end.State)+" "+end.Error)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(bad) > 0 {
		t.Fatalf("%d of %d jobs did not end %s: %v", len(bad), len(ids), want, bad)
	}
}

// Limit 3 across 3 workers and 20 jobs: never more than 3 run at once.
func TestConcurrencyLimitThreeAcrossWorkers(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for range 3 {
		e.StartWorker(worker.Config{Concurrency: 3})
	}
	log := filepath.Join(t.TempDir(), "runs")
	var ids []string
	for range 20 {
		ids = append(ids, e.Submit("test.limited3", map[string]any{"key": e.Queue, "log": log, "seconds": 0.2}))
	}
	followAll(t, e, ids, schema.StateSucceeded)
	runs := readRuns(t, log)
	if len(runs) != 20 {
		t.Fatalf("%d runs, want 20", len(runs))
	}
	if n := overlap(runs); n > 3 {
		t.Fatalf("%d ran at once, limit 3", n)
	}
}

// Waiting jobs start in arrival order, a high priority one first; each
// says what it waits for and who holds it; a cancelled one never starts
// and gives up its place.
func TestConcurrencyWaitersStartInOrder(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.StartWorker(worker.Config{Concurrency: 2})
	e.StartWorker(worker.Config{Concurrency: 2})
	log := filepath.Join(t.TempDir(), "runs")
	params := func(seconds float64) map[string]any {
		return map[string]any{"key": e.Queue, "log": log, "seconds": seconds}
	}
	first := e.Submit("test.locked", params(60)) // until it is cancelled, below
	e.WaitFor(first, schema.KindStarted)
	var waiting []string
	for range 4 {
		id := e.Submit("test.locked", params(0))
		ev := e.WaitFor(id, schema.KindWaiting)
		if ev.WaitingFor != "lock-"+e.Queue || !slices.Equal(ev.HeldBy, []string{first}) {
			t.Fatalf("waiting event of %s: for %q held by %v; want lock-%s held by %s", id, ev.WaitingFor, ev.HeldBy, e.Queue, first)
		}
		waiting = append(waiting, id)
	}
	st := e.Status(waiting[0])
	if st.State != schema.StateWaiting || st.WaitingFor != "lock-"+e.Queue || !slices.Equal(st.HeldBy, []string{first}) {
		t.Fatalf("status of a waiting job: %s for %q held by %v", st.State, st.WaitingFor, st.HeldBy)
	}
	// winch ps lists the holder running and every waiter waiting, though
	// their requests have left the queue.
	active, err := e.Client.List(t.Context(), schema.StateQueued, schema.StateWaiting, schema.StateRunning)
	if err != nil {
		t.Fatal(err)
	}
	listed := map[string]schema.State{}
	for _, st := range active {
		listed[st.JobID] = st.State
	}
	if listed[first] != schema.StateRunning {
		t.Errorf("ps lists the holder %s as %q", first, listed[first])
	}
	for _, id := range waiting {
		if listed[id] != schema.StateWaiting {
			t.Errorf("ps lists the waiter %s as %q", id, listed[id])
		}
	}
	high := e.Submit("test.locked", params(0), func(r *schema.Request) { r.Priority = schema.PriorityHigh })
	e.WaitFor(high, schema.KindWaiting)
	// Cancel the second waiter: it never starts.
	reply, err := e.Client.Cancel(t.Context(), waiting[1], "tester")
	if err != nil || reply.Outcome != schema.OutcomeCancelled {
		t.Fatalf("cancel of a waiting job: %+v %v", reply, err)
	}
	// The holder's end, of any kind, hands its slot on.
	if reply, err := e.Client.Cancel(t.Context(), first, "tester"); err != nil || reply.Outcome != schema.OutcomeStopping {
		t.Fatalf("cancel of the holder: %+v %v", reply, err)
	}
	followAll(t, e, []string{high, waiting[0], waiting[2], waiting[3]}, schema.StateSucceeded)
	if end := jobtest.Last(e.Follow(waiting[1])); end.State != schema.StateCancelled {
		t.Fatalf("cancelled waiter ended %s", end.State)
	}
	if end := jobtest.Last(e.Follow(first)); end.State != schema.StateCancelled {
		t.Fatalf("the holder ended %s", end.State)
	}
	var order []string
	for _, r := range readRuns(t, log) {
		order = append(order, r.job)
	}
	want := []string{first, high, waiting[0], waiting[2], waiting[3]}
	if !slices.Equal(order, want) {
		t.Fatalf("started in order %v, want %v", order, want)
	}
}

// A slot held by a worker that is killed comes back after the lease: the
// job it ran is lost (it may not run twice), and the waiting one runs.
func TestConcurrencySlotOfKilledWorkerComesBack(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c := e.StartChild("doomed-" + e.Queue)
	log := filepath.Join(t.TempDir(), "runs")
	held := e.Submit("test.locked-once", map[string]any{"key": e.Queue, "log": log, "seconds": 60})
	e.WaitFor(held, schema.KindStarted)
	e.StartWorker(worker.Config{})
	next := e.Submit("test.locked-once", map[string]any{"key": e.Queue, "log": log, "seconds": 0})
	e.WaitFor(next, schema.KindWaiting)
	c.Kill()
	killed := time.Now()
	if end := jobtest.Last(e.Follow(held)); end.State != schema.StateFailed || end.Reason != schema.ReasonWorkerLost {
		t.Fatalf("the killed worker's job ended %s (%s)", end.State, end.Reason)
	}
	if end := jobtest.Last(e.Follow(next)); end.State != schema.StateSucceeded {
		t.Fatalf("the waiting job ended %s: %s", end.State, end.Error)
	}
	t.Logf("the slot came back %v after the kill (lease %v)", time.Since(killed).Round(time.Millisecond), jobtest.Topology.AckWait)
}
