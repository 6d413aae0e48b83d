package worker_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/winchhq/winch/internal/jobtest"
	"github.com/winchhq/winch/schema"
	"github.com/winchhq/winch/worker"
)

// startOrder is the jobs of a test.record log, in the order they started.
func startOrder(t *testing.T, log string) []string {
	t.Helper()
	var jobs []string
	for i, f := range recordLog(t, log) {
		if i%2 == 0 {
			jobs = append(jobs, f)
		}
	}
	return jobs
}

func priority(p schema.Priority) func(*schema.Request) {
	return func(r *schema.Request) { r.Priority = p }
}

// 200 low-priority requests wait behind one busy worker; a high one that
// comes after them is the next to start.
func TestHighPriorityStartsBeforeWaitingLowPriority(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	log := filepath.Join(t.TempDir(), "starts")
	e.StartWorker(worker.Config{Concurrency: 1})
	// Busy long enough for 201 submissions, even under the race detector.
	busy := e.Submit("test.record", map[string]any{"log": log, "seconds": 5})
	e.WaitFor(busy, schema.KindStarted)
	for range 200 {
		e.Submit("test.record", map[string]any{"log": log, "seconds": 0}, priority(schema.PriorityLow))
	}
	high := e.Submit("test.record", map[string]any{"log": log, "seconds": 0}, priority(schema.PriorityHigh))
	if st := e.Status(high); st.Priority != schema.PriorityHigh || st.State != schema.StateQueued {
		t.Fatalf("the high request, queued: %+v", st)
	}
	if st := e.Status(busy); st.State != schema.StateRunning {
		t.Fatalf("the busy job is %s before the high request was queued; the test needs it running", st.State)
	}
	if !jobtest.Eventually(30*time.Second, func() bool { return len(startOrder(t, log)) >= 3 }) {
		t.Fatalf("starts: %v", startOrder(t, log))
	}
	order := startOrder(t, log)
	if order[0] != busy || order[1] != high {
		t.Fatalf("started %v…; want %s (busy), then %s (high)", order[:3], busy, high)
	}
	accepted := e.WaitFor(high, schema.KindAccepted)
	if accepted.Priority != schema.PriorityHigh {
		t.Fatalf("accepted event %+v", accepted)
	}
}

// Under a stream of normal work that always has more waiting than the
// worker can take, low-priority work still starts, at the rate the README
// promises ("Priorities"): one start in every 10 + N for a worker of
// concurrency N, so the k-th low job is among the first k·(10+N) starts.
// The test counts starts, never time: a loaded machine makes it slower,
// not different.
func TestLowPriorityIsNotStarvedByNormal(t *testing.T) {
	t.Parallel()
	const (
		concurrency = 3
		lowJobs     = 10
		backlog     = 40 // normal requests kept waiting, at least
	)
	e := newEnv(t)
	log := filepath.Join(t.TempDir(), "starts")
	normal := func() {
		if _, err := e.Client.Submit(t.Context(), schema.Request{Command: "test.record", Params: map[string]any{"log": log, "seconds": 0}, Queue: e.Queue, Principal: "tester"}); err != nil && t.Context().Err() == nil {
			t.Errorf("submit: %v", err)
		}
	}
	for range backlog {
		normal()
	}
	lows := map[string]int{}
	for k := range lowJobs {
		lows[e.Submit("test.record", map[string]any{"log": log, "seconds": 0}, priority(schema.PriorityLow))] = k
	}
	// Normal work keeps coming faster than the worker takes it: the
	// submitter tops the waiting normal requests up to the backlog.
	started := func() int {
		data, _ := os.ReadFile(log)
		return len(strings.Fields(string(data))) / 2
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	submitted := backlog + lowJobs
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			for submitted-started() < backlog+lowJobs {
				normal()
				submitted++
			}
		}
	}()
	e.StartWorker(worker.Config{Concurrency: concurrency})
	ok := jobtest.Eventually(120*time.Second, func() bool {
		n := 0
		for _, j := range startOrder(t, log) {
			if _, low := lows[j]; low {
				n++
			}
		}
		return n == lowJobs
	})
	close(stop)
	<-done
	order := startOrder(t, log)
	if !ok {
		t.Fatalf("after %d starts, not every low-priority job started", len(order))
	}
	nth := 0
	for at, j := range order {
		if _, low := lows[j]; !low {
			continue
		}
		nth++
		if bound := nth * (10 + concurrency); at >= bound {
			t.Errorf("low-priority job %d started %d-th; the promise is within the first %d", nth, at+1, bound)
		}
		// Normal work still comes first: low work gets its share, not more.
		if at+1 < nth*(10-1) {
			t.Errorf("low-priority job %d started %d-th, ahead of waiting normal work", nth, at+1)
		}
	}
	t.Logf("%d low-priority jobs in %d starts", lowJobs, len(order))
}
