package worker

import (
	"context"
	"fmt"
	"sync/atomic"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/winchhq/winch/broker"
	"github.com/winchhq/winch/jobs"
)

// lane is one connection to the broker and the share of the worker's slots
// that runs on it: its own fetch loop over the queues' consumers, its
// runners, and the job state store and event publisher over it. A job is
// fetched, claimed, reported and acknowledged on one lane, so its events
// keep their order on the wire. One connection is one reading and one
// writing goroutine on each side (nats.go's reader and flusher, the
// server's readLoop and writeLoop); with one lane they bounded a busy
// worker well below its cores (BENCHMARKS.md, "One connection is a
// queue").
type lane struct {
	nc     *nats.Conn
	js     jetstream.JetStream
	store  *jobs.Store
	events *jobs.Publisher

	sources []*source
	// slots holds a token per job the lane runs or is fetching for.
	slots chan struct{}
	// handoff passes each request taken to one of the lane's runners, a
	// goroutine per slot that lives as long as the worker: a goroutine per
	// job would grow a new stack for every job.
	handoff chan jetstream.Msg
	// sinceBottomUp counts the jobs started since one was taken bottom-up
	// (see agingEvery).
	sinceBottomUp atomic.Int64
}

// openLanes makes the worker's lanes: its own connection, and
// Config.Connections-1 more opened with the same options (servers,
// credentials, TLS, inbox prefix), so the same permissions apply. The
// slots are shared out among them.
func (w *Worker) openLanes(ctx context.Context) error {
	n := w.cfg.Connections
	for i := range n {
		slots := w.cfg.Concurrency / n
		if i < w.cfg.Concurrency%n {
			slots++
		}
		l := &lane{nc: w.nc, js: w.js, store: w.store, events: w.events,
			slots: make(chan struct{}, slots), handoff: make(chan jetstream.Msg, slots)}
		if i > 0 {
			if err := w.connectLane(ctx, l, i); err != nil {
				w.closeLanes()
				return err
			}
		}
		w.lanes = append(w.lanes, l)
		var err error
		if l.sources, err = w.sources(ctx, l.js); err != nil {
			w.closeLanes()
			return err
		}
	}
	return nil
}

// connectLane opens lane i's own connection.
func (w *Worker) connectLane(ctx context.Context, l *lane, i int) error {
	opts := w.nc.Opts
	opts.Name = fmt.Sprintf("%s (lane %d)", opts.Name, i)
	nc, err := opts.Connect()
	if err != nil {
		return fmt.Errorf("open connection %d of %d to the broker (a worker of %d slots uses %d; fewer with WINCH_WORKER_CONNECTIONS): %w",
			i+1, w.cfg.Connections, w.cfg.Concurrency, w.cfg.Connections, err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return err
	}
	state, err := js.KeyValue(ctx, broker.StateBucket)
	if err != nil {
		nc.Close()
		return fmt.Errorf("open state bucket on connection %d: %w", i+1, err)
	}
	l.nc, l.js, l.store, l.events = nc, js, jobs.NewStore(state), jobs.NewPublisher(js, w.log)
	if w.cfg.Metrics != nil {
		l.events.CountWith(w.cfg.Metrics)
	}
	return nil
}

// closeLanes closes the connections that openLanes opened; what ran on
// them has ended.
func (w *Worker) closeLanes() {
	for _, l := range w.lanes {
		if l.nc != w.nc {
			l.nc.Close()
		}
	}
}
