package worker

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/winchhq/winch/broker"
	"github.com/winchhq/winch/jobs"
	"github.com/winchhq/winch/schema"
)

// decideControl decides one control request. Any worker takes them,
// whatever its queues, so that a queued job's cancel holds even when no
// worker serves its queue yet. The job's state decides (jobs.Cancel); the
// outcome is recorded in the state and the events, and answered to the
// client's inbox.
func (w *Worker) decideControl(m jetstream.Msg) {
	ctx, cancel := context.WithTimeout(context.Background(), settleTimeout)
	defer cancel()
	reply := schema.ControlReply{}
	defer func() {
		// Only inboxes are answered: a worker publishes with a worker's
		// rights, and must not be made to write anywhere else.
		to := m.Headers().Get(broker.ControlReplyHeader)
		if reply.Outcome != "" && strings.HasPrefix(to, "_INBOX.") {
			data, _ := json.Marshal(reply)
			_ = w.nc.Publish(to, data)
		}
	}()
	parts, ok := broker.ParseControlSubject(m.Subject())
	creq, err := schema.DecodeControlRequest(m.Data())
	switch {
	case !ok:
		err = fmt.Errorf("subject %s is not winch.control.<action>.<job>.<principal>", m.Subject())
	case err == nil && (creq.Principal != parts.Principal || creq.JobID != parts.Job || string(creq.Action) != parts.Action):
		err = fmt.Errorf("the request says %s of job %s by %s, but was published on %s: the subject names who asked",
			creq.Action, creq.JobID, creq.Principal, m.Subject())
	}
	if err != nil {
		reply = schema.ControlReply{JobID: parts.Job, Outcome: schema.OutcomeRefused, Error: err.Error()}
		w.log.Warn("control request refused", "subject", m.Subject(), "err", err)
		if schema.ValidJobID(parts.Job) && schema.ValidPrincipal(parts.Principal) {
			w.recordRefusal(ctx, m, schema.JobState{JobID: parts.Job}, parts.Principal, err.Error())
		}
		_ = m.Term()
		return
	}
	reply, err = w.cancelJob(ctx, m, creq.JobID, creq.Principal)
	if err != nil {
		w.log.Error("decide a cancel; will retry", "job", creq.JobID, "err", err)
		reply = schema.ControlReply{} // undecided: no answer; the client says so after its wait
		_ = m.NakWithDelay(time.Second)
		return
	}
	_ = m.Ack()
}

// cancelJob decides a cancel of job by principal; m is the control
// request, nil when a fan-out's driver cancels its children.
func (w *Worker) cancelJob(ctx context.Context, m jetstream.Msg, job, by string) (schema.ControlReply, error) {
	admin := w.cfg.Roles.Has(by, jobs.AdminRole)
	var outcome schema.ControlOutcome
	var queuedSeq uint64 // the request of a job that had no state
	entry, err := w.store.Update(ctx, job, nil, func(cur jobs.Entry) (schema.JobState, bool, error) {
		st := cur.State
		if !cur.Exists() {
			// Nobody has claimed it: it is queued if its request is.
			s, err := w.js.Stream(ctx, broker.JobsStream)
			if err != nil {
				return st, false, err
			}
			queued, seq, found, err := jobs.UnclaimedJob(ctx, s, job)
			if err != nil || !found {
				outcome = schema.OutcomeNotFound
				return st, false, err
			}
			st, queuedSeq = queued, seq
		}
		next, o, write := jobs.Cancel(st, by, admin, time.Now().UTC())
		outcome = o
		return next, write, nil
	})
	if err != nil {
		return schema.ControlReply{}, err
	}
	st := entry.State
	reply := schema.ControlReply{JobID: job, Outcome: outcome, State: st.State}
	switch outcome {
	case schema.OutcomeNotFound:
		reply.Error = "no such job: " + job
	case schema.OutcomeFinished:
		reply.Error = fmt.Sprintf("job %s already finished: it is %s", job, st.State)
	case schema.OutcomeRefused:
		reply.Error = jobs.RefusalReason(st, by)
		w.log.Warn("cancel refused", "job", job, "by", by, "owner", st.Principal)
		w.recordRefusal(ctx, m, st, by, reply.Error)
	case schema.OutcomeCancelled:
		w.log.Info("queued job cancelled", "job", job, "by", by)
		w.publish(ctx, st.FinalEvent())
		if st.WaitingFor != "" {
			// It waited for a slot: give its place in line up.
			w.freeSlot(ctx, st.WaitingFor, job)
			_ = w.limits.DropRequest(ctx, job)
		}
		w.tellParent(ctx, st)
		if queuedSeq != 0 {
			// Its request will never run: take it out of the queue now.
			if s, err := w.js.Stream(ctx, broker.JobsStream); err == nil {
				_ = s.DeleteMsg(ctx, queuedSeq)
			}
		}
	case schema.OutcomeStopping:
		w.log.Info("cancel requested", "job", job, "by", by, "holder", st.Worker)
		// Ring the holder; it reads the state, so a lost ring costs only
		// time (it looks every heartbeat interval).
		_ = w.nc.Publish(broker.WorkerSubject(st.Session), []byte(job))
	}
	return reply, nil
}

// recordRefusal writes the audit record of a refused control request.
func (w *Worker) recordRefusal(ctx context.Context, m jetstream.Msg, st schema.JobState, by, why string) {
	seq := jobs.ObserverSeq + 1
	if m == nil {
		return // a fan-out's driver cancels as the owner: never refused
	}
	if meta, err := m.Metadata(); err == nil {
		seq += int(meta.Sequence.Stream % jobs.ObserverSeq)
	}
	w.publish(ctx, schema.Event{JobID: st.JobID, Attempt: st.Attempt, Seq: seq, Kind: schema.KindCancelRefused,
		Principal: by, Worker: w.cfg.ID, Error: why, Command: st.Command, Queue: st.Queue})
}
