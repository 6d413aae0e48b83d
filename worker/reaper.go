package worker

import (
	"context"
	"fmt"
	"time"

	"github.com/winchhq/winch/jobs"
	"github.com/winchhq/winch/schema"
)

// reapLoop removes, at start and then every ReapInterval, what dead workers
// left behind in the executor (containers whose attempt no live worker
// holds), for executors that can leave anything.
func (w *Worker) reapLoop(r Reapable) {
	defer w.loops.Done()
	t := time.NewTicker(w.cfg.ReapInterval)
	defer t.Stop()
	for {
		// A pass may take longer than the interval (stopping a container
		// waits out its kill grace); the next one starts when it is done.
		ctx, cancel := context.WithTimeout(w.fetchCtx, max(w.cfg.ReapInterval, settleTimeout))
		if err := w.reap(ctx, r); err != nil && w.fetchCtx.Err() == nil {
			w.log.Warn("reap leftovers", "err", err)
		}
		cancel()
		select {
		case <-w.fetchCtx.Done():
			return
		case <-t.C:
		}
	}
}

func (w *Worker) reap(ctx context.Context, r Reapable) error {
	leftovers, err := r.Leftovers(ctx, w.deployment, "")
	if err != nil {
		return err
	}
	lease := w.topo.Lease()
	for _, l := range leftovers {
		if time.Since(l.Created) < lease {
			continue // too young to judge: its worker may not have recorded it yet
		}
		entry, err := w.store.Get(ctx, l.JobID)
		if err != nil {
			return err
		}
		st := entry.State
		holder := st.State == schema.StateRunning && st.Worker == l.Worker && st.Attempt == l.Attempt
		if holder {
			alive, _, err := w.sessions.Alive(ctx, st.Session)
			if err != nil {
				return err
			}
			if alive {
				continue // its worker is alive and runs it
			}
		}
		if err := w.reapOne(ctx, r, l, entry, holder); err != nil {
			return err
		}
	}
	return nil
}

// reapOne removes one leftover and records what it means for its job. Once
// the removal has begun, the record is made even if the pass's context ends:
// a reaped command that may not run twice must end its job.
func (w *Worker) reapOne(ctx context.Context, r Reapable, l Leftover, entry jobs.Entry, holder bool) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), settleTimeout)
	defer cancel()
	if err := r.Remove(ctx, l); err != nil {
		return err
	}
	w.log.Warn("reaped a leftover of a lost worker", "job", l.JobID, "attempt", l.Attempt, "lost_worker", l.Worker, "leftover", l.ID)
	w.publish(ctx, schema.Event{JobID: l.JobID, Attempt: l.Attempt, Seq: jobs.ReapedSeq, Kind: schema.KindReaped,
		Worker: w.cfg.ID, Error: fmt.Sprintf("%s of worker %s stopped and removed: no live worker held it", l.ID, l.Worker)})
	st := entry.State
	if !holder || !l.Started || st.Retry {
		return nil
	}
	// The command ran, may not run twice, and is gone now: the job cannot
	// finish.
	lost, err := w.store.Update(ctx, l.JobID, &entry, func(cur jobs.Entry) (schema.JobState, bool, error) {
		if !jobs.Holds(cur.State, st.Session, st.Attempt) {
			return cur.State, false, nil
		}
		return jobs.Lose(cur.State, time.Now().UTC()), true, nil
	})
	if err != nil {
		w.log.Error("record a reaped job's loss; a redelivery of its request will", "job", l.JobID, "err", err)
		return nil
	}
	if lost.State.Reason == schema.ReasonWorkerLost {
		w.publish(ctx, lost.State.FinalEvent())
	}
	return nil
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
		w.publish(ctx, schema.Event{JobID: job, Attempt: l.Attempt, Seq: jobs.ReapedSeq, Kind: schema.KindReaped,
			Worker: w.cfg.ID, Error: fmt.Sprintf("%s of worker %s removed before the job ran again", l.ID, l.Worker)})
	}
	return started, nil
}
