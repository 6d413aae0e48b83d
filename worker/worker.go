package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/winchhq/winch/broker"
	"github.com/winchhq/winch/modules"
	"github.com/winchhq/winch/schema"
)

// Config configures a worker.
type Config struct {
	// ID names the worker in job states and events; default host-pid.
	ID string
	// Queues to serve; default just "default".
	Queues []string
	// Concurrency bounds the jobs this worker runs at once, over all queues.
	Concurrency int
	// DrainTimeout is how long Stop lets running jobs finish before it stops
	// them and hands them back to the queue.
	DrainTimeout time.Duration
	Topology     broker.Topology
	// Catalog finds commands: a fixed modules.Catalog, or a
	// modules.Resolver over the module registry.
	Catalog Commands
	// Roles grants principals the roles that commands may require.
	Roles    Roles
	Executor Executor
	Logger   *slog.Logger
	// ReapInterval is how often the worker looks for what dead workers left
	// in the executor (containers), when the executor can leave anything.
	ReapInterval time.Duration
	// LogBatchBytes and LogFlushInterval shape log events (see output).
	LogBatchBytes    int
	LogFlushInterval time.Duration
}

func (c Config) withDefaults() Config {
	if c.ID == "" {
		host, _ := os.Hostname()
		c.ID = fmt.Sprintf("%s-%d", host, os.Getpid())
	}
	if len(c.Queues) == 0 {
		c.Queues = []string{schema.DefaultQueue}
	}
	if c.Concurrency <= 0 {
		c.Concurrency = 4
	}
	if c.DrainTimeout <= 0 {
		c.DrainTimeout = 30 * time.Second
	}
	if c.ReapInterval <= 0 {
		c.ReapInterval = time.Minute
	}
	if c.LogBatchBytes <= 0 {
		c.LogBatchBytes = 64 << 10
	}
	if c.LogFlushInterval <= 0 {
		c.LogFlushInterval = 20 * time.Millisecond
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	c.Topology = c.Topology.WithDefaults()
	return c
}

// Commands finds the command a request names, at the module commit it
// carries. An error wrapping modules.ErrUnknownCommand rejects the request;
// any other is taken as passing (a fetch that failed) and retried.
type Commands interface {
	Resolve(ctx context.Context, command, commit string) (modules.Command, error)
}

var (
	_ Commands = (*modules.Catalog)(nil)
	_ Commands = (*modules.Resolver)(nil)
)

// Worker runs jobs from its queues until stopped.
type Worker struct {
	cfg   Config
	log   *slog.Logger
	nc    *nats.Conn
	js    jetstream.JetStream
	state jetstream.KeyValue

	slots chan struct{}
	// deployment identifies this installation: the creation time of its
	// state bucket, the same for every worker that shares it.
	deployment string

	// fetchCtx ends the fetch loops; jobsCtx ends running jobs, with
	// errDraining as its cause, once the drain deadline passes.
	fetchCtx    context.Context
	stopFetch   context.CancelFunc
	jobsCtx     context.Context
	cancelJobs  context.CancelCauseFunc
	loops, jobs sync.WaitGroup
	stopOnce    sync.Once
}

// New makes a worker on connection nc. Start runs it.
func New(nc *nats.Conn, cfg Config) (*Worker, error) {
	cfg = cfg.withDefaults()
	if cfg.Catalog == nil || cfg.Executor == nil {
		return nil, errors.New("worker: a catalog and an executor are required")
	}
	for _, q := range cfg.Queues {
		if !schema.ValidQueue(q) {
			return nil, fmt.Errorf("worker: queue %q is not valid: use lower-case letters, digits, '-' and '_'", q)
		}
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	return &Worker{
		cfg:   cfg,
		log:   cfg.Logger.With("worker", cfg.ID),
		nc:    nc,
		js:    js,
		slots: make(chan struct{}, cfg.Concurrency),
	}, nil
}

// ID is the worker's name.
func (w *Worker) ID() string { return w.cfg.ID }

// Executor names how the worker runs commands.
func (w *Worker) Executor() string { return w.cfg.Executor.Name() }

// Start ensures the topology and the queues' consumers, then starts taking
// jobs. It returns once the worker is serving; ctx bounds the set-up only.
func (w *Worker) Start(ctx context.Context) error {
	if err := broker.Ensure(ctx, w.js, w.cfg.Topology); err != nil {
		return err
	}
	kv, err := w.js.KeyValue(ctx, broker.StateBucket)
	if err != nil {
		return fmt.Errorf("open state bucket: %w", err)
	}
	w.state = kv
	if s, err := w.js.Stream(ctx, "KV_"+broker.StateBucket); err == nil {
		w.deployment = strconv.FormatInt(s.CachedInfo().Created.UnixNano(), 36)
	} else {
		return fmt.Errorf("state bucket stream: %w", err)
	}
	consumers := make(map[string]jetstream.Consumer, len(w.cfg.Queues))
	for _, q := range w.cfg.Queues {
		c, err := broker.EnsureQueue(ctx, w.js, q, w.cfg.Topology)
		if err != nil {
			return err
		}
		consumers[q] = c
	}
	dead, err := w.js.CreateOrUpdateConsumer(ctx, broker.DeadStream, jetstream.ConsumerConfig{
		Durable: "dead-letters", Description: "winch workers recording dead jobs",
		AckPolicy: jetstream.AckExplicitPolicy, AckWait: w.cfg.Topology.AckWait,
	})
	if err != nil {
		return fmt.Errorf("ensure dead-letter consumer: %w", err)
	}
	w.fetchCtx, w.stopFetch = context.WithCancel(context.Background())
	w.jobsCtx, w.cancelJobs = context.WithCancelCause(context.Background())
	for q, c := range consumers {
		w.loops.Add(1)
		go w.fetchLoop(q, c)
	}
	w.loops.Add(1)
	go w.deadLetters(dead)
	if r, ok := w.cfg.Executor.(Reapable); ok {
		w.loops.Add(1)
		go w.reapLoop(r)
	}
	w.log.Info("worker serving", "queues", w.cfg.Queues, "concurrency", w.cfg.Concurrency, "executor", w.cfg.Executor.Name())
	return nil
}

// Stop drains the worker: it takes no new job, lets running jobs finish for
// up to DrainTimeout, then stops the rest and hands them back to their
// queue for another worker. ctx can cut the wait short, with the same
// effect as the deadline passing.
func (w *Worker) Stop(ctx context.Context) error {
	w.stopOnce.Do(func() {
		if w.stopFetch == nil {
			return // never started
		}
		w.stopFetch()
		w.loops.Wait()
		done := make(chan struct{})
		go func() { w.jobs.Wait(); close(done) }()
		timer := time.NewTimer(w.cfg.DrainTimeout)
		defer timer.Stop()
		select {
		case <-done:
			w.cancelJobs(nil)
			w.log.Info("worker drained")
			return
		case <-timer.C:
		case <-ctx.Done():
		}
		w.log.Warn("drain deadline passed; handing running jobs back", "deadline", w.cfg.DrainTimeout.String())
		w.cancelJobs(errDraining)
		<-done
		w.log.Info("worker stopped")
	})
	return nil
}

// fetchLoop takes one request whenever a slot is free, so that a worker
// never holds more requests than it runs (which would keep them from idle
// workers and let their ack timers run).
func (w *Worker) fetchLoop(queue string, c jetstream.Consumer) {
	defer w.loops.Done()
	log := w.log.With("queue", queue)
	failures := 0
	for {
		select {
		case w.slots <- struct{}{}:
		case <-w.fetchCtx.Done():
			return
		}
		msg, err := w.next(c)
		if err != nil {
			<-w.slots
			if w.fetchCtx.Err() != nil {
				return
			}
			if errors.Is(err, nats.ErrTimeout) || errors.Is(err, jetstream.ErrNoMessages) || errors.Is(err, context.DeadlineExceeded) {
				failures = 0
				continue
			}
			failures++
			wait := min(time.Duration(failures)*200*time.Millisecond, 5*time.Second)
			log.Warn("fetch failed; retrying", "err", err, "in", wait)
			select {
			case <-time.After(wait):
			case <-w.fetchCtx.Done():
				return
			}
			continue
		}
		failures = 0
		w.jobs.Add(1)
		go func() {
			defer func() { <-w.slots; w.jobs.Done() }()
			w.handle(msg)
		}()
	}
}

func (w *Worker) next(c jetstream.Consumer) (jetstream.Msg, error) {
	ctx, cancel := context.WithTimeout(w.fetchCtx, 5*time.Second)
	defer cancel()
	msg, err := c.Next(jetstream.FetchContext(ctx))
	if err != nil {
		return nil, err
	}
	if w.fetchCtx.Err() != nil {
		// Stopped while the request was on its way: hand it straight back.
		_ = msg.Nak()
		return nil, w.fetchCtx.Err()
	}
	return msg, nil
}
