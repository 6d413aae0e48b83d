package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/winchhq/winch/broker"
	"github.com/winchhq/winch/jobs"
	"github.com/winchhq/winch/schema"
)

// Fan-out (docs/ARCHITECTURE.md, "Fan-out"): the worker that claims a
// parent drives it without holding one of its slots (the parent runs
// nothing; its children do, on any worker of the queue). Driving is:
// publish the next children while fewer than Parallel are unfinished, hear
// of their ends (a doorbell rung by the child's worker, and a look at the
// unfinished ones every heartbeat interval, which also keeps the parent's
// request in progress), stop launching on a cancel or, with fail-fast, a
// failure, cancel the unfinished children then, and end the parent when
// every launched child has ended.

// childHeader names, on a doorbell, the child of a fan-out that ended.
const childHeader = "Winch-Child"

// driver drives one fan-out parent on this worker.
type driver struct {
	w      *Worker
	d      delivery
	req    schema.Request
	adm    admission
	log    *slog.Logger
	events *jobs.Attempt
	// ring hears of a child's end (its id) or of the parent's cancel ("").
	ring chan string

	entry      jobs.Entry
	prog       schema.FanoutProgress
	unfinished map[string]bool
	cancelled  bool // the unfinished children were cancelled
}

func (w *Worker) startFanout(d delivery, adm admission, entry jobs.Entry, log *slog.Logger) {
	dr := &driver{w: w, d: d, req: adm.req, adm: adm, log: log, entry: entry, ring: make(chan string, 256),
		events: w.events.Attempt(adm.req.ID, entry.State.Attempt, w.cfg.ID), unfinished: map[string]bool{}}
	w.runningMu.Lock()
	w.drivers[adm.req.ID] = dr
	w.runningMu.Unlock()
	w.driving.Go(func() {
		defer func() {
			w.runningMu.Lock()
			delete(w.drivers, adm.req.ID)
			w.runningMu.Unlock()
		}()
		dr.run()
	})
}

// ringDriver passes a doorbell to the driver of parent on this worker;
// it reports whether there is one.
func (w *Worker) ringDriver(parent, child string) bool {
	w.runningMu.Lock()
	dr := w.drivers[parent]
	w.runningMu.Unlock()
	if dr == nil {
		return false
	}
	select {
	case dr.ring <- child:
	default: // full: the next look at the unfinished children finds it
	}
	return true
}

// tellParent rings the driver of the fan-out whose child ended in st.
func (w *Worker) tellParent(ctx context.Context, st schema.JobState) {
	if st.ParentID == "" {
		return
	}
	parent, err := w.store.Get(ctx, st.ParentID)
	if err != nil || parent.State.Session == "" {
		return // the driver looks every heartbeat interval anyway
	}
	msg := nats.NewMsg(broker.WorkerSubject(parent.State.Session))
	msg.Data = []byte(st.ParentID)
	msg.Header.Set(childHeader, st.JobID)
	_ = w.nc.PublishMsg(msg)
}

func (dr *driver) id() string { return dr.req.ID }

// update applies a transition only the holder may make.
func (dr *driver) update(ctx context.Context, transition func(schema.JobState) (schema.JobState, error)) (schema.JobState, error) {
	known := dr.entry
	entry, err := dr.w.store.Update(ctx, dr.id(), &known, func(cur jobs.Entry) (schema.JobState, bool, error) {
		next, err := transition(cur.State)
		return next, err == nil, err
	})
	if err != nil {
		return entry.State, err
	}
	dr.entry = entry
	return entry.State, nil
}

func (dr *driver) run() {
	w := dr.w
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req := dr.req
	st := dr.entry.State
	dr.prog = schema.FanoutProgress{Param: req.Each.Param, Total: len(req.Each.Values), Parallel: max(req.Parallel, 1), FailFast: req.FailFast}
	dr.events.Emit(schema.Event{Kind: schema.KindAccepted, State: schema.StateRunning, Command: req.Command, Principal: req.Principal,
		Queue: req.Queue, Priority: req.Priority, Schedule: req.Schedule, Params: dr.adm.masked, CreatedAt: req.CreatedAt, Commit: dr.adm.cmd.Commit, Fanout: &dr.prog, Executor: "fanout"})
	dr.events.Emit(schema.Event{Kind: schema.KindStarted, Executor: "fanout"})
	if err := dr.resume(ctx, st.Attempt > 1); err != nil {
		dr.log.Error("count the fan-out's children; it will be redelivered", "err", err)
		_ = dr.events.Flush(ctx)
		_ = dr.d.Nak(time.Second)
		return
	}
	dr.log.Info("fan-out driving", "children", dr.prog.Total, "parallel", dr.prog.Parallel, "launched", dr.prog.Launched)
	tick := time.NewTicker(w.topo.HeartbeatInterval())
	defer tick.Stop()
	written := schema.FanoutProgress{}
	for {
		if jobs.Stopping(dr.entry.State, dr.prog) {
			if !dr.cancelled {
				dr.cancelChildren(ctx)
			}
		} else if err := dr.launch(ctx); err != nil {
			dr.log.Warn("launch a child; trying again", "err", err)
		}
		if dr.prog.Running() == 0 && (dr.prog.Launched == dr.prog.Total || jobs.Stopping(dr.entry.State, dr.prog)) {
			dr.finish()
			return
		}
		if dr.prog != written {
			p := dr.prog
			_, err := dr.update(ctx, func(cur schema.JobState) (schema.JobState, error) {
				return jobs.Progress(cur, w.session, dr.entry.State.Attempt, p)
			})
			switch {
			case errors.Is(err, jobs.ErrNotHolder):
				dr.log.Warn("another worker took the fan-out over")
				return
			case err != nil:
				dr.log.Warn("record the fan-out's progress", "err", err)
			default:
				written = p
			}
		}
		select {
		case <-w.fetchCtx.Done():
			dr.handBack()
			return
		case child := <-dr.ring:
			if child == "" {
				if !dr.checkParent(ctx) {
					return
				}
				continue
			}
			dr.checkChild(ctx, child)
		drain:
			for {
				select {
				case c := <-dr.ring:
					if c != "" {
						dr.checkChild(ctx, c)
					} else if !dr.checkParent(ctx) {
						return
					}
				default:
					break drain
				}
			}
		case <-tick.C:
			_ = dr.d.InProgress()
			if !dr.checkParent(ctx) {
				return
			}
			for c := range dr.unfinished {
				dr.checkChild(ctx, c)
			}
		}
	}
}

// resume counts what an earlier driver of the parent did, from the
// children themselves: launches are in order, so the first child that
// neither is in the queue nor has a state was never launched.
func (dr *driver) resume(ctx context.Context, earlier bool) error {
	if !earlier {
		return nil
	}
	defer keepInProgress(dr.d, dr.w.topo.HeartbeatInterval())() // 10,000 children take a while
	stream, err := dr.w.js.Stream(ctx, broker.JobsStream)
	if err != nil {
		return err
	}
	for i := range dr.prog.Total {
		id := schema.FanoutChildID(dr.id(), i)
		// The queue first: a child taken from it has its state written
		// before its request leaves the queue.
		_, _, queued, err := jobs.UnclaimedJob(ctx, stream, id)
		if err != nil {
			return err
		}
		e, err := dr.w.store.Get(ctx, id)
		if err != nil {
			return err
		}
		if !queued && !e.Exists() {
			break
		}
		dr.prog.Launched++
		if e.Exists() && e.State.State.Terminal() {
			dr.prog = jobs.CountChild(dr.prog, e.State.State)
		} else {
			dr.unfinished[id] = true
		}
	}
	dr.log.Info("fan-out taken over", "launched", dr.prog.Launched, "done", dr.prog.Done())
	return nil
}

// launch publishes the next children while fewer than Parallel are
// unfinished.
func (dr *driver) launch(ctx context.Context) error {
	if dr.prog.Running() >= dr.prog.Parallel || dr.prog.Launched >= dr.prog.Total {
		return nil
	}
	defer keepInProgress(dr.d, dr.w.topo.HeartbeatInterval())() // a large parallel launches many at once
	for dr.prog.Running() < dr.prog.Parallel && dr.prog.Launched < dr.prog.Total {
		child := dr.req.FanoutChild(dr.prog.Launched)
		child.CreatedAt = time.Now().UTC()
		data, err := json.Marshal(child)
		if err != nil {
			return err
		}
		msg := nats.NewMsg(broker.PriorityJobSubject(child.Queue, child.Priority.SubjectToken(), child.ID, child.Principal))
		msg.Data = data
		msg.Header.Set(jetstream.MsgIDHeader, child.ID)
		if _, err := dr.w.js.PublishMsg(ctx, msg); err != nil {
			return fmt.Errorf("publish child %s: %w", child.ID, err)
		}
		dr.unfinished[child.ID] = true
		dr.prog.Launched++
	}
	return nil
}

// checkChild counts the child if it ended.
func (dr *driver) checkChild(ctx context.Context, id string) {
	if !dr.unfinished[id] {
		return
	}
	e, err := dr.w.store.Get(ctx, id)
	if err != nil {
		dr.log.Warn("read a child's state", "child", id, "err", err)
		return
	}
	if e.State.State.Terminal() {
		delete(dr.unfinished, id)
		dr.prog = jobs.CountChild(dr.prog, e.State.State)
	}
}

// checkParent reads the parent's state: a cancel stops the launches; a
// takeover by another worker stops this driver (false).
func (dr *driver) checkParent(ctx context.Context) bool {
	e, err := dr.w.store.Get(ctx, dr.id())
	if err != nil {
		dr.log.Warn("read the fan-out's state", "err", err)
		return true
	}
	if !jobs.Holds(e.State, dr.w.session, dr.entry.State.Attempt) {
		dr.log.Warn("another worker took the fan-out over")
		return false
	}
	dr.entry = e
	return true
}

// cancelChildren cancels the unfinished children, as the parent's owner.
func (dr *driver) cancelChildren(ctx context.Context) {
	dr.cancelled = true
	for id := range dr.unfinished {
		if _, err := dr.w.cancelJob(ctx, nil, id, dr.req.Principal); err != nil {
			dr.log.Warn("cancel a child; the next look tries again", "child", id, "err", err)
			dr.cancelled = false
		}
	}
}

// finish ends the parent once no child runs, publishes its end and
// acknowledges its request.
func (dr *driver) finish() {
	ctx, cancel := context.WithTimeout(context.Background(), endTimeout)
	defer cancel()
	seq := dr.events.NextSeq()
	p := dr.prog
	st, err := dr.update(ctx, func(cur schema.JobState) (schema.JobState, error) {
		return jobs.FinishFanout(cur, dr.w.session, dr.entry.State.Attempt, p, seq, time.Now().UTC())
	})
	if err != nil {
		dr.log.Error("record the end of the fan-out; it will be redelivered", "err", err)
		_ = dr.events.Flush(ctx)
		return
	}
	dr.events.Emit(st.FinalEvent())
	if err := dr.events.Flush(ctx); err != nil {
		dr.log.Error("publish the fan-out's end; it will be redelivered", "err", err)
		return
	}
	_ = dr.d.Ack()
	dr.log.Info("fan-out finished", "state", st.State, "progress", p.String())
}

// handBack gives the parent back to its queue: the worker stops, and
// another one goes on from where this one was.
func (dr *driver) handBack() {
	ctx, cancel := context.WithTimeout(context.Background(), settleTimeout)
	defer cancel()
	seq := dr.events.NextSeq()
	_, err := dr.update(ctx, func(cur schema.JobState) (schema.JobState, error) {
		next, _, err := jobs.Release(cur, dr.w.session, dr.entry.State.Attempt, "worker "+dr.w.cfg.ID+" stopped", seq, time.Now().UTC())
		return next, err
	})
	if err == nil {
		dr.events.Emit(schema.Event{Seq: seq, Kind: schema.KindReleased, State: schema.StateQueued, Error: "worker " + dr.w.cfg.ID + " stopped: the fan-out goes on on another worker"})
	}
	_ = dr.events.Flush(ctx)
	_ = dr.d.Nak(0)
}

// cancelChildren cancels every unfinished child of a fan-out parent that
// ended cancelled without its driver (it died): those it may have
// launched, by its last recorded progress.
func (w *Worker) cancelChildren(ctx context.Context, parent schema.JobState) {
	if parent.Fanout == nil {
		return
	}
	last := min(parent.Fanout.Launched+parent.Fanout.Parallel, parent.Fanout.Total)
	for i := range last {
		if _, err := w.cancelJob(ctx, nil, schema.FanoutChildID(parent.JobID, i), parent.Principal); err != nil {
			w.log.Warn("cancel a child of a cancelled fan-out", "parent", parent.JobID, "err", err)
		}
	}
}
