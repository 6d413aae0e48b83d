package worker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

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
		ctx, cancel := context.WithTimeout(w.fetchCtx, w.cfg.ReapInterval)
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
	lease := w.cfg.Topology.Lease()
	for _, l := range leftovers {
		if time.Since(l.Created) < lease {
			continue // too young to judge: its worker may not have recorded it yet
		}
		entry, err := w.state.Get(ctx, l.JobID)
		var st schema.JobState
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
		case err != nil:
			return err
		default:
			if st, err = schema.DecodeJobState(entry.Value()); err != nil {
				return err
			}
		}
		holder := st.State == schema.StateRunning && st.Worker == l.Worker && st.Attempt == l.Attempt
		if holder && time.Since(st.HeartbeatAt) < lease {
			continue // its worker is alive and runs it
		}
		if err := r.Remove(ctx, l); err != nil {
			return err
		}
		w.log.Warn("reaped a leftover of a lost worker", "job", l.JobID, "attempt", l.Attempt, "lost_worker", l.Worker, "leftover", l.ID)
		w.publish(ctx, schema.Event{JobID: l.JobID, Attempt: l.Attempt, Seq: reapedSeq, Kind: schema.KindReaped,
			Worker: w.cfg.ID, Error: fmt.Sprintf("%s of worker %s stopped and removed: no live worker held it", l.ID, l.Worker)})
		if holder && l.Started && !st.Retry && entry != nil {
			// The command ran and is gone now: the job cannot finish.
			lost := lostState(st, time.Now().UTC())
			if _, err := w.state.Update(ctx, l.JobID, lost.Encode(), entry.Revision()); err == nil {
				w.publish(ctx, lost.FinalEvent())
			}
		}
	}
	return nil
}
