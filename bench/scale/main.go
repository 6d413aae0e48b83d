// Command scale measures what a large number of finished jobs does to the
// broker (BENCHMARKS.md, "A million jobs"): it starts `winch broker` on a
// data directory of its own, writes the states and events of -jobs
// finished jobs as workers write them (through jobs.Store, its index of
// active jobs, and jobs.Publisher), submits -queued requests that no worker
// takes, then measures the broker's memory and disk, `winch ps`,
// `winch ps -a`, `winch status` and `winch logs` of the oldest job, and the
// broker's start-up after a clean stop and after a kill.
//
//	go build -o /tmp/winch ./cmd/winch
//	go run ./bench/scale -winch /tmp/winch -dir /tmp/scale -jobs 1000000 -queued 10000
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/winchhq/winch/broker"
	"github.com/winchhq/winch/jobs"
	"github.com/winchhq/winch/producer"
	"github.com/winchhq/winch/schema"
)

func main() {
	var (
		winch   = flag.String("winch", "winch", "the winch binary to measure")
		clients = flag.String("client", "", "the winch binary for ps, status and logs, to compare two versions on the same data (default: -winch)")
		dir     = flag.String("dir", "", "the broker's data directory (made empty first)")
		url     = flag.String("url", "nats://127.0.0.1:14333", "where the broker listens")
		n       = flag.Int("jobs", 100000, "finished jobs to write")
		queued  = flag.Int("queued", 10000, "requests to leave queued")
		writers = flag.Int("writers", 32, "jobs written at once")
		logs    = flag.Int("log-lines", 1, "log events per job")
		keep    = flag.Bool("keep", false, "load nothing: measure the data already in -dir")
		all     = flag.Bool("all", true, "measure winch ps -a too (it reads every state)")
	)
	flag.Parse()
	if *dir == "" {
		fmt.Fprintln(os.Stderr, "scale: -dir is required")
		os.Exit(2)
	}
	m := &measure{winch: *winch, client: *clients, dir: *dir, url: *url, all: *all}
	if m.client == "" {
		m.client = m.winch
	}
	if err := m.run(*n, *queued, *writers, *logs, *keep); err != nil {
		fmt.Fprintln(os.Stderr, "scale:", err)
		m.stop(syscall.SIGKILL)
		os.Exit(1)
	}
}

type measure struct {
	winch, client, dir, url string
	all                     bool
	broker                  *exec.Cmd
	exited                  chan struct{}
}

func (m *measure) run(n, queued, writers, logLines int, keep bool) error {
	if !keep {
		if err := os.RemoveAll(m.dir); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(m.dir, 0o755); err != nil {
		return err
	}
	took, err := m.start()
	if err != nil {
		return err
	}
	fmt.Printf("broker started in %v (%s)\n", took.Round(time.Millisecond), m.rss())
	ctx := context.Background()
	nc, err := nats.Connect(m.url)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	var oldest string
	if !keep {
		began := time.Now()
		if oldest, err = load(ctx, js, n, writers, logLines); err != nil {
			return err
		}
		el := time.Since(began)
		fmt.Printf("wrote %d finished jobs in %v (%.0f jobs/s)\n", n, el.Round(time.Second), float64(n)/el.Seconds())
		began = time.Now()
		if err := submit(ctx, nc, queued); err != nil {
			return err
		}
		fmt.Printf("submitted %d queued requests in %v\n", queued, time.Since(began).Round(time.Millisecond))
		if err := os.WriteFile(filepath.Join(m.dir, "oldest-job"), []byte(oldest), 0o644); err != nil {
			return err
		}
	} else {
		b, err := os.ReadFile(filepath.Join(m.dir, "oldest-job"))
		if err != nil {
			return err
		}
		oldest = string(b)
	}
	nc.Close()
	if err := m.report(ctx, oldest, "loaded"); err != nil {
		return err
	}
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL} {
		m.stop(sig)
		took, err := m.start()
		if err != nil {
			return err
		}
		fmt.Printf("\nafter %v: broker ready in %v\n", sig, took.Round(time.Millisecond))
		if err := m.report(ctx, oldest, "restarted"); err != nil {
			return err
		}
	}
	m.stop(syscall.SIGTERM)
	return nil
}

// start runs the broker and waits until a client can read the state
// bucket's stream (JetStream has recovered it).
func (m *measure) start() (time.Duration, error) {
	began := time.Now()
	cmd := exec.Command(m.winch, "broker", "--data-dir", m.dir)
	// The load is not a test of durability: the server's default sync
	// (every 2 minutes), as winch dev and a cluster use.
	cmd.Env = append(os.Environ(), "WINCH_NATS_URL="+m.url, "WINCH_NATS_SYNC=2m", "WINCH_LOG_FORMAT=json")
	out, err := os.Create(filepath.Join(filepath.Dir(filepath.Clean(m.dir)), "scale-broker.log"))
	if err != nil {
		return 0, err
	}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	m.broker, m.exited = cmd, make(chan struct{})
	go func() { _ = cmd.Wait(); out.Close(); close(m.exited) }()
	for time.Since(began) < 10*time.Minute {
		select {
		case <-m.exited:
			return 0, fmt.Errorf("the broker exited at start (see scale-broker.log)")
		default:
		}
		if nc, err := nats.Connect(m.url); err == nil {
			js, _ := jetstream.New(nc)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_, err = js.Stream(ctx, "KV_"+broker.StateBucket)
			if err == nil {
				_, err = js.Stream(ctx, broker.EventsStream)
			}
			cancel()
			nc.Close()
			if err == nil {
				return time.Since(began), nil
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return 0, errors.New("the broker did not become ready in 10 minutes")
}

func (m *measure) stop(sig syscall.Signal) {
	if m.broker == nil || m.broker.Process == nil {
		return
	}
	_ = m.broker.Process.Signal(sig)
	<-m.exited
	m.broker = nil
}

// rss is the broker process's resident memory.
func (m *measure) rss() string {
	if m.broker == nil {
		return "?"
	}
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", m.broker.Process.Pid))
	if err != nil {
		return "?"
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), "VmRSS:"); ok {
			kb, _ := strconv.Atoi(strings.Fields(v)[0])
			return fmt.Sprintf("RSS %d MiB", kb/1024)
		}
	}
	return "?"
}

func (m *measure) report(ctx context.Context, oldest, when string) error {
	var disk int64
	_ = filepath.Walk(m.dir, func(_ string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			disk += info.Size()
		}
		return nil
	})
	fmt.Printf("%s: %s, disk %d MiB\n", when, m.rss(), disk>>20)
	nc, err := nats.Connect(m.url)
	if err != nil {
		return err
	}
	js, _ := jetstream.New(nc)
	for _, name := range []string{broker.EventsStream, "KV_" + broker.StateBucket, broker.JobsStream} {
		s, err := js.Stream(ctx, name)
		if err != nil {
			nc.Close()
			return err
		}
		st := s.CachedInfo().State
		fmt.Printf("  %-18s %9d messages %6d MiB %9d subjects\n", name, st.Msgs, st.Bytes>>20, st.NumSubjects)
	}
	nc.Close()
	for _, c := range []struct {
		name string
		args []string
	}{
		{"winch ps", []string{"ps"}},
		{"winch ps -a", []string{"ps", "-a"}},
		{"winch status OLDEST", []string{"status", oldest}},
		{"winch logs OLDEST", []string{"logs", oldest}},
	} {
		if c.name == "winch ps -a" && !m.all {
			continue
		}
		began := time.Now()
		cmd := exec.Command(m.client, c.args...)
		cmd.Env = append(os.Environ(), "WINCH_NATS_URL="+m.url)
		var lines lineCounter
		cmd.Stdout = &lines
		cmd.Stderr = os.Stderr
		err := cmd.Run()
		fmt.Printf("  %-20s %8v  %d lines  (%s)  err %v\n", c.name, time.Since(began).Round(time.Millisecond), lines.n, m.rss(), err)
	}
	return nil
}

type lineCounter struct{ n int }

func (l *lineCounter) Write(p []byte) (int, error) {
	l.n += strings.Count(string(p), "\n")
	return len(p), nil
}

// load writes n finished jobs as workers do: the claim (a state), the accepted, started, log and finished events, the end
// (a state). It returns the first job's id.
func load(ctx context.Context, js jetstream.JetStream, n, writers, logLines int) (string, error) {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	kv, err := js.KeyValue(ctx, broker.StateBucket)
	if err != nil {
		return "", err
	}
	store := jobs.NewStore(kv)
	pub := jobs.NewPublisher(js, log)
	first := schema.NewJobID()
	var next, done atomic.Int64
	var firstErr error
	var errOnce sync.Once
	var wg sync.WaitGroup
	progress := time.NewTicker(30 * time.Second)
	defer progress.Stop()
	stop := make(chan struct{})
	go func() {
		began := time.Now()
		for {
			select {
			case <-stop:
				return
			case <-progress.C:
				fmt.Printf("  %d jobs after %v\n", done.Load(), time.Since(began).Round(time.Second))
			}
		}
	}()
	for w := range writers {
		wg.Go(func() {
			claimant := jobs.Claimant{Worker: "bench-" + strconv.Itoa(w), Session: "bench-" + strconv.Itoa(w) + "-s", Executor: "docker", Retry: true}
			for {
				i := next.Add(1) - 1
				if i >= int64(n) {
					return
				}
				id := schema.NewJobID()
				if i == 0 {
					id = first
				}
				if err := oneJob(ctx, store, pub, claimant, id, logLines); err != nil {
					errOnce.Do(func() { firstErr = fmt.Errorf("job %d: %w", i, err) })
					return
				}
				done.Add(1)
			}
		})
	}
	wg.Wait()
	close(stop)
	return first, firstErr
}

func oneJob(ctx context.Context, store *jobs.Store, pub *jobs.Publisher, c jobs.Claimant, id string, logLines int) error {
	now := time.Now().UTC()
	req := schema.Request{Version: schema.Version, ID: id, Command: "core.echo", Queue: "default", Principal: "alice",
		Params: map[string]any{"text": "hello from a job of the scale measurement"}, CreatedAt: now.Add(-50 * time.Millisecond)}
	c.Params = req.Params
	claimed, err := store.Update(ctx, id, &jobs.Entry{State: jobs.Queued(req)}, func(cur jobs.Entry) (schema.JobState, bool, error) {
		d := jobs.Claim(cur.StateOr(jobs.Queued(req)), false, c, now)
		return d.State, d.Write, nil
	})
	if err != nil {
		return err
	}
	att := pub.Attempt(id, claimed.State.Attempt, c.Worker)
	att.Emit(schema.Event{Kind: schema.KindAccepted, State: schema.StateRunning, Command: req.Command,
		Principal: req.Principal, Queue: req.Queue, Params: req.Params, CreatedAt: req.CreatedAt})
	att.Emit(schema.Event{Kind: schema.KindStarted, Executor: "docker", Image: "winch-toolbox:latest@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"})
	for range logLines {
		att.Emit(schema.Event{Kind: schema.KindLog, Stream: schema.Stdout, Data: "hello from a job of the scale measurement\n"})
	}
	seq := att.NextSeq()
	finished, err := store.Update(ctx, id, &claimed, func(cur jobs.Entry) (schema.JobState, bool, error) {
		st, err := jobs.Finish(cur.State, c.Session, cur.State.Attempt, jobs.Ending{ExitCode: 0, StartedAt: now}, seq, time.Now().UTC())
		return st, err == nil, err
	})
	if err != nil {
		return err
	}
	att.Emit(finished.State.FinalEvent())
	return att.Flush(ctx)
}

// submit leaves n requests in a queue no worker serves.
func submit(ctx context.Context, nc *nats.Conn, n int) error {
	c, err := producer.New(ctx, nc, slog.New(slog.DiscardHandler))
	if err != nil {
		return err
	}
	for range n {
		if _, err := c.Submit(ctx, schema.Request{Command: "core.echo", Queue: "idle", Principal: "alice",
			Params: map[string]any{"text": "waiting"}}); err != nil {
			return err
		}
	}
	return nil
}
