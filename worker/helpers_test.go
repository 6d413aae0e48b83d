package worker_test

import (
	"bufio"
	"context"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/winchhq/winch/broker"
	"github.com/winchhq/winch/producer"
	"github.com/winchhq/winch/schema"
	"github.com/winchhq/winch/worker"
	"github.com/winchhq/winch/worker/process"
)

// env is one test's view of the shared server: its own queue, a client, and
// the workers it starts.
type env struct {
	t      *testing.T
	nc     *nats.Conn
	js     jetstream.JetStream
	client *producer.Client
	queue  string
}

var queueSeq atomic.Int64

func newEnv(t *testing.T) *env {
	t.Helper()
	nc, err := broker.Connect(t.Context(), broker.ConnectConfig{URL: natsURL})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if err := broker.Ensure(t.Context(), js, topology); err != nil {
		t.Fatal(err)
	}
	client, err := producer.New(t.Context(), nc, nil)
	if err != nil {
		t.Fatal(err)
	}
	name := strings.ToLower(regexp.MustCompile(`[^A-Za-z0-9]+`).ReplaceAllString(t.Name(), "-"))
	queue := strings.Trim(name[:min(len(name), 18)], "-") + "-" + strconv.FormatInt(queueSeq.Add(1), 10)
	return &env{t: t, nc: nc, js: js, client: client, queue: queue}
}

func (e *env) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(e.t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// startWorker starts a worker on the test's queue; it is stopped when the
// test ends.
func (e *env) startWorker(cfg worker.Config) *worker.Worker {
	e.t.Helper()
	if cfg.Queues == nil {
		cfg.Queues = []string{e.queue}
	}
	if cfg.Catalog == nil {
		cfg.Catalog = testCatalog()
	}
	if cfg.Executor == nil {
		cfg.Executor = &process.Executor{KillGrace: 500 * time.Millisecond}
	}
	if cfg.Concurrency == 0 {
		cfg.Concurrency = 2
	}
	cfg.Topology = topology
	cfg.Logger = e.logger()
	w, err := worker.New(e.nc, cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := w.Start(e.t.Context()); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { _ = w.Stop(context.Background()) })
	return w
}

// submit queues a request on the test's queue.
func (e *env) submit(command string, params map[string]any, edit ...func(*schema.Request)) string {
	e.t.Helper()
	req := schema.Request{Command: command, Params: params, Queue: e.queue, Principal: "tester"}
	for _, f := range edit {
		f(&req)
	}
	sub, err := e.client.Submit(e.t.Context(), req)
	if err != nil {
		e.t.Fatalf("submit %s: %v", command, err)
	}
	return sub.Request.ID
}

// follow collects the job's events until it ends.
func (e *env) follow(id string) []schema.Event {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(e.t.Context(), 60*time.Second)
	defer cancel()
	var events []schema.Event
	_, err := e.client.Follow(ctx, id, producer.UntilDone, func(ev schema.Event) error {
		events = append(events, ev)
		return nil
	})
	if err != nil {
		e.t.Fatalf("follow %s: %v (events so far: %s)", id, err, kinds(events))
	}
	return events
}

// waitFor follows the job until an event of kind arrives.
func (e *env) waitFor(id string, kind schema.Kind) schema.Event {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(e.t.Context(), 30*time.Second)
	defer cancel()
	var found schema.Event
	stop := errors.New("found")
	_, err := e.client.Follow(ctx, id, producer.UntilDone, func(ev schema.Event) error {
		if ev.Kind == kind {
			found = ev
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) {
		e.t.Fatalf("job %s: no %s event: %v", id, kind, err)
	}
	return found
}

func (e *env) status(id string) schema.JobState {
	e.t.Helper()
	st, err := e.client.Status(e.t.Context(), id)
	if err != nil {
		e.t.Fatal(err)
	}
	return st
}

// pending is the number of requests of the test's queue still in the stream.
func (e *env) pending() uint64 {
	e.t.Helper()
	s, err := e.js.Stream(e.t.Context(), broker.JobsStream)
	if err != nil {
		e.t.Fatal(err)
	}
	info, err := s.Info(e.t.Context(), jetstream.WithSubjectFilter(broker.QueueFilter(e.queue)))
	if err != nil {
		e.t.Fatal(err)
	}
	var n uint64
	for _, c := range info.State.Subjects {
		n += c
	}
	return n
}

func kinds(events []schema.Event) string {
	var out []string
	for _, ev := range events {
		s := string(ev.Kind)
		if ev.State != "" {
			s += "(" + string(ev.State) + ")"
		}
		out = append(out, s)
	}
	return strings.Join(out, " ")
}

func last(events []schema.Event) schema.Event { return events[len(events)-1] }

func output(events []schema.Event, stream schema.Stream) string {
	var b strings.Builder
	for _, ev := range events {
		if ev.Kind == schema.KindLog && ev.Stream == stream {
			b.WriteString(ev.Data)
		}
	}
	return b.String()
}

// child is a worker in its own process, so that a test can kill it.
type child struct {
	cmd *exec.Cmd
}

func (e *env) startChild(id string, hang bool) *child {
	e.t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "WINCH_TEST_CHILD=worker", "WINCH_NATS_URL="+natsURL,
		"WINCH_WORKER_ID="+id, "WINCH_QUEUES="+e.queue)
	if hang {
		cmd.Env = append(cmd.Env, "WINCH_TEST_HANG=1")
	}
	cmd.Stderr = e.t.Output()
	out, err := cmd.StdoutPipe()
	if err != nil {
		e.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	c := &child{cmd: cmd}
	e.t.Cleanup(func() { c.kill() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "ready" {
		e.t.Fatalf("child worker did not start: %q %v", line, err)
	}
	return c
}

// kill ends the child as a crash would: no drain, no acks.
func (c *child) kill() {
	if c.cmd.ProcessState == nil {
		_ = c.cmd.Process.Kill()
		_ = c.cmd.Wait()
	}
}
