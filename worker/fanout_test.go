package worker_test

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/winchhq/winch/internal/jobtest"
	"github.com/winchhq/winch/producer"
	"github.com/winchhq/winch/schema"
	"github.com/winchhq/winch/worker"
)

// fanout submits a fan-out of test.fan over values.
func fanout(e *jobtest.Env, log string, seconds float64, values []string, parallel int, failFast bool) string {
	return e.Submit("test.fan", map[string]any{"log": log, "seconds": seconds}, func(r *schema.Request) {
		r.Each = &schema.Each{Param: "name", Values: values}
		r.Parallel, r.FailFast = parallel, failFast
	})
}

func names(n int, format string) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf(format, i)
	}
	return out
}

// childStates reads every child's state.
func childStates(t *testing.T, e *jobtest.Env, parent string, n int) []schema.JobState {
	t.Helper()
	out := make([]schema.JobState, n)
	for i := range n {
		out[i] = e.Status(schema.FanoutChildID(parent, i))
	}
	return out
}

// 100 values with parallel 7 over three workers: never more than 7
// children run at once, each runs once, all succeed, and so does the
// parent, which counts them.
func TestFanoutParallelSeven(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for range 3 {
		e.StartWorker(worker.Config{Concurrency: 4})
	}
	log := filepath.Join(t.TempDir(), "runs")
	parent := fanout(e, log, 0.05, names(100, "db-%d"), 7, false)
	end := jobtest.Last(e.Follow(parent))
	if end.State != schema.StateSucceeded || end.Fanout == nil || end.Fanout.Succeeded != 100 || end.Fanout.Launched != 100 {
		t.Fatalf("parent ended %s (%s): %+v", end.State, end.Error, end.Fanout)
	}
	runs := readRuns(t, log) // fails on a child that started twice
	if len(runs) != 100 {
		t.Fatalf("%d children ran, want 100", len(runs))
	}
	if n := overlap(runs); n > 7 {
		t.Fatalf("%d children ran at once, parallel 7", n)
	}
	for i, st := range childStates(t, e, parent, 100) {
		if st.State != schema.StateSucceeded || st.ParentID != parent || st.Params["name"] != fmt.Sprintf("db-%d", i) {
			t.Fatalf("child %d: %s parent %q params %v", i, st.State, st.ParentID, st.Params)
		}
	}
	ev := e.WaitFor(schema.FanoutChildID(parent, 42), schema.KindAccepted)
	if ev.ParentID != parent {
		t.Fatalf("a child's events do not name its parent: %+v", ev)
	}
}

// --fail-fast: the first failure cancels the running children and
// launches no more; the parent fails with the counts.
func TestFanoutFailFast(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.StartWorker(worker.Config{Concurrency: 3})
	log := filepath.Join(t.TempDir(), "runs")
	values := names(20, "ok-%d")
	values[3] = "fail-3"
	parent := fanout(e, log, 0.3, values, 2, true)
	end := jobtest.Last(e.Follow(parent))
	p := end.Fanout
	if end.State != schema.StateFailed || p == nil || p.Failed != 1 || p.Skipped == 0 || p.Launched >= 20 || p.Done() != p.Launched {
		t.Fatalf("parent ended %s (%s): %+v", end.State, end.Error, p)
	}
	if !strings.Contains(end.Error, "1 of 20 children failed") {
		t.Fatalf("parent's error %q does not count the children", end.Error)
	}
	if n := len(readRuns(t, log)); n != p.Launched {
		t.Fatalf("%d children started, the parent launched %d", n, p.Launched)
	}
	// Not launched: no job at all.
	if _, err := e.Client.Status(t.Context(), schema.FanoutChildID(parent, 19)); err == nil {
		t.Fatal("a child after the failure was launched")
	}
}

// Cancel of the parent cancels the children that have not finished and
// launches no more.
func TestFanoutCancelParent(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.StartWorker(worker.Config{Concurrency: 3})
	log := filepath.Join(t.TempDir(), "runs")
	parent := fanout(e, log, 30, names(10, "t-%d"), 2, false)
	e.WaitFor(schema.FanoutChildID(parent, 0), schema.KindStarted)
	e.WaitFor(schema.FanoutChildID(parent, 1), schema.KindStarted)
	reply, err := e.Client.Cancel(t.Context(), parent, "tester")
	if err != nil || reply.Outcome != schema.OutcomeStopping {
		t.Fatalf("cancel: %+v %v", reply, err)
	}
	end := jobtest.Last(e.Follow(parent))
	if end.State != schema.StateCancelled || end.Fanout == nil || end.Fanout.Cancelled != 2 || end.Fanout.Skipped != 8 {
		t.Fatalf("parent ended %s (%s): %+v", end.State, end.Error, end.Fanout)
	}
	for i, st := range childStates(t, e, parent, 2) {
		if st.State != schema.StateCancelled {
			t.Fatalf("child %d is %s", i, st.State)
		}
	}
}

// The worker driving a fan-out is killed: another worker goes on from
// where it was; every child runs exactly once and the parent succeeds.
func TestFanoutDriverKilled(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	// This worker claims what it is given and never starts it: the parent,
	// and the one child it takes before it is killed.
	c := e.StartChild("doomed-"+e.Queue, "WINCH_TEST_HANG=1")
	log := filepath.Join(t.TempDir(), "runs")
	parent := fanout(e, log, 0.2, names(8, "v-%d"), 3, false)
	if ev := e.WaitFor(parent, schema.KindAccepted); ev.Worker != "doomed-"+e.Queue {
		t.Fatalf("the parent went to %s", ev.Worker)
	}
	e.WaitFor(schema.FanoutChildID(parent, 0), schema.KindAccepted)
	w := e.StartWorker(worker.Config{Concurrency: 2})
	e.WaitFor(schema.FanoutChildID(parent, 3), schema.KindFinished) // launched by the doomed driver
	c.Kill()
	end := jobtest.Last(e.Follow(parent))
	if end.State != schema.StateSucceeded || end.Worker != w.ID() || end.Attempt != 2 || end.Fanout.Succeeded != 8 {
		t.Fatalf("parent ended %s on %s attempt %d (%s): %+v", end.State, end.Worker, end.Attempt, end.Error, end.Fanout)
	}
	if runs := readRuns(t, log); len(runs) != 8 {
		t.Fatalf("%d children ran, want 8 (each once)", len(runs))
	}
}

// A follower of the parent gets every child's output, each with its value,
// and the parent's end after every child's.
func TestFollowFanout(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.StartWorker(worker.Config{Concurrency: 3})
	values := []string{"main", "users", "billing", "audit"}
	parent := e.Submit("core.echo", nil, func(r *schema.Request) {
		r.Each, r.Parallel = &schema.Each{Param: "text", Values: values}, 2
	})
	out := map[string]string{}
	ended := 0
	end, err := e.Client.FollowFanout(t.Context(), parent, func(fe producer.FanoutEvent) error {
		switch {
		case fe.Child >= 0 && fe.Kind == schema.KindLog:
			out[fe.Value] += fe.Data
		case fe.Child >= 0 && fe.Terminal():
			ended++
		case fe.Child < 0 && fe.Terminal() && ended != len(values):
			t.Errorf("the parent's end came after %d of %d children's", ended, len(values))
		}
		return nil
	})
	if err != nil || end.State != schema.StateSucceeded {
		t.Fatalf("follow: %s %v", end.State, err)
	}
	for _, v := range values {
		if out[v] != v+"\n" {
			t.Fatalf("output of child %q: %q (all: %q)", v, out[v], out)
		}
	}
}
