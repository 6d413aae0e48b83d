package worker

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/winchhq/winch/broker"
)

// source is one consumer the worker takes requests from: one queue, one
// priority. JetStream has no priority among the messages of one consumer,
// so each priority of a queue has its own subjects and consumer
// (broker.PriorityJobSubject), and the worker chooses among them.
type source struct {
	queue, priority string
	c               jetstream.Consumer
	// polling is true while a long poll of the source is out.
	polling atomic.Bool
}

// agingEvery: of every agingEvery requests a worker starts, at least one is
// taken bottom-up (low first, then normal, then high), so that lower
// priorities are never starved by a steady stream of higher ones.
const agingEvery = 10

// idlePoll is how long an idle worker's long polls wait before it looks
// again at every source. A worker with fewer free slots than sources
// (concurrency 1 serves three priorities of a queue) long-polls only the
// highest ones; it looks at the others every shortPoll, so that a request
// there waits that long at most, for a few pull requests a second.
const (
	idlePoll  = time.Second
	shortPoll = idlePoll / 4
)

// sources opens the consumers of the worker's queues, highest priority
// first, then in the order of the queues.
func (w *Worker) sources(ctx context.Context, js jetstream.JetStream) ([]*source, error) {
	per := make([][]jetstream.Consumer, len(w.cfg.Queues))
	for i, q := range w.cfg.Queues {
		cs, err := broker.EnsureQueues(ctx, js, q, w.topo)
		if err != nil {
			return nil, err
		}
		per[i] = cs
	}
	var out []*source
	for p, prio := range broker.Priorities {
		for i, q := range w.cfg.Queues {
			out = append(out, &source{queue: q, priority: prio, c: per[i][p]})
		}
	}
	return out, nil
}

// fetchLoop takes requests only when slots are free, as many at once as
// there are free slots, so that a worker never holds more requests than it
// runs (which would keep them from idle workers and let their ack timers
// run). Each time, it looks at its sources from the highest priority down
// (one start in agingEvery from the lowest up). When none has anything, it
// long-polls every source it has a free slot for at once, and looks again
// when one of them answers.
func (w *Worker) fetchLoop(l *lane) {
	defer w.loops.Done()
	wake := make(chan struct{}, 1)
	var polls sync.WaitGroup
	defer polls.Wait()
	failures := 0
	for {
		// Take one slot (waiting for it), then any others free now.
		select {
		case l.slots <- struct{}{}:
		case <-w.fetchCtx.Done():
			return
		}
		n := 1
	more:
		for n < cap(l.slots) {
			select {
			case l.slots <- struct{}{}:
				n++
			default:
				break more
			}
		}
		got, err := w.sweep(l, n)
		for range n - got {
			<-l.slots
		}
		if err != nil {
			if w.fetchCtx.Err() != nil {
				return
			}
			failures++
			wait := min(time.Duration(failures)*200*time.Millisecond, 5*time.Second)
			w.log.Warn("fetch failed; retrying", "err", err, "in", wait)
			sleepOrDone(w.fetchCtx, wait)
			continue
		}
		failures = 0
		if got > 0 {
			continue
		}
		w.pollIdle(l, wake, &polls)
		select {
		case <-wake:
		case <-w.fetchCtx.Done():
			return
		}
	}
}

// sweep takes up to n waiting requests, highest priority first, and starts
// a job for each.
func (w *Worker) sweep(l *lane, n int) (int, error) {
	sources := l.sources
	got := 0
	if l.sinceBottomUp.Load() >= agingEvery-1 {
		for i := len(sources) - 1; i >= 0 && got == 0; i-- {
			k, err := w.take(l, sources[i], 1)
			if err != nil {
				return got, err
			}
			got += k
		}
		if got > 0 {
			l.sinceBottomUp.Store(0)
		}
	}
	for _, s := range sources {
		if got >= n {
			break
		}
		k, err := w.take(l, s, n-got)
		if err != nil {
			return got, err
		}
		got += k
	}
	return got, nil
}

// take takes what source has waiting, up to n, without waiting.
func (w *Worker) take(l *lane, s *source, n int) (int, error) {
	batch, err := s.c.FetchNoWait(n)
	if err != nil {
		return 0, ignoreEmpty(err)
	}
	got := w.startAll(l, batch)
	l.sinceBottomUp.Add(int64(got))
	return got, ignoreEmpty(batch.Error())
}

// pollIdle starts a long poll (for one request, holding a slot for it) on
// each source not already polled, highest priority first, while slots are
// free. Each poll says on wake when it is over.
func (w *Worker) pollIdle(l *lane, wake chan<- struct{}, polls *sync.WaitGroup) {
	sources := l.sources
	wait := idlePoll
	if cap(l.slots) < len(sources) {
		wait = shortPoll
	}
	for _, s := range sources {
		if s.polling.Load() {
			continue
		}
		select {
		case l.slots <- struct{}{}:
		default:
			return
		}
		s.polling.Store(true)
		polls.Add(1)
		go func() {
			defer polls.Done()
			ctx, cancel := context.WithTimeout(w.fetchCtx, wait)
			defer cancel()
			got := 0
			batch, err := s.c.Fetch(1, jetstream.FetchContext(ctx))
			if err == nil {
				got = w.startAll(l, batch)
				err = batch.Error()
			}
			l.sinceBottomUp.Add(int64(got))
			if got == 0 {
				<-l.slots
			}
			if err := ignoreEmpty(err); err != nil && w.fetchCtx.Err() == nil && !errors.Is(err, jetstream.ErrNoHeartbeat) {
				w.log.Warn("long poll failed", "queue", s.queue, "priority", s.priority, "err", err)
				sleepOrDone(w.fetchCtx, time.Second)
			}
			s.polling.Store(false)
			select {
			case wake <- struct{}{}:
			default:
			}
		}()
	}
}
