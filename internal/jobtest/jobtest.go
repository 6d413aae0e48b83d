// Package jobtest runs jobs end to end for tests: each test gets its own
// queue on a shared embedded NATS server, a producer client, the workers it
// starts (in the test process, or in a child process that it can kill), and
// helpers to submit, follow and inspect jobs.
package jobtest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/winchhq/winch/broker"
	"github.com/winchhq/winch/modules"
	"github.com/winchhq/winch/producer"
	"github.com/winchhq/winch/schema"
	"github.com/winchhq/winch/worker"
)

// Topology is short-fused so that redeliveries happen within a test.
var Topology = broker.Topology{AckWait: 2 * time.Second, MaxDeliver: 3}

// Defaults fill in what a test's worker config leaves out.
type Defaults func(cfg *worker.Config)

// Env is one test's view of the shared server: its own queue, a client, and
// the workers it starts.
type Env struct {
	T        *testing.T
	URL      string
	NC       *nats.Conn
	JS       jetstream.JetStream
	Client   *producer.Client
	Queue    string
	defaults Defaults
	// fleet: the server's topology is the test's own (NewWithTopology), and
	// the workers it starts take the server's rather than ask for Topology.
	fleet bool
}

var queueSeq atomic.Int64

// New connects to the server at url and names a queue for the test.
func New(t *testing.T, url string, defaults Defaults) *Env {
	t.Helper()
	e := NewWithTopology(t, url, Topology, defaults)
	e.fleet = false
	return e
}

// NewWithTopology is New for a server of the test's own (testenv.StartNATS),
// whose topology it makes topo rather than Topology. Start its workers with
// StartChildTo, which has them take the server's topology; StartWorker and
// StartChild ask for Topology, which the server would refuse.
func NewWithTopology(t *testing.T, url string, topo broker.Topology, defaults Defaults) *Env {
	t.Helper()
	nc, err := broker.Connect(t.Context(), broker.ConnectConfig{URL: url})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := broker.Ensure(t.Context(), js, topo); err != nil {
		t.Fatal(err)
	}
	client, err := producer.New(t.Context(), nc, nil)
	if err != nil {
		t.Fatal(err)
	}
	name := strings.ToLower(regexp.MustCompile(`[^A-Za-z0-9]+`).ReplaceAllString(t.Name(), "-"))
	queue := strings.Trim(name[:min(len(name), 18)], "-") + "-" + strconv.FormatInt(queueSeq.Add(1), 10)
	return &Env{T: t, URL: url, NC: nc, JS: js, Client: client, Queue: queue, defaults: defaults, fleet: true}
}

// Logger writes to the test's output.
func (e *Env) Logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(e.T.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// StartWorker starts a worker on the test's queue (unless cfg names
// queues); it is stopped when the test ends.
func (e *Env) StartWorker(cfg worker.Config) *worker.Worker {
	e.T.Helper()
	if cfg.Queues == nil {
		cfg.Queues = []string{e.Queue}
	}
	if cfg.Concurrency == 0 {
		cfg.Concurrency = 2
	}
	if e.defaults != nil {
		e.defaults(&cfg)
	}
	cfg.Topology = Topology
	cfg.Logger = e.Logger()
	w, err := worker.New(e.NC, cfg)
	if err != nil {
		e.T.Fatal(err)
	}
	if err := w.Start(e.T.Context()); err != nil {
		e.T.Fatal(err)
	}
	e.T.Cleanup(func() { _ = w.Stop(context.Background()) })
	return w
}

// Submit queues a request on the test's queue.
func (e *Env) Submit(command string, params map[string]any, edit ...func(*schema.Request)) string {
	e.T.Helper()
	req := schema.Request{Command: command, Params: params, Queue: e.Queue, Principal: "tester"}
	for _, f := range edit {
		f(&req)
	}
	sub, err := e.Client.Submit(e.T.Context(), req)
	if err != nil {
		e.T.Fatalf("submit %s: %v", command, err)
	}
	return sub.Request.ID
}

// Follow collects the job's events until it ends.
func (e *Env) Follow(id string) []schema.Event {
	e.T.Helper()
	var events []schema.Event
	e.Watch(id, func(ev schema.Event) { events = append(events, ev) })
	return events
}

// Watch passes the job's events to fn until it ends, and returns the last.
func (e *Env) Watch(id string, fn func(schema.Event)) schema.Event {
	e.T.Helper()
	ctx, cancel := context.WithTimeout(e.T.Context(), 90*time.Second)
	defer cancel()
	var seen []schema.Event
	last, err := e.Client.Follow(ctx, id, producer.UntilDone, func(ev schema.Event) error {
		seen = append(seen, schema.Event{Kind: ev.Kind, State: ev.State})
		fn(ev)
		return nil
	})
	if err != nil {
		e.T.Fatalf("follow %s: %v (events so far: %s)", id, err, Kinds(seen))
	}
	return last
}

// WaitFor follows the job until an event of kind arrives.
func (e *Env) WaitFor(id string, kind schema.Kind) schema.Event {
	e.T.Helper()
	ctx, cancel := context.WithTimeout(e.T.Context(), 30*time.Second)
	defer cancel()
	var found schema.Event
	stop := errors.New("found")
	_, err := e.Client.Follow(ctx, id, producer.UntilDone, func(ev schema.Event) error {
		if ev.Kind == kind {
			found = ev
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) {
		e.T.Fatalf("job %s: no %s event: %v", id, kind, err)
	}
	return found
}

// Status is the job's state.
func (e *Env) Status(id string) schema.JobState {
	e.T.Helper()
	st, err := e.Client.Status(e.T.Context(), id)
	if err != nil {
		e.T.Fatal(err)
	}
	return st
}

// Pending is the number of requests of the test's queue still in the stream.
func (e *Env) Pending() uint64 {
	e.T.Helper()
	// On a cluster, the server this test is connected to may have just
	// restarted and not answer yet: the read waits through that as
	// winch's clients do.
	var info *jetstream.StreamInfo
	err := broker.AcrossFailover(e.T.Context(), func(ctx context.Context) error {
		s, err := e.JS.Stream(ctx, broker.JobsStream)
		if err != nil {
			return err
		}
		info, err = s.Info(ctx, jetstream.WithSubjectFilter(broker.QueueFilter(e.Queue)))
		return err
	})
	if err != nil {
		e.T.Fatal(err)
	}
	var n uint64
	for _, c := range info.State.Subjects {
		n += c
	}
	return n
}

// Drained waits until the test's queue holds no request (a worker
// acknowledges a request only after it published the job's end, so a
// follower sees the end first) and returns how many are left.
func (e *Env) Drained() uint64 {
	e.T.Helper()
	var n uint64
	Eventually(10*time.Second, func() bool { n = e.Pending(); return n == 0 })
	return n
}

// Eventually polls cond until it holds or the timeout passes.
func Eventually(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
	return true
}

// Kinds renders events as "accepted(running) started log finished(succeeded)".
func Kinds(events []schema.Event) string {
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

// Last is the last event.
func Last(events []schema.Event) schema.Event { return events[len(events)-1] }

// Output joins the data of the log events of one stream.
func Output(events []schema.Event, stream schema.Stream) string {
	var b strings.Builder
	for _, ev := range events {
		if ev.Kind == schema.KindLog && ev.Stream == stream {
			b.WriteString(ev.Data)
		}
	}
	return b.String()
}

// Child is a worker in a process of its own, so that a test can kill it.
type Child struct {
	cmd *exec.Cmd
}

// childEnv marks a test binary started as a child worker.
const childEnv = "WINCH_TEST_CHILD_WORKER"

// StartChild runs this test binary as a worker on the test's queue, named
// id; the package's TestMain must call ChildMain. extraEnv reaches it.
func (e *Env) StartChild(id string, extraEnv ...string) *Child {
	e.T.Helper()
	return e.StartChildTo(id, e.T.Output(), extraEnv...)
}

// Environment variables that StartChildTo's extraEnv may set.
const (
	// ChildConcurrencyEnv sets the child worker's Concurrency (default 1).
	ChildConcurrencyEnv = "WINCH_CONCURRENCY"
	// ChildConnectionsEnv sets the child worker's Connections (its lanes).
	ChildConnectionsEnv = "WINCH_WORKER_CONNECTIONS"
	// childFleetEnv has the child take the server's topology instead of
	// asking for Topology.
	childFleetEnv = "WINCH_TEST_FLEET_TOPOLOGY"
)

// StartChildTo is StartChild with the child's log going to stderr rather
// than the test's output (a test that starts many children keeps it, and
// shows what matters); on an Env of NewWithTopology the child takes the
// server's topology.
func (e *Env) StartChildTo(id string, stderr io.Writer, extraEnv ...string) *Child {
	e.T.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"=1", "WINCH_NATS_URL="+e.URL, "WINCH_WORKER_ID="+id, "WINCH_QUEUES="+e.Queue)
	if e.fleet {
		cmd.Env = append(cmd.Env, childFleetEnv+"=1")
	}
	cmd.Env = append(cmd.Env, extraEnv...)
	cmd.Stderr = stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		e.T.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		e.T.Fatal(err)
	}
	c := &Child{cmd: cmd}
	e.T.Cleanup(c.Kill)
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "ready" {
		e.T.Fatalf("child worker %s did not start: %q %v", id, line, err)
	}
	return c
}

// PID is the child's process id.
func (c *Child) PID() int { return c.cmd.Process.Pid }

// Kill ends the child as a crash would: no drain, no acks.
func (c *Child) Kill() {
	if c.cmd.ProcessState == nil {
		_ = c.cmd.Process.Kill()
		_ = c.cmd.Wait()
	}
}

// ChildMain runs a worker if this process was started by StartChild, and
// then exits; otherwise it returns. config completes the worker's
// configuration (catalog, executor) from the environment.
func ChildMain(config func(cfg *worker.Config)) {
	if os.Getenv(childEnv) == "" {
		return
	}
	os.Exit(childWorker(config))
}

func childWorker(config func(cfg *worker.Config)) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	nc, err := broker.Connect(ctx, broker.ConnectConfig{URL: os.Getenv("WINCH_NATS_URL"), Logger: log})
	if err != nil {
		log.Error("connect", "err", err)
		return 1
	}
	defer nc.Close()
	cfg := worker.Config{
		ID: os.Getenv("WINCH_WORKER_ID"), Queues: []string{os.Getenv("WINCH_QUEUES")},
		Concurrency: 1, Topology: Topology, Logger: log,
	}
	if n, err := strconv.Atoi(os.Getenv(ChildConcurrencyEnv)); err == nil && n > 0 {
		cfg.Concurrency = n
	}
	if n, err := strconv.Atoi(os.Getenv(ChildConnectionsEnv)); err == nil && n > 0 {
		cfg.Connections = n
	}
	if os.Getenv(childFleetEnv) != "" {
		cfg.Topology = broker.Topology{} // the server's, whatever it is
	}
	config(&cfg)
	w, err := worker.New(nc, cfg)
	if err == nil {
		err = w.Start(ctx)
	}
	if err != nil {
		log.Error("start", "err", err)
		return 1
	}
	fmt.Println("ready")
	<-ctx.Done()
	_ = w.Stop(context.Background())
	return 0
}

// Catalog is the core module plus the test module in the manifest at path;
// it panics on a bad manifest, which is a bug in the test.
func Catalog(path string) *modules.Catalog {
	data, err := os.ReadFile(path)
	if err != nil {
		panic(err)
	}
	m, err := modules.ParseManifest(path, data)
	if err != nil {
		panic(err)
	}
	c, err := modules.NewCatalog(modules.Core(), m)
	if err != nil {
		panic(err)
	}
	return c
}
