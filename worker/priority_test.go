package worker_test

import (
	"path/filepath"
	"slices"
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

// Under a steady stream of normal work, low-priority work still starts: at
// least one start in every ten is bottom-up (README, "Priorities").
func TestLowPriorityIsNotStarvedByNormal(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	log := filepath.Join(t.TempDir(), "starts")
	var lows []string
	for i := range 20 {
		e.Submit("test.record", map[string]any{"log": log, "seconds": 0})
		if i%10 == 0 {
			lows = append(lows, e.Submit("test.record", map[string]any{"log": log, "seconds": 0}, priority(schema.PriorityLow)))
		}
	}
	e.StartWorker(worker.Config{Concurrency: 1})
	// Normal work keeps coming while the worker runs.
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
				e.Submit("test.record", map[string]any{"log": log, "seconds": 0})
			}
		}
	}()
	ok := jobtest.Eventually(90*time.Second, func() bool {
		order := startOrder(t, log)
		for _, l := range lows {
			if !slices.Contains(order, l) {
				return false
			}
		}
		return true
	})
	close(stop)
	<-done
	order := startOrder(t, log)
	if !ok {
		t.Fatalf("after %d starts, not every low-priority job started", len(order))
	}
	for k, l := range lows {
		at := slices.Index(order, l)
		if at >= 10*(k+1) {
			t.Errorf("low-priority job %d started %d-th; the promise is within the first %d", k+1, at+1, 10*(k+1))
		}
	}
}
