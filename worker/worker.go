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
	"github.com/winchhq/winch/jobs"
	"github.com/winchhq/winch/metrics"
	"github.com/winchhq/winch/modules"
	"github.com/winchhq/winch/schedule"
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
	// Connections is how many lanes the worker runs: connections to the
	// broker, each with its own fetch loop and its share of the slots (see
	// lane). The first is the given connection; the others are opened in
	// Start with its options and closed in Stop. Default 2 from a
	// concurrency of 8 (each lane then long-polls every priority of its
	// queues when idle), else 1; never more than Concurrency.
	Connections int
	// DrainTimeout is how long Stop lets running jobs finish before it stops
	// them and hands them back to the queue (or, for commands that started
	// and may not run twice, records them interrupted).
	DrainTimeout time.Duration
	// Topology is what the worker asks of the fleet's topology: zero fields
	// take the fleet's settings; a non-zero one that differs is an error
	// (broker.ConflictError). The topology must exist (broker.Ensure).
	Topology broker.Topology
	// Catalog finds commands: a fixed modules.Catalog, or a
	// modules.Resolver over the module registry.
	Catalog Commands
	// Roles grants principals the roles that commands may require; the
	// admin role (jobs.AdminRole) may cancel anyone's jobs.
	Roles    Roles
	Executor Executor
	Logger   *slog.Logger
	// Metrics, when set, counts what the worker does (WINCH_METRICS_ADDR).
	Metrics *metrics.Worker
	// ReapInterval is how often the worker looks for what dead workers left
	// in the executor (containers), when the executor can leave anything.
	ReapInterval time.Duration
	// LogBatchBytes and LogFlushInterval shape log events (see output).
	LogBatchBytes    int
	LogFlushInterval time.Duration
	// ScheduleGrace is how late a schedule's fire may reach a worker and
	// still be on time; a later one is a missed fire, which the schedule's
	// catch-up choice runs once or skips. Default one minute.
	ScheduleGrace time.Duration
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
	if c.Connections <= 0 {
		c.Connections = 1
		if c.Concurrency >= 8 {
			c.Connections = 2
		}
	}
	c.Connections = min(c.Connections, c.Concurrency)
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
	if c.ScheduleGrace <= 0 {
		c.ScheduleGrace = time.Minute
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
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
	cfg Config
	log *slog.Logger
	nc  *nats.Conn
	js  jetstream.JetStream

	// topo is the fleet's topology, as Start found it.
	topo      broker.Topology
	store     *jobs.Store
	schedules *schedule.Store
	sessions  *jobs.Sessions
	limits    *jobs.SlotStore
	// keyLocks serialize this worker's writes of a concurrency key's entry.
	keyLocks sync.Map
	events   *jobs.Publisher
	// session names this run of the worker in the liveness bucket and in
	// the states of the jobs it holds.
	session string
	// doorbell hears that a job this worker runs was cancelled.
	doorbell *nats.Subscription
	// lanes fetch and run the jobs, each on a connection of its own; the
	// first is the worker's connection (store and events above), the
	// others are opened in Start and closed in Stop.
	lanes []*lane

	runners sync.WaitGroup
	// deployment identifies this installation: the creation time of its
	// state bucket, the same for every worker that shares it.
	deployment string

	runningMu sync.Mutex
	running   map[string]*attempt
	// drivers are the fan-outs this worker drives, by parent; driving
	// waits for them.
	drivers map[string]*driver
	driving sync.WaitGroup

	// fetchCtx ends the loops that take work; jobsCtx ends running jobs,
	// with errDraining as its cause, once the drain deadline passes, and
	// then the session's heartbeat.
	fetchCtx   context.Context
	stopFetch  context.CancelFunc
	jobsCtx    context.Context
	cancelJobs context.CancelCauseFunc
	// loops take work; jobs run it; heart keeps the session alive while
	// any job may run.
	loops, jobs, heart sync.WaitGroup
	stopOnce           sync.Once
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
	session := jobs.NewSession(cfg.ID)
	return &Worker{
		cfg:     cfg,
		log:     cfg.Logger.With("worker", cfg.ID),
		nc:      nc,
		js:      js,
		session: session,
		running: map[string]*attempt{},
		drivers: map[string]*driver{},
	}, nil
}

// ID is the worker's name.
func (w *Worker) ID() string { return w.cfg.ID }

// Executor names how the worker runs commands.
func (w *Worker) Executor() string { return w.cfg.Executor.Name() }

// Start checks the fleet's topology and the queues' consumers, announces the worker's session, then starts taking jobs and
// control requests. It returns once the worker is serving; ctx bounds the
// set-up only.
func (w *Worker) Start(ctx context.Context) error {
	// The topology has one owner (whoever ran broker.Ensure: winch broker,
	// winch dev, winch init, the worker command's wiring); a worker only
	// checks that it agrees with it.
	topo, err := broker.Check(ctx, w.js, w.cfg.Topology)
	if err != nil {
		return err
	}
	w.topo = topo
	state, err := w.js.KeyValue(ctx, broker.StateBucket)
	if err != nil {
		return fmt.Errorf("open state bucket: %w", err)
	}
	w.store = jobs.NewStore(state)
	workers, err := w.js.KeyValue(ctx, broker.WorkersBucket)
	if err != nil {
		return fmt.Errorf("open workers bucket: %w", err)
	}
	w.sessions = jobs.NewSessions(workers, topo.Lease())
	slots, err := w.js.KeyValue(ctx, broker.SlotsBucket)
	if err != nil {
		return fmt.Errorf("open concurrency slots bucket: %w", err)
	}
	w.limits = jobs.NewSlotStore(slots)
	w.events = jobs.NewPublisher(w.js, w.log)
	if w.cfg.Metrics != nil {
		w.events.CountWith(w.cfg.Metrics)
	}
	if s, err := w.js.Stream(ctx, "KV_"+broker.StateBucket); err == nil {
		w.deployment = strconv.FormatInt(s.CachedInfo().Created.UnixNano(), 36)
	} else {
		return fmt.Errorf("state bucket stream: %w", err)
	}
	if w.schedules, err = schedule.Open(ctx, w.js); err != nil {
		return fmt.Errorf("%w: %w", errNoSchedules, err)
	}
	fires, err := w.consumer(ctx, broker.SchedulesStream, jetstream.ConsumerConfig{
		Durable: broker.FiresConsumer, Description: "winch workers turning schedules' fires into requests",
		FilterSubject: broker.AllFires, AckPolicy: jetstream.AckExplicitPolicy, AckWait: w.topo.AckWait,
		// Fires are relayed before later fires of the same schedule: a
		// missed fire knows whether a later one is waiting.
		MaxAckPending: 1000,
	})
	if err != nil {
		return err
	}
	dead, err := w.sharedConsumer(ctx, broker.DeadStream, "dead-letters", "winch workers recording dead jobs")
	if err != nil {
		return err
	}
	control, err := w.sharedConsumer(ctx, broker.ControlStream, broker.ControlConsumer, "winch workers deciding control requests")
	if err != nil {
		return err
	}
	// A worker whose queues cannot be opened never announces a session.
	if err := w.openLanes(ctx); err != nil {
		return err
	}
	if err := w.sessions.Beat(ctx, w.session, w.sessionInfo()); err != nil {
		w.closeLanes()
		return err
	}
	w.doorbell, err = w.nc.Subscribe(broker.WorkerSubject(w.session), w.ring)
	if err != nil {
		w.closeLanes()
		return fmt.Errorf("subscribe to this worker's doorbell: %w", err)
	}
	w.fetchCtx, w.stopFetch = context.WithCancel(context.Background())
	w.jobsCtx, w.cancelJobs = context.WithCancelCause(context.Background())
	w.cfg.Metrics.Slots(w.cfg.Concurrency)
	w.heart.Add(1)
	go w.beat()
	for _, l := range w.lanes {
		for range cap(l.slots) {
			w.runners.Go(func() { w.run(l) })
		}
		w.loops.Add(1)
		go w.fetchLoop(l)
	}
	w.loops.Add(3)
	go w.drainShared(dead, w.buryAdvisory)
	go w.drainShared(control, w.decideControl)
	go w.relayLoop(fires)
	if r, ok := w.cfg.Executor.(Reapable); ok {
		w.loops.Add(1)
		go w.reapLoop(r)
	}
	if w.cfg.Metrics != nil {
		w.loops.Add(1)
		go w.pendingLoop(w.lanes[0].sources)
	}
	w.log.Info("worker serving", "queues", w.cfg.Queues, "concurrency", w.cfg.Concurrency, "executor", w.cfg.Executor.Name(), "session", w.session)
	return nil
}

func (w *Worker) sharedConsumer(ctx context.Context, stream, name, description string) (jetstream.Consumer, error) {
	return w.consumer(ctx, stream, jetstream.ConsumerConfig{
		Durable: name, Description: description,
		AckPolicy: jetstream.AckExplicitPolicy, AckWait: w.topo.AckWait,
	})
}

// consumer opens the durable consumer every worker shares, making or
// updating it when it is not as want.
func (w *Worker) consumer(ctx context.Context, stream string, want jetstream.ConsumerConfig) (jetstream.Consumer, error) {
	c, err := w.js.Consumer(ctx, stream, want.Durable)
	if err == nil && c.CachedInfo().Config.AckWait == want.AckWait && c.CachedInfo().Config.FilterSubject == want.FilterSubject {
		return c, nil
	}
	c, err = w.js.CreateOrUpdateConsumer(ctx, stream, want)
	if err != nil {
		return nil, fmt.Errorf("ensure consumer %s on %s: %w", want.Durable, stream, err)
	}
	return c, nil
}

func (w *Worker) sessionInfo() jobs.SessionInfo {
	return jobs.SessionInfo{Worker: w.cfg.ID, Queues: w.cfg.Queues, StartedAt: time.Now().UTC()}
}

// beat keeps the worker's session alive until the worker has stopped; the
// jobs it holds live by it.
func (w *Worker) beat() {
	defer w.heart.Done()
	info := w.sessionInfo()
	t := time.NewTicker(w.topo.HeartbeatInterval())
	defer t.Stop()
	for {
		select {
		case <-w.jobsCtx.Done():
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(w.jobsCtx, w.topo.HeartbeatInterval())
		if err := w.sessions.Beat(ctx, w.session, info); err != nil && w.jobsCtx.Err() == nil {
			w.log.Warn("session heartbeat", "err", err)
		}
		cancel()
	}
}

// Stop drains the worker: it takes no new job, lets running jobs finish for
// up to DrainTimeout, then stops the rest: those that had not started, or
// may run again, are handed back to their queue for another worker; those
// that started and may not run twice end as interrupted. ctx can cut the
// wait short, with the same effect as the deadline passing.
func (w *Worker) Stop(ctx context.Context) error {
	w.stopOnce.Do(func() {
		if w.stopFetch == nil {
			return // never started
		}
		w.stopFetch()
		w.loops.Wait()
		w.driving.Wait() // each hands its fan-out on to another worker
		done := make(chan struct{})
		go func() { w.jobs.Wait(); close(done) }()
		timer := time.NewTimer(w.cfg.DrainTimeout)
		defer timer.Stop()
		select {
		case <-done:
			w.log.Info("worker drained")
		case <-timer.C:
			w.log.Warn("drain deadline passed; stopping running jobs", "deadline", w.cfg.DrainTimeout.String())
		case <-ctx.Done():
			w.log.Warn("stopping running jobs", "why", context.Cause(ctx))
		}
		w.cancelJobs(errDraining)
		<-done
		for _, l := range w.lanes {
			close(l.handoff)
		}
		w.runners.Wait()
		w.closeLanes()
		_ = w.doorbell.Unsubscribe()
		w.heart.Wait()
		endCtx, cancel := context.WithTimeout(context.Background(), settleTimeout)
		defer cancel()
		if err := w.sessions.End(endCtx, w.session); err != nil {
			w.log.Warn("end session", "err", err)
		}
		w.log.Info("worker stopped")
	})
	return nil
}

func (w *Worker) track(a *attempt) {
	w.runningMu.Lock()
	defer w.runningMu.Unlock()
	w.running[a.id()] = a
	w.cfg.Metrics.Holding(+1)
}

// isRunning reports whether an attempt of job id runs on this worker.
func (w *Worker) isRunning(id string) bool {
	w.runningMu.Lock()
	defer w.runningMu.Unlock()
	return w.running[id] != nil
}

func (w *Worker) untrack(a *attempt) {
	w.runningMu.Lock()
	defer w.runningMu.Unlock()
	if w.running[a.id()] == a {
		delete(w.running, a.id())
		w.cfg.Metrics.Holding(-1)
	}
}

// ring is the doorbell: a worker that decided a cancel of a job this worker
// runs says so. The job's state, not the message, decides what happens.
func (w *Worker) ring(m *nats.Msg) {
	if w.ringDriver(string(m.Data), m.Header.Get(childHeader)) {
		return
	}
	w.runningMu.Lock()
	a := w.running[string(m.Data)]
	w.runningMu.Unlock()
	if a == nil {
		return
	}
	ctx, cancel := context.WithTimeout(w.jobsCtx, settleTimeout)
	defer cancel()
	a.check(ctx)
}

func ignoreEmpty(err error) error {
	if errors.Is(err, jetstream.ErrNoMessages) || errors.Is(err, nats.ErrTimeout) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

func (w *Worker) startAll(l *lane, batch jetstream.MessageBatch) int {
	got := 0
	for msg := range batch.Messages() {
		got++
		if w.fetchCtx.Err() != nil {
			// Stopped while the request was on its way: hand it straight back.
			_ = msg.Nak()
			<-l.slots
			continue
		}
		w.jobs.Add(1)
		l.handoff <- msg // a slot is held for it, so a runner is free
	}
	return got
}

// run is a runner: it handles requests until the worker stops.
func (w *Worker) run(l *lane) {
	for msg := range l.handoff {
		w.handle(msg, l)
		<-l.slots
		w.jobs.Done()
	}
}

// drainShared takes messages from a consumer that every worker shares (dead
// letters, control requests) until the worker stops.
func (w *Worker) drainShared(c jetstream.Consumer, handle func(jetstream.Msg)) {
	defer w.loops.Done()
	for w.fetchCtx.Err() == nil {
		ctx, cancel := context.WithTimeout(w.fetchCtx, 5*time.Second)
		batch, err := c.Fetch(10, jetstream.FetchContext(ctx))
		if err != nil {
			cancel()
			if w.fetchCtx.Err() == nil {
				w.log.Warn("fetch from a shared consumer", "err", err)
				sleepOrDone(w.fetchCtx, time.Second)
			}
			continue
		}
		for m := range batch.Messages() {
			handle(m)
		}
		cancel()
	}
}

func sleepOrDone(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
