package worker

import (
	"context"
	"time"
)

// pendingEvery is how often a worker with metrics reads its queues'
// consumers for the pending gauge: a few requests to the server per queue,
// whatever the number of jobs.
const pendingEvery = 5 * time.Second

// pendingLoop keeps the metrics' count of requests waiting in each of the
// worker's queues and priorities, read at start and every pendingEvery.
func (w *Worker) pendingLoop(sources []*source) {
	defer w.loops.Done()
	t := time.NewTicker(pendingEvery)
	defer t.Stop()
	for {
		for _, src := range sources {
			ctx, cancel := context.WithTimeout(w.fetchCtx, pendingEvery)
			info, err := src.c.Info(ctx)
			cancel()
			if err != nil {
				if w.fetchCtx.Err() == nil {
					w.log.Debug("read queue consumer for metrics", "queue", src.queue, "priority", src.priority, "err", err)
				}
				continue
			}
			prio := src.priority
			if prio == "" {
				prio = "normal"
			}
			w.cfg.Metrics.Pending(src.queue, prio, info.NumPending)
		}
		select {
		case <-w.fetchCtx.Done():
			return
		case <-t.C:
		}
	}
}
