package worker_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/winchhq/winch/broker"
	"github.com/winchhq/winch/internal/jobtest"
	"github.com/winchhq/winch/schema"
	"github.com/winchhq/winch/worker"
)

// A worker that dies after it took a request but before it claimed it (it
// never acks): the broker hands the request to another worker.
func TestWorkerDiesBeforeClaimHandsOn(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cons, err := broker.EnsureQueue(t.Context(), e.JS, e.Queue, jobtest.Topology)
	if err != nil {
		t.Fatal(err)
	}
	id := e.Submit("test.once", map[string]any{"seconds": 0.1})
	msg, err := cons.Next()
	if err != nil {
		t.Fatal(err)
	}
	_ = msg // taken and never acknowledged: the crash
	w := e.StartWorker(worker.Config{})
	events := e.Follow(id)
	end := jobtest.Last(events)
	if end.State != schema.StateSucceeded || end.Worker != w.ID() || end.Attempt != 1 {
		t.Fatalf("ended %s on %s attempt %d: %s", end.State, end.Worker, end.Attempt, jobtest.Kinds(events))
	}
}

// A worker killed after it claimed a job but before the command started
// hands the job on, even though its command may not be retried; one killed
// while a command that may be retried runs, too. Either way another worker
// runs it, as the second attempt.
func TestKilledWorkerHandsTheJobOn(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name    string
		env     []string
		command string
		params  map[string]any
		after   schema.Kind
	}{
		{"before the start", []string{"WINCH_TEST_HANG=1"}, "test.once", map[string]any{"seconds": 0.1}, schema.KindAccepted},
		{"mid-run, retryable", nil, "core.sleep", map[string]any{"seconds": 1}, schema.KindStarted},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			c := e.StartChild("doomed-"+e.Queue, tt.env...)
			id := e.Submit(tt.command, tt.params)
			e.WaitFor(id, tt.after)
			c.Kill()
			w := e.StartWorker(worker.Config{})
			events := e.Follow(id)
			end := jobtest.Last(events)
			if end.State != schema.StateSucceeded || end.Worker != w.ID() || end.Attempt != 2 {
				t.Fatalf("ended %s on %s attempt %d: %s", end.State, end.Worker, end.Attempt, jobtest.Kinds(events))
			}
		})
	}
}

// A worker killed while a command that may not be retried runs: the job
// fails as "worker lost", and does not run again.
func TestWorkerKilledMidRunLosesNonRetryableCommand(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c := e.StartChild("lost-" + e.Queue)
	id := e.Submit("test.once", map[string]any{"seconds": 30})
	e.WaitFor(id, schema.KindStarted)
	c.Kill()
	e.StartWorker(worker.Config{})
	events := e.Follow(id)
	end := jobtest.Last(events)
	if end.State != schema.StateFailed || end.Reason != schema.ReasonWorkerLost || !strings.Contains(end.Error, "worker lost") {
		t.Fatalf("ended %s (%s): %q: %s", end.State, end.Reason, end.Error, jobtest.Kinds(events))
	}
	if strings.Count(jobtest.Kinds(events), "started") != 1 {
		t.Fatalf("the command started more than once: %s", jobtest.Kinds(events))
	}
	if st := e.Status(id); st.State != schema.StateFailed || st.Reason != schema.ReasonWorkerLost {
		t.Fatalf("state %+v", st)
	}
	if n := e.Drained(); n != 0 {
		t.Fatalf("%d requests left in the stream", n)
	}
}

// A request that is delivered MaxDeliver times without finishing becomes a
// dead job, with an event that says why, and leaves the stream.
func TestRequestOutOfDeliveriesIsDead(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cons, err := broker.EnsureQueue(t.Context(), e.JS, e.Queue, jobtest.Topology)
	if err != nil {
		t.Fatal(err)
	}
	id := e.Submit("core.echo", map[string]any{"text": "never"})
	for range jobtest.Topology.MaxDeliver {
		msg, err := cons.Next()
		if err != nil {
			t.Fatal(err)
		}
		_ = msg.Nak() // a worker that keeps failing to take it
	}
	// The server gives up on the next pull that would have delivered it
	// again (there is always one while workers serve the queue).
	if _, err := cons.Next(jetstream.FetchMaxWait(time.Second)); err == nil {
		t.Fatal("the request was delivered more than MaxDeliver times")
	}
	// A worker that starts only now (of another queue: every worker takes
	// dead letters) still finds the advisory: the stream kept it.
	e.StartWorker(worker.Config{Queues: []string{e.Queue + "-other"}})
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	st, err := e.Client.Wait(ctx, id)
	if err != nil {
		t.Fatalf("job never settled: %v", err)
	}
	if st.State != schema.StateDead || st.Reason != schema.ReasonDead || !strings.Contains(st.Error, "delivered 3 times") {
		t.Fatalf("state %+v", st)
	}
	end := jobtest.Last(e.Follow(id))
	if end.State != schema.StateDead {
		t.Fatalf("final event %+v", end)
	}
	if n := e.Drained(); n != 0 {
		t.Fatalf("%d requests left in the stream", n)
	}
}
