package worker_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/winchhq/winch/broker"
	"github.com/winchhq/winch/schema"
	"github.com/winchhq/winch/worker"
)

// A worker that dies after it took a request but before it claimed it (it
// never acks): the broker hands the request to another worker.
func TestWorkerDiesBeforeClaimHandsOn(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cons, err := broker.EnsureQueue(t.Context(), e.js, e.queue, topology)
	if err != nil {
		t.Fatal(err)
	}
	id := e.submit("test.once", map[string]any{"seconds": 0.1})
	msg, err := cons.Next()
	if err != nil {
		t.Fatal(err)
	}
	_ = msg // taken and never acknowledged: the crash
	w := e.startWorker(worker.Config{})
	events := e.follow(id)
	end := last(events)
	if end.State != schema.StateSucceeded || end.Worker != w.ID() || end.Attempt != 1 {
		t.Fatalf("ended %s on %s attempt %d: %s", end.State, end.Worker, end.Attempt, kinds(events))
	}
}

// A worker killed after it claimed a job but before the command started:
// the job is handed on, even though its command may not be retried.
func TestWorkerKilledBeforeStartHandsOn(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c := e.startChild("hang-"+e.queue, true)
	id := e.submit("test.once", map[string]any{"seconds": 0.1})
	e.waitFor(id, schema.KindAccepted)
	c.kill()
	w := e.startWorker(worker.Config{})
	events := e.follow(id)
	end := last(events)
	if end.State != schema.StateSucceeded || end.Worker != w.ID() || end.Attempt != 2 {
		t.Fatalf("ended %s on %s attempt %d: %s", end.State, end.Worker, end.Attempt, kinds(events))
	}
}

// A worker killed while a command that may be retried runs: another worker
// runs it again.
func TestWorkerKilledMidRunRetriesRetryableCommand(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c := e.startChild("crash-"+e.queue, false)
	id := e.submit("core.sleep", map[string]any{"seconds": 1})
	e.waitFor(id, schema.KindStarted)
	c.kill()
	w := e.startWorker(worker.Config{})
	events := e.follow(id)
	end := last(events)
	if end.State != schema.StateSucceeded || end.Worker != w.ID() || end.Attempt != 2 {
		t.Fatalf("ended %s on %s attempt %d: %s", end.State, end.Worker, end.Attempt, kinds(events))
	}
}

// A worker killed while a command that may not be retried runs: the job
// fails as "worker lost", and does not run again.
func TestWorkerKilledMidRunLosesNonRetryableCommand(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c := e.startChild("lost-"+e.queue, false)
	id := e.submit("test.once", map[string]any{"seconds": 30})
	e.waitFor(id, schema.KindStarted)
	c.kill()
	e.startWorker(worker.Config{})
	events := e.follow(id)
	end := last(events)
	if end.State != schema.StateFailed || end.Reason != schema.ReasonWorkerLost || !strings.Contains(end.Error, "worker lost") {
		t.Fatalf("ended %s (%s): %q: %s", end.State, end.Reason, end.Error, kinds(events))
	}
	if strings.Count(kinds(events), "started") != 1 {
		t.Fatalf("the command started more than once: %s", kinds(events))
	}
	if st := e.status(id); st.State != schema.StateFailed || st.Reason != schema.ReasonWorkerLost {
		t.Fatalf("state %+v", st)
	}
	deadline := time.Now().Add(5 * time.Second)
	for e.pending() != 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if n := e.pending(); n != 0 {
		t.Fatalf("%d requests left in the stream", n)
	}
}

// A request that is delivered MaxDeliver times without finishing becomes a
// dead job, with an event that says why, and leaves the stream.
func TestRequestOutOfDeliveriesIsDead(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cons, err := broker.EnsureQueue(t.Context(), e.js, e.queue, topology)
	if err != nil {
		t.Fatal(err)
	}
	// A worker of another queue; every worker watches for dead letters.
	e.startWorker(worker.Config{Queues: []string{e.queue + "-other"}})
	id := e.submit("core.echo", map[string]any{"text": "never"})
	for range topology.MaxDeliver {
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
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	st, err := e.client.Wait(ctx, id)
	if err != nil {
		t.Fatalf("job never settled: %v", err)
	}
	if st.State != schema.StateDead || st.Reason != schema.ReasonDead || !strings.Contains(st.Error, "delivered 3 times") {
		t.Fatalf("state %+v", st)
	}
	end := last(e.follow(id))
	if end.State != schema.StateDead {
		t.Fatalf("final event %+v", end)
	}
	if n := e.pending(); n != 0 {
		t.Fatalf("%d requests left in the stream", n)
	}
}
