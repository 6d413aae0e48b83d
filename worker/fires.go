package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/winchhq/winch/broker"
	"github.com/winchhq/winch/schedule"
	"github.com/winchhq/winch/schema"
)

// relayFire turns one fire of a schedule (stored by the server on
// winch.fires.<name>.<owner>) into an ordinary request on the owner's
// subject, named by the schedule and the fire's due time, so that however
// many workers see the fire, and however often, its job runs once (the
// request's Nats-Msg-Id, then the state bucket). The request is then
// admitted like any other: the owner's roles and the parameters are checked
// again when it runs. A fire that is late (the broker was down at its time,
// or no worker ran) follows the schedule's catch-up choice.
func (w *Worker) relayFire(m jetstream.Msg) {
	ctx, cancel := context.WithTimeout(w.jobsCtx, settleTimeout)
	defer cancel()
	meta, err := m.Metadata()
	if err != nil {
		_ = m.Term()
		return
	}
	fire := schedule.Fire{
		Subject: m.Subject(), Scheduler: m.Headers().Get(schedule.HeaderScheduler),
		Next: m.Headers().Get(schedule.HeaderScheduleNext), Data: m.Data(), Stamp: meta.Timestamp, Taken: time.Now(),
	}
	// Only an interval needs the last fire's record to tell a late fire,
	// and only when the schedule was not written (added again, resumed)
	// since that fire: then it counts from the write.
	if d, err := schedule.Decode(fire.Data); err == nil && d.Every != 0 {
		if last, ok, err := w.schedules.LastRun(ctx, d.Name, d.Owner); err == nil && ok &&
			fire.Stamp.Sub(last.Next) > w.cfg.ScheduleGrace {
			if e, err := w.schedules.Get(ctx, d.Name); err == nil && e.Owner == d.Owner && e.Stored.Before(last.Relayed) {
				fire.Expected = last.Next
			}
		}
	}
	fired, err := schedule.Relay(fire)
	if err != nil {
		w.refuseFire(ctx, fire, err)
		_ = m.Term()
		return
	}
	run := schedule.Run{Job: fired.Request.ID, Fire: fired.Nominal.UTC(), Relayed: time.Now().UTC()}
	if next, err := time.Parse(time.RFC3339Nano, fire.Next); err == nil {
		run.Next = next.UTC()
	}
	if fired.Repeated {
		run.Skipped = "the hour a daylight-saving change repeats: this wall-clock time already fired, an hour ago"
	} else if fired.Late > w.cfg.ScheduleGrace {
		switch {
		case fired.Def.CatchUp == schedule.CatchUpSkip:
			run.Skipped = fmt.Sprintf("missed: due %s, came %s late; the schedule's catch-up is skip",
				fired.Nominal.UTC().Format(time.RFC3339), fired.Late.Round(time.Second))
		case w.laterFire(ctx, fired.Def, meta.Sequence.Stream):
			run.Skipped = "missed, and a later missed fire of the schedule runs instead (catch-up run-once)"
		}
	}
	if run.Skipped == "" {
		if err := w.publishFire(ctx, fired); err != nil {
			w.log.Warn("relay a fire; will retry", "schedule", fired.Def.Name, "job", fired.Request.ID, "err", err)
			_ = m.NakWithDelay(time.Second)
			return
		}
	} else {
		w.log.Info("fire skipped", "schedule", fired.Def.Name, "owner", fired.Def.Owner, "due", fired.Nominal, "why", run.Skipped)
	}
	if err := w.schedules.Record(ctx, fired.Def.Name, fired.Def.Owner, run); err != nil {
		w.log.Warn("record a fire", "schedule", fired.Def.Name, "err", err)
	}
	_ = m.Ack()
}

func (w *Worker) publishFire(ctx context.Context, fired schedule.Fired) error {
	data, err := json.Marshal(fired.Request)
	if err != nil {
		return err
	}
	msg := nats.NewMsg(fired.Subject)
	msg.Data = data
	msg.Header.Set(jetstream.MsgIDHeader, fired.Request.ID)
	_, err = w.js.PublishMsg(ctx, msg)
	return err
}

// laterFire says whether a genuine fire of the same schedule came after
// the one at seq (several were missed: only the latest runs). A fire that
// another principal's schedule planted on the subject does not count.
func (w *Worker) laterFire(ctx context.Context, d schedule.Definition, seq uint64) bool {
	later, err := w.schedules.LaterFire(ctx, d.Name, d.Owner, seq)
	if err != nil {
		w.log.Warn("look for a later fire; running this one", "schedule", d.Name, "err", err)
	}
	return later
}

// refuseFire records a fire that is not its owner's schedule's as a
// rejected job of whoever published the schedule (the scheduler subject's
// owner), so that the attempt is audited; nothing runs.
func (w *Worker) refuseFire(ctx context.Context, fire schedule.Fire, why error) {
	by := "unknown"
	name := "forged"
	if p, ok := broker.ParseScheduleSubject(fire.Scheduler); ok && schema.ValidPrincipal(p.Owner) {
		by = p.Owner
	}
	if p, ok := broker.ParseScheduleSubject(fire.Subject); ok && schedule.ValidName(p.Name) {
		name = p.Name
	}
	id := schedule.JobID(name, by, fire.Stamp.Truncate(time.Second))
	w.log.Warn("fire refused", "subject", fire.Subject, "scheduler", fire.Scheduler, "err", why)
	req := schema.Request{ID: id, Principal: by, CreatedAt: fire.Stamp.UTC()}
	if d, err := schedule.Decode(fire.Data); err == nil {
		req.Command, req.Queue, req.Priority = d.Request.Command, d.Request.Queue, d.Request.Priority
		if schedule.ValidName(d.Name) {
			req.Schedule = d.Name
		}
	}
	w.reject(ctx, &rejection{id: id, req: req, principal: by, reason: fmt.Errorf("fire refused: %w", why)})
}

// relayConcurrency bounds the fires one worker relays at once: a thousand
// schedules due the same second are a thousand requests to publish.
const relayConcurrency = 32

// relayLoop takes fires until the worker stops, relaying a batch at a time,
// its fires at once.
func (w *Worker) relayLoop(c jetstream.Consumer) {
	defer w.loops.Done()
	sem := make(chan struct{}, relayConcurrency)
	var wg sync.WaitGroup
	defer wg.Wait()
	for w.fetchCtx.Err() == nil {
		ctx, cancel := context.WithTimeout(w.fetchCtx, 5*time.Second)
		batch, err := c.Fetch(relayConcurrency*4, jetstream.FetchContext(ctx))
		if err != nil {
			cancel()
			if w.fetchCtx.Err() == nil {
				w.log.Warn("fetch fires", "err", err)
				sleepOrDone(w.fetchCtx, time.Second)
			}
			continue
		}
		for m := range batch.Messages() {
			sem <- struct{}{}
			wg.Go(func() {
				defer func() { <-sem }()
				w.relayFire(m)
			})
		}
		cancel()
	}
}

// errNoSchedules: the fleet's topology has no schedules stream (made by an
// older winch); run `winch init`.
var errNoSchedules = errors.New("the schedules stream is missing: run `winch init` (or start `winch broker`/`winch dev` once) to create it")
