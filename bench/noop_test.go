package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/winchhq/winch/broker"
	"github.com/winchhq/winch/internal/testenv"
	"github.com/winchhq/winch/modules"
	"github.com/winchhq/winch/producer"
	"github.com/winchhq/winch/schema"
	"github.com/winchhq/winch/worker"
)

// pipelinedConcurrency is the worker's concurrency in the pipelined no-op
// benchmarks: the best of 8, 16, 32 and 64 on the benchmark machine (see
// BENCHMARKS.md); -bench.concurrency changes it.
var pipelinedConcurrency = flag.Int("bench.concurrency", 32, "worker concurrency of the pipelined no-op benchmarks")

// connections is the worker's Connections (0: its default).
var connections = flag.Int("bench.connections", 0, "worker connections (lanes) of the no-op benchmarks; 0 for the worker's default")

// submitters is how many clients submit at once in the pipelined no-op
// benchmarks.
var submitters = flag.Int("bench.submitters", 8, "concurrent submitters of the pipelined no-op benchmarks")

// noopExecutor runs nothing, in process: benchmark-only, so that what is
// measured is winch's own path (broker, claim, events, state, ack) and not
// starting a process. It goes through the same start protocol as a real
// executor: Starting (which may write the state), then Started.
type noopExecutor struct{}

func (noopExecutor) Name() string { return "noop" }

func (noopExecutor) Run(ctx context.Context, job *worker.Job) (worker.Outcome, error) {
	if err := job.Starting(); err != nil {
		return worker.Outcome{}, err
	}
	job.Started(worker.StartInfo{Executor: "noop"})
	return worker.Outcome{}, nil
}

// blockExecutor starts nothing and "runs" until the job is stopped: the
// child worker of the takeover benchmark, which is killed while it runs.
type blockExecutor struct{}

func (blockExecutor) Name() string { return "block" }

func (blockExecutor) Run(ctx context.Context, job *worker.Job) (worker.Outcome, error) {
	if err := job.Starting(); err != nil {
		return worker.Outcome{}, err
	}
	job.Started(worker.StartInfo{Executor: "block"})
	<-ctx.Done()
	return worker.Outcome{ExitCode: 137}, nil
}

// cpuTime is the process's user+system CPU so far. The NATS server is
// embedded, so this is the whole system's: server, worker and client.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// clientInbox prefixes the replies of the benchmark's client connection, so
// that the operation count can tell its publishes from the worker's.
const clientInbox = "_CLIENT"

// jobStack is a server with winch's streams, a worker on a connection of its
// own, and a client (producer) on another, as they would be deployed.
type jobStack struct {
	url      string
	workerNC *nats.Conn
	clientNC *nats.Conn
	client   *producer.Client
	worker   *worker.Worker
	// cpu is the whole system's CPU so far: this process's, and the
	// servers' when they are processes of their own.
	cpu func() time.Duration
}

func startStack(b *testing.B, exec worker.Executor, concurrency int, topo broker.Topology, conf ...string) *jobStack {
	b.Helper()
	return startStackOn(b, server(b, conf...), cpuTime, exec, concurrency, topo)
}

// startClusterStack is startStack on a three-server cluster of its own,
// with every stream and bucket replicated three times.
func startClusterStack(b *testing.B, exec worker.Executor, concurrency int) *jobStack {
	b.Helper()
	nc, c := clusterConn(b)
	return startStackOn(b, nc, func() time.Duration { return cpuTime() + c.CPUTime() }, exec, concurrency, broker.Topology{Replicas: 3})
}

func startStackOn(b *testing.B, nc *nats.Conn, cpu func() time.Duration, exec worker.Executor, concurrency int, topo broker.Topology) *jobStack {
	b.Helper()
	s := &jobStack{url: nc.ConnectedUrl(), workerNC: nc, cpu: cpu}
	ctx := context.Background()
	js, err := jetstream.New(nc)
	if err != nil {
		b.Fatal(err)
	}
	if err := ensure(ctx, js, topo); err != nil {
		b.Fatal(err)
	}
	if s.clientNC, err = nats.Connect(s.url, nats.CustomInboxPrefix(clientInbox)); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(s.clientNC.Close)
	if s.client, err = producer.New(ctx, s.clientNC, nil); err != nil {
		b.Fatal(err)
	}
	s.worker = startWorker(b, nc, "bench", exec, concurrency, topo)
	return s
}

// startWorker starts a worker of the core module on nc; WINCH_BENCH_DEBUG=1
// sends its debug log to stderr.
func startWorker(b *testing.B, nc *nats.Conn, id string, exec worker.Executor, concurrency int, topo broker.Topology) *worker.Worker {
	b.Helper()
	catalog, _ := modules.NewCatalog(modules.Core())
	cfg := worker.Config{ID: id, Concurrency: concurrency, Connections: *connections, Catalog: catalog, Executor: exec, Topology: topo}
	if os.Getenv("WINCH_BENCH_DEBUG") != "" {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	w, err := worker.New(nc, cfg)
	if err != nil {
		b.Fatal(err)
	}
	if err := w.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = w.Stop(context.Background()) })
	return w
}

// BenchmarkNoopPath is winch's own path, with nothing run: submit
// core.true, a worker of the no-op executor claims it, emits accepted and
// started, records the end, emits finished and acks. Sequential waits for
// each job's finished event before submitting the next; pipelined submits
// every job at once to one worker of concurrency -bench.concurrency.
// cpu-ms/job is the process's CPU (server, worker and client together)
// over the jobs.
func BenchmarkNoopPath(b *testing.B) {
	b.Run("sequential", func(b *testing.B) {
		measureJobs(b, startStack(b, noopExecutor{}, 8, broker.Topology{}), "sequential")
	})
	b.Run("pipelined", func(b *testing.B) {
		measureJobs(b, startStack(b, noopExecutor{}, *pipelinedConcurrency, broker.Topology{}), "pipelined")
	})
	// As nats.conf runs the broker in production: every stream write is
	// synced to disk before it is acknowledged.
	b.Run("pipelined-fsync", func(b *testing.B) {
		measureJobs(b, startStack(b, noopExecutor{}, *pipelinedConcurrency, broker.Topology{}, syncAlways), "pipelined")
	})
	// As on a cluster: three servers (processes of their own, whose CPU is
	// counted), every stream and bucket replicated three times, each write
	// acknowledged once two servers have it.
	b.Run("pipelined-R3", func(b *testing.B) {
		measureJobs(b, startClusterStack(b, noopExecutor{}, *pipelinedConcurrency), "pipelined")
	})
}

// syncAlways is nats.conf's JetStream setting: fsync every write.
const syncAlways = "jetstream { sync_interval: always }\n"

// measureJobs submits b.N core.true jobs, one at a time or all at once, and
// waits for each one's finished event.
func measureJobs(b *testing.B, s *jobStack, mode string) {
	ctx := context.Background()
	var mu sync.Mutex
	created := map[string]time.Time{}
	var startLat, endLat []time.Duration
	finished := make(chan struct{}, b.N)
	onEvent := func(m *nats.Msg) {
		var ev schema.Event
		if json.Unmarshal(m.Data, &ev) != nil {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		switch ev.Kind {
		case schema.KindStarted:
			startLat = append(startLat, ev.Time.Sub(created[ev.JobID]))
		case schema.KindFinished:
			endLat = append(endLat, time.Since(created[ev.JobID]))
			if ev.State != schema.StateSucceeded {
				fmt.Fprintln(os.Stderr, "job failed:", ev.Error)
			}
			finished <- struct{}{}
		}
	}
	// The client hears only what it waits for: every job's finished event
	// and, one at a time, its started event, for the latency. (Decoding
	// every event would add the client's JSON to the CPU per job.)
	subjects := []string{"winch.events.*.finished"}
	if mode == "sequential" {
		subjects = append(subjects, "winch.events.*.started")
	}
	for _, subject := range subjects {
		sub, err := s.clientNC.Subscribe(subject, onEvent)
		if err != nil {
			b.Fatal(err)
		}
		defer func() { _ = sub.Unsubscribe() }()
		_ = sub.SetPendingLimits(-1, -1)
	}

	submit := func() error {
		id := schema.NewJobID()
		now := time.Now().UTC()
		mu.Lock()
		created[id] = now
		mu.Unlock()
		_, err := s.client.Submit(ctx, schema.Request{ID: id, Command: "core.true", Principal: "bench", CreatedAt: now})
		return err
	}
	b.ResetTimer()
	cpu := s.cpu()
	if mode == "sequential" {
		for range b.N {
			if err := submit(); err != nil {
				b.Fatal(err)
			}
			<-finished
		}
	} else {
		// Several clients submit at once, as users do: one client's
		// submissions wait each for its acknowledgement, which on a
		// replicated stream is a round trip to a quorum.
		var next atomic.Int64
		var wg sync.WaitGroup
		errs := make(chan error, *submitters)
		for range *submitters {
			wg.Go(func() {
				for next.Add(1) <= int64(b.N) {
					if err := submit(); err != nil {
						errs <- err
						return
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		if err := <-errs; err != nil {
			b.Fatal(err)
		}
		for range b.N {
			<-finished
		}
	}
	b.StopTimer()
	cpu = s.cpu() - cpu
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "jobs/s")
	b.ReportMetric(cpu.Seconds()*1000/float64(b.N), "cpu-ms/job")
	if mode == "sequential" { // pipelined, they are queueing
		reportLatency(b, "enqueue-to-start", startLat)
		reportLatency(b, "enqueue-to-finish", endLat)
	}
}

// BenchmarkBrokerOps counts what every job costs the broker: a plain
// subscription on ">" on the same server sees every message published in
// the account (requests, events, key-value writes, acks, JetStream API
// calls, doorbells, and the server's replies and deliveries). Run it with a
// fixed count and -v (-benchtime 200x -v); the table is logged, each row
// per job.
func BenchmarkBrokerOps(b *testing.B) {
	for _, mode := range []string{"sequential", "pipelined"} {
		b.Run(mode, func(b *testing.B) {
			concurrency := 8
			if mode == "pipelined" {
				concurrency = *pipelinedConcurrency
			}
			s := startStack(b, noopExecutor{}, concurrency, broker.Topology{})
			spy, err := nats.Connect(s.url)
			if err != nil {
				b.Fatal(err)
			}
			defer spy.Close()
			var mu sync.Mutex
			count := map[string]int{}
			size := map[string]int{}
			sub, err := spy.Subscribe(">", func(m *nats.Msg) {
				who, op := classify(m)
				mu.Lock()
				count[who+"\t"+op]++
				size[who+"\t"+op] += len(m.Data) + len(m.Subject) + len(m.Reply)
				for k, v := range m.Header {
					size[who+"\t"+op] += len(k) + len(strings.Join(v, ""))
				}
				mu.Unlock()
			})
			if err != nil {
				b.Fatal(err)
			}
			_ = sub.SetPendingLimits(-1, -1)
			if err := spy.Flush(); err != nil {
				b.Fatal(err)
			}
			measureJobs(b, s, mode)
			// Acks and the like are not awaited: let them arrive.
			time.Sleep(500 * time.Millisecond)
			_ = spy.Flush()
			mu.Lock()
			defer mu.Unlock()
			keys := slices.Collect(func(yield func(string) bool) {
				for k := range count {
					if !yield(k) {
						return
					}
				}
			})
			sort.Strings(keys)
			var lines []string
			totals := map[string]float64{}
			for _, k := range keys {
				who, _, _ := strings.Cut(k, "\t")
				per := float64(count[k]) / float64(b.N)
				totals[who] += per
				lines = append(lines, fmt.Sprintf("%-8s %-52s %8.3f/job %7.0f B/job", who, strings.SplitN(k, "\t", 2)[1], per, float64(size[k])/float64(b.N)))
			}
			if b.N > 1 {
				b.Logf("broker operations over %d jobs (%s):\n%s", b.N, mode, strings.Join(lines, "\n"))
			}
			b.ReportMetric(totals["worker"], "worker-ops/job")
			b.ReportMetric(totals["client"], "client-ops/job")
			b.ReportMetric(totals["server"], "server-msgs/job")
		})
	}
}

// classify names who sent a message and what it is. The client's
// publishes carry replies under clientInbox; messages to an inbox are the
// server's (API replies, deliveries, publish acks); the rest are the
// worker's.
func classify(m *nats.Msg) (who, op string) {
	subj := m.Subject
	who = "worker"
	if strings.HasPrefix(m.Reply, clientInbox+".") {
		who = "client"
	}
	tok := strings.Split(subj, ".")
	switch {
	case strings.HasPrefix(subj, clientInbox+"."):
		return "server", "reply or delivery to the client"
	case strings.HasPrefix(subj, "_INBOX."):
		return "server", "reply or delivery to the worker"
	case strings.HasPrefix(m.Reply, "$JS.ACK."):
		// A consumer's delivery keeps the stored message's subject.
		return "server", "delivery of " + strings.Join(tok[:min(len(tok), 2)], ".") + " to a consumer"
	case strings.HasPrefix(subj, "$JS.EVENT."):
		return "server", "advisory " + strings.Join(tok[2:min(len(tok), 5)], ".")
	case strings.HasPrefix(subj, "winch.jobs."):
		return who, "request publish (winch.jobs)"
	case strings.HasPrefix(subj, "winch.events."):
		return who, "event " + tok[len(tok)-1]
	case strings.HasPrefix(subj, "winch.worker."):
		return who, "doorbell"
	case strings.HasPrefix(subj, "$KV."):
		kind := "put"
		switch {
		case m.Header.Get("KV-Operation") != "":
			kind = strings.ToLower(m.Header.Get("KV-Operation"))
		case m.Header.Get(jetstream.ExpectedLastSubjSeqHeader) == "0":
			kind = "create"
		case m.Header.Get(jetstream.ExpectedLastSubjSeqHeader) != "":
			kind = "update (CAS)"
		}
		return who, "KV " + tok[1] + " " + kind
	case strings.HasPrefix(subj, "$JS.ACK."):
		kind := string(m.Data)
		if kind == "" {
			kind = "+ACK"
		}
		if i := strings.IndexByte(kind, ' '); i > 0 {
			kind = kind[:i]
		}
		if m.Reply != "" {
			kind += " (awaited)"
		}
		return who, "ack " + kind + " " + tok[2]
	case strings.HasPrefix(subj, "$JS.API.CONSUMER.MSG.NEXT."):
		return who, "fetch " + tok[5] + "/" + tok[6]
	case strings.HasPrefix(subj, "$JS.API.DIRECT.GET."):
		return who, "direct get " + tok[4]
	case strings.HasPrefix(subj, "$JS.API."):
		// $JS.API.<KIND...>.<stream>[...]: the kind, then the stream.
		var kind []string
		for _, t := range tok[2:] {
			kind = append(kind, t)
			if strings.HasPrefix(t, "WINCH") || strings.HasPrefix(t, "KV_") || t != strings.ToUpper(t) {
				break
			}
		}
		return who, "API " + strings.Join(kind, ".")
	}
	return who, "other " + strings.Join(tok[:min(len(tok), 2)], ".")
}

// childEnv marks the benchmark binary started as the takeover benchmark's
// victim worker.
const childEnv = "WINCH_BENCH_CHILD_WORKER"

func TestMain(m *testing.M) {
	testenv.ServerChildMain()
	flag.Parse()
	if os.Getenv(childEnv) != "" {
		os.Exit(childWorker())
	}
	if os.Getenv(gatewayChildEnv) != "" {
		os.Exit(childGateway())
	}
	os.Exit(m.Run())
}

// childWorker is a worker of the block executor, on the server at
// WINCH_NATS_URL, until it is killed.
func childWorker() int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	nc, err := nats.Connect(os.Getenv("WINCH_NATS_URL"))
	if err != nil {
		log.Error("connect", "err", err)
		return 1
	}
	defer nc.Close()
	ackWait, _ := time.ParseDuration(os.Getenv("WINCH_BENCH_ACK_WAIT"))
	catalog, _ := modules.NewCatalog(modules.Core())
	w, err := worker.New(nc, worker.Config{ID: "victim", Concurrency: 1, Catalog: catalog,
		Executor: blockExecutor{}, Topology: broker.Topology{AckWait: ackWait}, Logger: log})
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

// BenchmarkTakeover measures how long a job stays with a dead worker: a
// worker in a child process claims a long job (core.sleep, which may run
// again), is SIGKILLed at a random moment of its heartbeat cycle, and a
// second worker, idle on the same queue, takes the job over. The time is
// from the kill to the second worker's accepted event, reported in seconds
// and in leases (the topology's ack wait). Use -benchtime 5x or so: each
// iteration lasts about a lease.
func BenchmarkTakeover(b *testing.B) {
	for _, lease := range []time.Duration{2 * time.Second, 5 * time.Second} {
		b.Run(fmt.Sprintf("lease-%v", lease), func(b *testing.B) {
			topo := broker.Topology{AckWait: lease, MaxDeliver: 1000}
			s := startStack(b, noopExecutor{}, 1, topo)
			// The stack's own worker is not needed: the rescuer starts
			// only once the victim holds the job.
			_ = s.worker.Stop(context.Background())
			accepted := make(chan schema.Event, 16)
			sub, err := s.clientNC.Subscribe("winch.events.*.accepted", func(m *nats.Msg) {
				var ev schema.Event
				if json.Unmarshal(m.Data, &ev) == nil {
					accepted <- ev
				}
			})
			if err != nil {
				b.Fatal(err)
			}
			defer func() { _ = sub.Unsubscribe() }()
			var took []time.Duration
			b.ResetTimer()
			for range b.N {
				b.StopTimer()
				child := startChild(b, s.url, lease)
				id := schema.NewJobID()
				if _, err := s.client.Submit(context.Background(), schema.Request{ID: id, Command: "core.sleep",
					Params: map[string]any{"seconds": 60}, Principal: "bench"}); err != nil {
					b.Fatal(err)
				}
				if ev := nextAccepted(b, accepted, id); ev.Worker != "victim" {
					b.Fatalf("accepted by %s, not the victim", ev.Worker)
				}
				rescuer := startWorker(b, s.workerNC, "rescuer", noopExecutor{}, 1, topo)
				time.Sleep(time.Duration(rand.Int64N(int64(lease / 3))))
				b.StartTimer()
				killed := time.Now()
				child.kill()
				if os.Getenv("WINCH_BENCH_DEBUG") != "" {
					fmt.Fprintln(os.Stderr, "killed victim of", id, "at", killed.UTC().Format(time.RFC3339Nano))
				}
				ev := nextAccepted(b, accepted, id)
				b.StopTimer()
				if ev.Worker != "rescuer" {
					b.Fatalf("accepted by %s, not the rescuer", ev.Worker)
				}
				took = append(took, ev.Time.Sub(killed))
				_ = rescuer.Stop(context.Background())
			}
			slices.Sort(took)
			b.ReportMetric(took[len(took)/2].Seconds(), "takeover-p50-s")
			b.ReportMetric(took[len(took)-1].Seconds(), "takeover-max-s")
			b.ReportMetric(took[0].Seconds()/lease.Seconds(), "min-leases")
			b.ReportMetric(took[len(took)/2].Seconds()/lease.Seconds(), "p50-leases")
			b.ReportMetric(took[len(took)-1].Seconds()/lease.Seconds(), "max-leases")
			b.Logf("lease %v: kill→takeover %v", lease, took)
		})
	}
}

func nextAccepted(b *testing.B, ch chan schema.Event, id string) schema.Event {
	b.Helper()
	timeout := time.After(time.Minute)
	for {
		select {
		case ev := <-ch:
			if ev.JobID == id {
				return ev
			}
		case <-timeout:
			b.Fatalf("job %s: no accepted event in a minute", id)
		}
	}
}

type childProc struct{ cmd *exec.Cmd }

func startChild(b *testing.B, url string, ackWait time.Duration) *childProc {
	b.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$", "-test.bench=^$")
	cmd.Env = append(os.Environ(), childEnv+"=1", "WINCH_NATS_URL="+url, "WINCH_BENCH_ACK_WAIT="+ackWait.String())
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	c := &childProc{cmd: cmd}
	b.Cleanup(c.kill)
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "ready" {
		b.Fatalf("child worker did not start: %q %v", line, err)
	}
	return c
}

// kill ends the child as a crash would: no drain, no session end, no acks.
func (c *childProc) kill() {
	if c.cmd.ProcessState == nil {
		_ = c.cmd.Process.Kill()
		_ = c.cmd.Wait()
	}
}
