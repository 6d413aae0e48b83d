package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/winchhq/winch/broker"
	"github.com/winchhq/winch/jobs"
	"github.com/winchhq/winch/schema"
)

// Why a running job's context was cancelled.
var (
	errCancelled = errors.New("cancelled")
	errTimedOut  = errors.New("timed out")
	errDraining  = errors.New("worker draining")
	errClaimLost = errors.New("another worker took the job over")
)

// attempt is one run of a claimed job on this worker.
type attempt struct {
	w         *Worker
	d         delivery
	adm       admission
	log       *slog.Logger
	store     *jobs.Store // on the attempt's lane, as its events
	events    *jobs.Attempt
	lastTry   bool
	delivered int

	stop context.CancelCauseFunc

	// startedCh holds output back until the started event is out, so that
	// no log event comes before it; openOutput opens it in any case.
	startedCh  chan struct{}
	openOutput sync.Once

	mu        sync.Mutex // guards entry and startedAt
	entry     jobs.Entry // the job's state as this worker last wrote or read it
	startedAt time.Time
}

func (a *attempt) id() string { return a.adm.req.ID }

func (a *attempt) number() int { return a.current().State.Attempt }

func (a *attempt) current() jobs.Entry {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.entry
}

// update applies a transition that only the holder may make, with the
// store's compare-and-set, starting from what this worker knows.
func (a *attempt) update(ctx context.Context, transition func(schema.JobState) (schema.JobState, error)) (schema.JobState, error) {
	known := a.current()
	entry, err := a.store.Update(ctx, a.id(), &known, func(cur jobs.Entry) (schema.JobState, bool, error) {
		next, err := transition(cur.State)
		return next, err == nil, err
	})
	if errors.Is(err, jobs.ErrNotHolder) {
		return entry.State, errClaimLost
	}
	if err != nil {
		return entry.State, err
	}
	a.mu.Lock()
	a.entry = entry
	a.mu.Unlock()
	return entry.State, nil
}

// updateDurably is update for recording the start or the end of an attempt,
// which must not be lost to a passing failure (a broker failing over): it
// tries again, backing off, until it succeeds, the transition is refused,
// or ctx ends.
func (a *attempt) updateDurably(ctx context.Context, transition func(schema.JobState) (schema.JobState, error)) (schema.JobState, error) {
	for try := 1; ; try++ {
		// Each try waits for its own answer: a write that reached a stream
		// without a leader is never answered, even once there is one.
		tryCtx, cancel := context.WithTimeout(ctx, broker.TryTimeout)
		st, err := a.update(tryCtx, transition)
		cancel()
		if err == nil || errors.Is(err, errClaimLost) || errors.Is(err, jobs.ErrContended) {
			return st, err
		}
		a.log.Warn("record the job's state; trying again", "try", try, "err", err)
		select {
		case <-ctx.Done():
			return st, err
		case <-time.After(min(time.Duration(try)*200*time.Millisecond, 2*time.Second)):
		}
	}
}

func (a *attempt) timeout() time.Duration {
	return effectiveTimeout(time.Duration(a.adm.cmd.Spec.Timeout), time.Duration(a.adm.req.Timeout))
}

func (a *attempt) run() {
	spec := a.adm.cmd.Spec
	ctx, cancel := context.WithCancelCause(a.w.jobsCtx)
	defer cancel(nil)
	a.stop = cancel
	if timeout := a.timeout(); timeout > 0 {
		var cancelTimeout context.CancelFunc
		ctx, cancelTimeout = context.WithTimeoutCause(ctx, timeout, errTimedOut)
		defer cancelTimeout()
	}
	a.w.track(a)
	defer a.w.untrack(a)

	req := a.adm.req
	a.events.Emit(schema.Event{Kind: schema.KindAccepted, State: schema.StateRunning, Command: req.Command,
		Principal: req.Principal, Queue: req.Queue, Priority: req.Priority, Schedule: req.Schedule, Params: a.adm.masked, CreatedAt: req.CreatedAt, Commit: a.adm.cmd.Commit, ParentID: req.ParentID})

	var keeper sync.WaitGroup
	keeper.Go(func() { a.keepAlive(ctx) })

	secrets := spec.SecretValues(a.adm.params)
	a.startedCh = make(chan struct{})
	emitLog := func(stream schema.Stream, text string) {
		<-a.startedCh
		a.events.Emit(schema.Event{Kind: schema.KindLog, Stream: stream, Data: text})
	}
	cfg := a.w.cfg
	// The build log of a derived image comes before the command starts.
	buildLog := newOutput(schema.StreamBuild, func(stream schema.Stream, text string) {
		a.events.Emit(schema.Event{Kind: schema.KindLog, Stream: stream, Data: text})
	}, secrets, cfg.LogBatchBytes, cfg.LogFlushInterval)
	defer buildLog.Close()
	stdout := newOutput(schema.Stdout, emitLog, secrets, cfg.LogBatchBytes, cfg.LogFlushInterval)
	stderr := newOutput(schema.Stderr, emitLog, secrets, cfg.LogBatchBytes, cfg.LogFlushInterval)
	cmd := a.adm.cmd
	job := &Job{
		ID: req.ID, Attempt: a.number(), Worker: cfg.ID, Deployment: a.w.deployment, Command: req.Command, Spec: spec, Image: cmd.Image,
		Module: cmd.Module, Commit: cmd.Commit, ModuleDir: cmd.Dir, Build: cmd.Build, BuildLog: buildLog,
		Params: a.adm.params, Env: a.env(), Stdout: stdout, Stderr: stderr,
		Starting: func() error { return a.starting(ctx) },
		Started:  a.started,
	}
	outcome, runErr := cfg.Executor.Run(ctx, job)
	a.openOutput.Do(func() { close(a.startedCh) })
	stdout.Close()
	stderr.Close()
	buildLog.Close()
	cause := context.Cause(ctx)
	cancel(nil)
	keeper.Wait()

	switch {
	case errors.Is(cause, errClaimLost):
		a.log.Warn("another worker took the job over; abandoning this attempt")
		return // the request is theirs to acknowledge
	case errors.Is(cause, errDraining):
		a.release("worker " + cfg.ID + " stopped and its drain deadline passed")
		return
	case runErr != nil && IsTransient(runErr) && !a.lastTry && a.current().State.StartedAt.IsZero():
		a.release("the executor could not start the command: " + runErr.Error())
		return
	}
	a.finish(jobs.Ending{
		Cancelled: errors.Is(cause, errCancelled),
		TimedOut:  timedOut(cause, a.timeout()),
		Err:       runErr,
		ExitCode:  outcome.ExitCode,
		Reason:    outcome.Reason,
		StartedAt: a.startTime(),
	})
}

func timedOut(cause error, timeout time.Duration) time.Duration {
	if errors.Is(cause, errTimedOut) {
		return timeout
	}
	return 0
}

func effectiveTimeout(command, request time.Duration) time.Duration {
	switch {
	case command == 0:
		return request
	case request == 0:
		return command
	}
	return min(command, request)
}

// env is the command's environment from winch: who it is and its
// parameters. Executors add nothing of the worker's own environment.
func (a *attempt) env() []string {
	req := a.adm.req
	env := []string{
		"WINCH_JOB_ID=" + req.ID,
		"WINCH_ATTEMPT=" + strconv.Itoa(a.number()),
		"WINCH_COMMAND=" + req.Command,
		"WINCH_PRINCIPAL=" + req.Principal,
	}
	return append(env, schema.ParamEnv(a.adm.params)...)
}

// starting records, before the command starts, that it may be running, for
// a command that may not run twice: a worker that dies from here on leaves
// the job failed (worker lost), never run again. A command that may run
// again needs no such record, and gets no write.
func (a *attempt) starting(ctx context.Context) error {
	if a.adm.cmd.Spec.Retry {
		return nil
	}
	session, number := a.w.session, a.number()
	// Through a failover, as the end is: a write whose answer was lost is
	// tried again rather than awaited for the command's whole timeout.
	ctx, cancel := context.WithTimeout(ctx, endTimeout)
	defer cancel()
	if _, err := a.updateDurably(ctx, func(st schema.JobState) (schema.JobState, error) {
		return jobs.Start(st, session, number, time.Now().UTC())
	}); err != nil {
		return fmt.Errorf("record the start: %w", err)
	}
	return nil
}

func (a *attempt) startTime() time.Time {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.startedAt
}

// started announces the running command; its output may follow.
func (a *attempt) started(info StartInfo) {
	now := time.Now().UTC()
	a.mu.Lock()
	a.startedAt = now
	a.mu.Unlock()
	a.w.cfg.Metrics.Started(a.adm.req.Queue, a.adm.req.CreatedAt, now)
	a.events.Emit(schema.Event{Kind: schema.KindStarted, Executor: info.Executor, Image: info.Image})
	a.openOutput.Do(func() { close(a.startedCh) })
	a.log.Info("job started", "executor", info.Executor, "attempt", a.number())
}

// keepAlive keeps the request from being redelivered while the command runs,
// and looks at the job's state now and then: a cancel whose doorbell was
// lost, or a takeover, is noticed within a heartbeat interval. It writes
// nothing: the worker's session entry says that it is alive.
func (a *attempt) keepAlive(ctx context.Context) {
	t := time.NewTicker(a.w.topo.HeartbeatInterval())
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := a.d.InProgress(); err != nil {
			a.log.Warn("in-progress ack", "err", err)
		}
		a.check(ctx)
	}
}

// check reads the job's state and stops the attempt if it was cancelled or
// taken over.
func (a *attempt) check(ctx context.Context) {
	entry, err := a.store.Get(ctx, a.id())
	if err != nil {
		if ctx.Err() == nil {
			a.log.Warn("read the job's state", "err", err)
		}
		return
	}
	switch {
	case !jobs.Holds(entry.State, a.w.session, a.number()):
		a.stop(errClaimLost)
	case entry.State.CancelRequested:
		a.log.Info("cancel requested", "by", entry.State.CancelledBy)
		a.stop(errCancelled)
	default:
		a.mu.Lock()
		if entry.Rev > a.entry.Rev {
			a.entry = entry
		}
		a.mu.Unlock()
	}
}

// finish records how the job ended, publishes it, and acknowledges the
// request, in that order: a crash in between leaves a redelivery that finds
// the job over and publishes the same final event again.
func (a *attempt) finish(e jobs.Ending) {
	ctx, cancel := context.WithTimeout(context.Background(), endTimeout)
	defer cancel()
	defer keepInProgress(a.d, a.w.topo.HeartbeatInterval())()
	seq := a.events.NextSeq() // nothing is emitted after this: the outputs are closed
	session, number := a.w.session, a.number()
	st, err := a.updateDurably(ctx, func(cur schema.JobState) (schema.JobState, error) {
		return jobs.Finish(cur, session, number, e, seq, time.Now().UTC())
	})
	if errors.Is(err, errClaimLost) && jobs.FinishedBy(st, session, number, seq) {
		// An earlier try was stored but its answer lost (a failover).
		err = nil
	}
	if errors.Is(err, errClaimLost) {
		a.log.Warn("another worker took the job over before it finished here")
		return
	}
	if err != nil {
		// The state could not be written; leave the request unacknowledged
		// so that a redelivery settles it.
		a.log.Error("record the end of the job", "err", err)
		return
	}
	a.events.Emit(st.FinalEvent())
	if err := a.events.Flush(ctx); err != nil {
		a.log.Error("publish the job's events; leaving the request to be redelivered", "err", err)
		return
	}
	if key := st.Slot; key != "" && !a.w.freeSlot(ctx, key, a.id()) {
		return // the redelivery finds the job over and frees the slot
	}
	if err := a.d.Ack(); err != nil {
		a.log.Warn("ack", "err", err)
	}
	a.w.tellParent(ctx, st)
	a.w.cfg.Metrics.Finished(a.adm.req.Command, a.adm.req.Queue, string(st.State), a.startTime(), time.Now())
	a.log.Info("job finished", "state", st.State, "exit_code", derefInt(st.ExitCode), "error", st.Error)
}

// release hands the job back to its queue, or, for a command that started
// and may not run twice, ends it as interrupted (jobs.Release).
func (a *attempt) release(why string) {
	ctx, cancel := context.WithTimeout(context.Background(), endTimeout)
	defer cancel()
	defer keepInProgress(a.d, a.w.topo.HeartbeatInterval())()
	seq := a.events.NextSeq()
	session, number := a.w.session, a.number()
	handedBack := false
	st, err := a.updateDurably(ctx, func(cur schema.JobState) (schema.JobState, error) {
		next, back, err := jobs.Release(cur, session, number, why, seq, time.Now().UTC())
		handedBack = back
		return next, err
	})
	if err != nil {
		a.log.Error("hand the job back", "err", err)
		_ = a.events.Flush(ctx)
		return
	}
	if !handedBack {
		a.events.Emit(st.FinalEvent())
		if err := a.events.Flush(ctx); err == nil && (st.Slot == "" || a.w.freeSlot(ctx, st.Slot, a.id())) {
			_ = a.d.Ack()
		}
		a.log.Warn("job interrupted: it may not run twice, so it is not handed back", "why", why)
		return
	}
	a.events.Emit(schema.Event{Seq: seq, Kind: schema.KindReleased, State: schema.StateQueued, Error: why + ": handed back to the queue"})
	_ = a.events.Flush(ctx)
	// A passing failure backs off; a drain hands it on at once.
	delay := min(time.Duration(a.delivered)*time.Second, a.w.topo.Lease())
	if errors.Is(context.Cause(a.w.jobsCtx), errDraining) {
		delay = 0
	}
	if err := a.d.Nak(delay); err != nil {
		a.log.Warn("nak", "err", err)
	}
	a.log.Info("job handed back to the queue", "why", why)
}

func derefInt(p *int) any {
	if p == nil {
		return nil
	}
	return *p
}
