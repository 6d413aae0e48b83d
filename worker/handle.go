package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/winchhq/winch/broker"
	"github.com/winchhq/winch/modules"
	"github.com/winchhq/winch/schema"
)

// observerSeq numbers an event that someone other than the attempt's worker
// writes about it (its loss, its death), so that it sorts after every event
// the worker may have written.
const observerSeq = 1_000_000_000

// reapedSeq numbers the event of a reaped leftover of an attempt.
const reapedSeq = observerSeq - 1

// settleTimeout bounds the writes that record a job's end, which must happen
// even when the job's own context is gone.
const settleTimeout = 10 * time.Second

// handle takes one delivered request through to an ack, a term or a nak.
func (w *Worker) handle(msg jetstream.Msg) {
	ctx, cancel := context.WithTimeout(context.Background(), settleTimeout)
	defer cancel()
	meta, err := msg.Metadata()
	if err != nil {
		w.log.Error("message without metadata; terminating it", "subject", msg.Subject(), "err", err)
		_ = msg.Term()
		return
	}
	lastTry := meta.NumDelivered >= uint64(w.cfg.Topology.MaxDeliver)

	req, err := schema.DecodeRequest(msg.Data())
	if err != nil {
		w.reject(ctx, msg, rejectedID(msg, meta), schema.Request{}, err)
		return
	}
	if principal, ok := broker.PrincipalOf(msg.Subject()); !ok || principal != req.Principal {
		req.Params = nil
		w.reject(ctx, msg, req.ID, req, fmt.Errorf("principal %q in the request does not match the subject %s, which names who published it", req.Principal, msg.Subject()))
		return
	}
	cmd, err := w.resolve(msg, req)
	switch {
	case errors.Is(err, modules.ErrUnknownCommand), err != nil && lastTry:
		req.Params = nil // which of them are secret is not known: keep none
		w.reject(ctx, msg, req.ID, req, err)
		return
	case err != nil:
		w.log.Warn("cannot get the command's module; the request will be redelivered", "job", req.ID, "command", req.Command, "err", err)
		_ = msg.NakWithDelay(2 * time.Second)
		return
	}
	// Who may run it is checked before anything else about the request.
	if err := w.cfg.Roles.Check(req.Principal, req.Command, cmd.Spec.Roles); err != nil {
		req.Params = cmd.Spec.MaskParams(req.Params)
		w.reject(ctx, msg, req.ID, req, err)
		return
	}
	params, err := cmd.Spec.ValidateParams(req.Params)
	if err != nil {
		req.Params = cmd.Spec.MaskParams(req.Params)
		w.reject(ctx, msg, req.ID, req, fmt.Errorf("invalid parameters for %s: %w", req.Command, err))
		return
	}

	st, rev, verdict, err := w.claim(ctx, req, cmd, cmd.Spec.MaskParams(params))
	log := w.log.With("job", req.ID, "command", req.Command)
	switch {
	case err != nil && lastTry:
		log.Error("cannot claim the job on its last delivery; it is dead", "err", err)
		w.settleDead(ctx, req.ID, fmt.Sprintf("could not be claimed after %d deliveries: %v", meta.NumDelivered, err))
		_ = msg.Term()
		return
	case err != nil:
		log.Warn("cannot claim the job; it will be redelivered", "err", err)
		_ = msg.NakWithDelay(time.Second)
		return
	case verdict == verdictOver:
		// Already over (a duplicate, a cancel before start, a lost attempt
		// just recorded): make sure its end is published, then drop it.
		log.Debug("job is over; dropping the request", "state", st.State)
		w.publish(ctx, st.FinalEvent())
		_ = msg.Term()
		return
	case verdict == verdictBusy:
		log.Debug("job is held by a live worker; trying again later", "holder", st.Worker)
		_ = msg.NakWithDelay(w.cfg.Topology.Lease())
		return
	}
	r := &run{
		w: w, msg: msg, req: req, cmd: cmd, params: params, log: log,
		attempt: st.Attempt, state: st, rev: rev,
	}
	r.execute()
}

// resolveTimeout bounds finding a command, which may mean fetching its
// module's repository.
const resolveTimeout = 5 * time.Minute

// resolve finds the request's command, keeping the request from being
// redelivered while a module is fetched.
func (w *Worker) resolve(msg jetstream.Msg, req schema.Request) (modules.Command, error) {
	ctx, cancel := context.WithTimeout(w.jobsCtx, resolveTimeout)
	defer cancel()
	done := make(chan struct{})
	defer close(done)
	go func() {
		t := time.NewTicker(w.cfg.Topology.HeartbeatInterval())
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				_ = msg.InProgress()
			}
		}
	}()
	return w.cfg.Catalog.Resolve(ctx, req.Command, req.ModuleCommit)
}

// rejectedID names the job of a request that could not be decoded: its
// Nats-Msg-Id if that is a valid ID, else its stream sequence.
func rejectedID(msg jetstream.Msg, meta *jetstream.MsgMetadata) string {
	if id := msg.Headers().Get("Nats-Msg-Id"); schema.ValidJobID(id) {
		return id
	}
	return "seq-" + strconv.FormatUint(meta.Sequence.Stream, 10)
}

// reject records that a request can never run, publishes why, and
// terminates the message so that it is never delivered again.
func (w *Worker) reject(ctx context.Context, msg jetstream.Msg, id string, req schema.Request, reason error) {
	w.log.Warn("request rejected", "job", id, "subject", msg.Subject(), "reason", reason)
	now := time.Now().UTC()
	st := schema.JobState{
		JobID: id, State: schema.StateRejected, Command: req.Command, Principal: req.Principal,
		Queue: req.Queue, Params: req.Params, CreatedAt: req.CreatedAt, Attempt: 1, Worker: w.cfg.ID,
		FinishedAt: now, Error: reason.Error(), FinalSeq: 1,
	}
	final, err := w.settle(ctx, id, func(cur *schema.JobState) bool {
		st.CreatedAt = cur.CreatedAt
		*cur = st
		return true
	}, st)
	if err != nil {
		w.log.Error("record rejection", "job", id, "err", err)
	}
	w.publish(ctx, final.FinalEvent())
	_ = msg.Term()
}

type verdict int

const (
	verdictRun  verdict = iota // claimed: run it
	verdictOver                // already over: drop the request
	verdictBusy                // a live worker holds it: try later
)

// claim takes the job in the state bucket with compare-and-set, so that it
// runs on one worker at a time. It decides, from what the bucket says,
// whether to run the job, drop the request, or leave it for later.
func (w *Worker) claim(ctx context.Context, req schema.Request, cmd modules.Command, masked map[string]any) (schema.JobState, uint64, verdict, error) {
	for range 10 {
		now := time.Now().UTC()
		entry, err := w.state.Get(ctx, req.ID)
		var st schema.JobState
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
			// Published by a client that wrote no state entry (or whose
			// write is still on its way).
			st = schema.JobState{JobID: req.ID, State: schema.StateQueued, Command: req.Command,
				Principal: req.Principal, Queue: req.Queue, CreatedAt: req.CreatedAt}
		case err != nil:
			return st, 0, 0, fmt.Errorf("read state: %w", err)
		default:
			if st, err = schema.DecodeJobState(entry.Value()); err != nil {
				return st, 0, 0, err
			}
		}

		switch {
		case st.State.Terminal():
			return st, 0, verdictOver, nil
		case st.State == schema.StateRunning && now.Sub(st.HeartbeatAt) < w.cfg.Topology.Lease():
			return st, 0, verdictBusy, nil
		case st.State == schema.StateRunning:
			// Its worker is gone. What that worker started may still run
			// (a container outlives it): stop it first, so that the job
			// never runs twice at once.
			startedThere, err := w.clearLeftovers(ctx, req.ID)
			if err != nil {
				return st, 0, 0, err
			}
			if (!st.StartedAt.IsZero() || startedThere) && !st.Retry {
				// The command ran and may not run twice: record the loss.
				lost := lostState(st, now)
				if _, err := w.state.Update(ctx, req.ID, lost.Encode(), entry.Revision()); errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
					continue
				} else if err != nil {
					return st, 0, 0, fmt.Errorf("record lost worker: %w", err)
				}
				w.log.Warn("job's worker was lost while it ran", "job", req.ID, "lost_worker", st.Worker)
				return lost, 0, verdictOver, nil
			}
		}

		// Queued, or running on a worker that died before the command
		// started (or on one whose command may be retried): take it.
		claimed := st
		claimed.State = schema.StateRunning
		claimed.Attempt++
		claimed.Worker = w.cfg.ID
		claimed.HeartbeatAt = now
		claimed.StartedAt = time.Time{}
		claimed.Retry = cmd.Spec.Retry
		claimed.Executor = w.cfg.Executor.Name()
		claimed.Params = masked
		claimed.Commit = cmd.Commit
		var rev uint64
		if entry == nil {
			rev, err = w.state.Create(ctx, req.ID, claimed.Encode())
			if errors.Is(err, jetstream.ErrKeyExists) {
				continue
			}
		} else {
			rev, err = w.state.Update(ctx, req.ID, claimed.Encode(), entry.Revision())
			if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
				continue
			}
		}
		if err != nil {
			return st, 0, 0, fmt.Errorf("claim: %w", err)
		}
		return claimed, rev, verdictRun, nil
	}
	return schema.JobState{}, 0, 0, errors.New("claim: the state kept changing under us")
}

// lostState is st after its worker was lost while the command ran.
func lostState(st schema.JobState, now time.Time) schema.JobState {
	st.State, st.Reason, st.FinishedAt = schema.StateFailed, schema.ReasonWorkerLost, now
	st.Error = fmt.Sprintf("worker lost: %s stopped answering while the command ran", st.Worker)
	st.FinalSeq = observerSeq
	return st
}

// clearLeftovers stops and removes what earlier attempts of the job left in
// the executor, and says whether any of it had started the command.
func (w *Worker) clearLeftovers(ctx context.Context, job string) (started bool, err error) {
	r, ok := w.cfg.Executor.(Reapable)
	if !ok {
		return false, nil
	}
	leftovers, err := r.Leftovers(ctx, w.deployment, job)
	if err != nil {
		return false, fmt.Errorf("look for leftovers of earlier attempts: %w", err)
	}
	for _, l := range leftovers {
		started = started || l.Started
		if err := r.Remove(ctx, l); err != nil {
			return started, err
		}
		w.log.Warn("removed what a lost worker left of the job", "job", job, "attempt", l.Attempt, "lost_worker", l.Worker, "leftover", l.ID)
		w.publish(ctx, schema.Event{JobID: job, Attempt: l.Attempt, Seq: reapedSeq, Kind: schema.KindReaped,
			Worker: w.cfg.ID, Error: fmt.Sprintf("%s of worker %s removed before the job ran again", l.ID, l.Worker)})
	}
	return started, nil
}

// settle writes a terminal state with compare-and-set unless the job is
// already over, and returns the state that stands. mutate edits the current
// state (or fresh, for a job without one) and says whether to write it.
func (w *Worker) settle(ctx context.Context, id string, mutate func(*schema.JobState) bool, fresh schema.JobState) (schema.JobState, error) {
	if !schema.ValidJobID(id) {
		return fresh, nil // nothing can be stored under it; the event says it all
	}
	for range 10 {
		entry, err := w.state.Get(ctx, id)
		cur := fresh
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
			entry = nil
		case err != nil:
			return fresh, err
		default:
			if cur, err = schema.DecodeJobState(entry.Value()); err != nil {
				return fresh, err
			}
			if cur.State.Terminal() {
				return cur, nil
			}
		}
		if !mutate(&cur) {
			return cur, nil
		}
		if entry == nil {
			_, err = w.state.Create(ctx, id, cur.Encode())
			if errors.Is(err, jetstream.ErrKeyExists) {
				continue
			}
		} else {
			_, err = w.state.Update(ctx, id, cur.Encode(), entry.Revision())
			if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
				continue
			}
		}
		return cur, err
	}
	return fresh, errors.New("the state kept changing under us")
}

// settleDead records that a job will not be delivered again, and says why.
func (w *Worker) settleDead(ctx context.Context, id, why string) {
	now := time.Now().UTC()
	final, err := w.settle(ctx, id, func(cur *schema.JobState) bool {
		cur.State, cur.Reason, cur.Error, cur.FinishedAt = schema.StateDead, schema.ReasonDead, why, now
		cur.FinalSeq = observerSeq
		return true
	}, schema.JobState{JobID: id})
	if err != nil {
		w.log.Error("record dead job", "job", id, "err", err)
		final = schema.JobState{JobID: id, State: schema.StateDead, Reason: schema.ReasonDead, Error: why, FinishedAt: now, FinalSeq: observerSeq}
	}
	w.publish(ctx, final.FinalEvent())
}

// publish sends an event, retrying briefly: events are the audit trail.
func (w *Worker) publish(ctx context.Context, ev schema.Event) {
	if ev.Time.IsZero() {
		ev.Time = time.Now().UTC()
	}
	data, err := json.Marshal(ev)
	if err != nil {
		w.log.Error("encode event", "job", ev.JobID, "kind", ev.Kind, "err", err)
		return
	}
	subject := broker.EventSubject(ev.JobID, string(ev.Kind))
	for attempt := 1; ; attempt++ {
		_, err := w.js.Publish(ctx, subject, data, jetstream.WithMsgID(ev.MsgID()), jetstream.WithExpectStream(broker.EventsStream))
		if err == nil {
			return
		}
		if ctx.Err() != nil || attempt == 5 {
			w.log.Error("publish event", "job", ev.JobID, "kind", ev.Kind, "err", err)
			return
		}
		time.Sleep(time.Duration(attempt) * 100 * time.Millisecond)
	}
}

// run is one attempt of a claimed job.
type run struct {
	w      *Worker
	msg    jetstream.Msg
	req    schema.Request
	cmd    modules.Command
	params map[string]any
	log    *slog.Logger

	attempt int

	seqMu sync.Mutex
	seq   int

	// startedCh holds output back until the started event is out, so that
	// no log event comes before it; openOutput opens it in any case.
	startedCh  chan struct{}
	openOutput sync.Once

	mu    sync.Mutex // guards state and rev
	state schema.JobState
	rev   uint64
}

func (r *run) nextSeq() int {
	r.seqMu.Lock()
	defer r.seqMu.Unlock()
	r.seq++
	return r.seq
}

func (r *run) emit(ev schema.Event) {
	ev.JobID, ev.Attempt, ev.Seq, ev.Worker = r.req.ID, r.attempt, r.nextSeq(), r.w.cfg.ID
	ctx, cancel := context.WithTimeout(context.Background(), settleTimeout)
	defer cancel()
	r.w.publish(ctx, ev)
}

// update changes the job's state with compare-and-set while this worker
// holds it. It returns errClaimLost if another worker has taken it over.
func (r *run) update(ctx context.Context, mutate func(*schema.JobState)) (schema.JobState, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for range 10 {
		next := r.state
		mutate(&next)
		rev, err := r.w.state.Update(ctx, r.req.ID, next.Encode(), r.rev)
		if err == nil {
			r.state, r.rev = next, rev
			return next, nil
		}
		if !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return r.state, err
		}
		// Someone else wrote (a cancel request, most likely): re-read.
		entry, err := r.w.state.Get(ctx, r.req.ID)
		if err != nil {
			return r.state, err
		}
		cur, err := schema.DecodeJobState(entry.Value())
		if err != nil {
			return r.state, err
		}
		if cur.Worker != r.w.cfg.ID || cur.Attempt != r.attempt || cur.State != schema.StateRunning {
			return cur, errClaimLost
		}
		r.state, r.rev = cur, entry.Revision()
	}
	return r.state, errors.New("the state kept changing under us")
}

func (r *run) execute() {
	spec := r.cmd.Spec
	ctx, cancel := context.WithCancelCause(r.w.jobsCtx)
	defer cancel(nil)
	if timeout := effectiveTimeout(time.Duration(spec.Timeout), time.Duration(r.req.Timeout)); timeout > 0 {
		var cancelTimeout context.CancelFunc
		ctx, cancelTimeout = context.WithTimeoutCause(ctx, timeout, errTimedOut)
		defer cancelTimeout()
	}

	r.emit(schema.Event{Kind: schema.KindAccepted, State: schema.StateRunning, Command: r.req.Command,
		Principal: r.req.Principal, Queue: r.req.Queue, Params: spec.MaskParams(r.params), CreatedAt: r.req.CreatedAt, Commit: r.cmd.Commit})

	var keepers sync.WaitGroup
	keepers.Add(2)
	go func() { defer keepers.Done(); r.heartbeat(ctx, cancel) }()
	go func() { defer keepers.Done(); r.watchCancel(ctx, cancel) }()

	secrets := spec.SecretValues(r.params)
	r.startedCh = make(chan struct{})
	emitLog := func(stream schema.Stream, text string) {
		<-r.startedCh
		r.emit(schema.Event{Kind: schema.KindLog, Stream: stream, Data: text})
	}
	// The build log of a derived image comes before the command starts.
	buildLog := newOutput(schema.StreamBuild, func(stream schema.Stream, text string) {
		r.emit(schema.Event{Kind: schema.KindLog, Stream: stream, Data: text})
	}, secrets, r.w.cfg.LogBatchBytes, r.w.cfg.LogFlushInterval)
	defer buildLog.Close()
	stdout := newOutput(schema.Stdout, emitLog, secrets, r.w.cfg.LogBatchBytes, r.w.cfg.LogFlushInterval)
	stderr := newOutput(schema.Stderr, emitLog, secrets, r.w.cfg.LogBatchBytes, r.w.cfg.LogFlushInterval)
	job := &Job{
		ID: r.req.ID, Attempt: r.attempt, Worker: r.w.cfg.ID, Deployment: r.w.deployment, Command: r.req.Command, Spec: spec, Image: r.cmd.Image,
		Module: r.cmd.Module, Commit: r.cmd.Commit, ModuleDir: r.cmd.Dir, Build: r.cmd.Build, BuildLog: buildLog,
		Params: r.params, Env: r.env(), Stdout: stdout, Stderr: stderr,
		Starting: func() error { return r.starting(ctx) },
		Started:  func(info StartInfo) { r.started(info) },
	}
	outcome, runErr := r.w.cfg.Executor.Run(ctx, job)
	r.openOutput.Do(func() { close(r.startedCh) })
	stdout.Close()
	stderr.Close()
	cause := context.Cause(ctx)
	cancel(nil)
	keepers.Wait()

	switch {
	case errors.Is(cause, errClaimLost):
		r.log.Warn("another worker took the job over; abandoning this attempt")
		return // the request is theirs to acknowledge
	case errors.Is(cause, errDraining):
		r.release()
		return
	}
	r.finish(outcome, runErr, cause)
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
func (r *run) env() []string {
	env := []string{
		"WINCH_JOB_ID=" + r.req.ID,
		"WINCH_ATTEMPT=" + strconv.Itoa(r.attempt),
		"WINCH_COMMAND=" + r.req.Command,
		"WINCH_PRINCIPAL=" + r.req.Principal,
	}
	return append(env, schema.ParamEnv(r.params)...)
}

// starting records, before the command starts, that it may be running.
func (r *run) starting(ctx context.Context) error {
	now := time.Now().UTC()
	_, err := r.update(ctx, func(s *schema.JobState) { s.StartedAt, s.HeartbeatAt = now, now })
	if err != nil {
		return fmt.Errorf("record the start: %w", err)
	}
	return nil
}

// started announces the running command; its output may follow.
func (r *run) started(info StartInfo) {
	r.emit(schema.Event{Kind: schema.KindStarted, Executor: info.Executor, Image: info.Image})
	r.openOutput.Do(func() { close(r.startedCh) })
	r.log.Info("job started", "executor", info.Executor, "attempt", r.attempt)
}

// heartbeat keeps the request from being redelivered and the claim from
// looking lost while the command runs.
func (r *run) heartbeat(ctx context.Context, stop context.CancelCauseFunc) {
	t := time.NewTicker(r.w.cfg.Topology.HeartbeatInterval())
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := r.msg.InProgress(); err != nil {
			r.log.Warn("in-progress ack", "err", err)
		}
		st, err := r.update(ctx, func(s *schema.JobState) { s.HeartbeatAt = time.Now().UTC() })
		switch {
		case errors.Is(err, errClaimLost):
			stop(errClaimLost)
			return
		case err != nil && ctx.Err() == nil:
			r.log.Warn("heartbeat", "err", err)
		case st.CancelRequested:
			stop(errCancelled)
			return
		}
	}
}

// watchCancel stops the command as soon as a cancel is written.
func (r *run) watchCancel(ctx context.Context, stop context.CancelCauseFunc) {
	watcher, err := r.w.state.Watch(ctx, r.req.ID)
	if err != nil {
		if ctx.Err() == nil {
			r.log.Warn("watch for cancel; relying on heartbeats", "err", err)
		}
		return
	}
	defer func() { _ = watcher.Stop() }()
	for {
		select {
		case <-ctx.Done():
			return
		case e := <-watcher.Updates():
			if e == nil || e.Operation() != jetstream.KeyValuePut {
				continue
			}
			if st, err := schema.DecodeJobState(e.Value()); err == nil && st.CancelRequested {
				r.log.Info("cancel requested", "by", st.CancelledBy)
				stop(errCancelled)
				return
			}
		}
	}
}

// finish records how the job ended, publishes it, and acknowledges the
// request, in that order: a crash in between leaves a redelivery that finds
// the job over and publishes the same final event again.
func (r *run) finish(outcome Outcome, runErr, cause error) {
	ctx, cancel := context.WithTimeout(context.Background(), settleTimeout)
	defer cancel()
	now := time.Now().UTC()
	finalSeq := r.nextSeq() // nothing is emitted after this: the outputs are closed
	st, err := r.update(ctx, func(s *schema.JobState) {
		s.FinishedAt, s.FinalSeq, s.Reason = now, finalSeq, outcome.Reason
		switch {
		case errors.Is(cause, errCancelled):
			s.State, s.Error = schema.StateCancelled, "cancelled by "+s.CancelledBy
		case errors.Is(cause, errTimedOut):
			timeout := effectiveTimeout(time.Duration(r.cmd.Spec.Timeout), time.Duration(r.req.Timeout))
			s.State, s.Error = schema.StateTimedOut, "timed out after "+timeout.String()
		case runErr != nil:
			s.State, s.Error = schema.StateFailed, runErr.Error()
		default:
			s.State, s.ExitCode = schema.StateSucceeded, &outcome.ExitCode
			if outcome.ExitCode != 0 {
				s.State = schema.StateFailed
			}
			if outcome.Reason == schema.ReasonOOMKilled {
				s.Error = "killed: out of memory"
			}
		}
	})
	if errors.Is(err, errClaimLost) {
		r.log.Warn("another worker took the job over before it finished here")
		return
	}
	if err != nil {
		// The state could not be written; leave the request unacknowledged
		// so that a redelivery settles it.
		r.log.Error("record the end of the job", "err", err)
		return
	}
	r.w.publish(ctx, st.FinalEvent())
	if err := r.msg.DoubleAck(ctx); err != nil {
		r.log.Warn("ack", "err", err)
	}
	r.log.Info("job finished", "state", st.State, "exit_code", derefInt(st.ExitCode), "error", st.Error)
}

// release hands the job back to its queue: the worker is stopping and the
// command did not finish in time.
func (r *run) release() {
	ctx, cancel := context.WithTimeout(context.Background(), settleTimeout)
	defer cancel()
	if _, err := r.update(ctx, func(s *schema.JobState) {
		s.State, s.Worker, s.HeartbeatAt, s.StartedAt = schema.StateQueued, "", time.Time{}, time.Time{}
	}); err != nil {
		r.log.Error("hand the job back", "err", err)
	}
	r.emit(schema.Event{Kind: schema.KindReleased, State: schema.StateQueued, Error: "worker stopping: handed back to the queue"})
	if err := r.msg.Nak(); err != nil {
		r.log.Warn("nak", "err", err)
	}
	r.log.Info("job handed back to the queue")
}

func derefInt(p *int) any {
	if p == nil {
		return nil
	}
	return *p
}
