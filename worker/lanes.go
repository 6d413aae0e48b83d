package worker

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/winchhq/winch/broker"
	"github.com/winchhq/winch/jobs"
)

// lane is one connection to the broker with the job state store and the
// event publisher over it. A job's claim, events and end go out on one
// lane, so that they keep their order on the wire; runners are spread over
// the lanes so that one connection's reader and writer (in the client and
// in the server) do not bound the whole worker.
type lane struct {
	nc     *nats.Conn
	store  *jobs.Store
	events *jobs.Publisher
}

// openLanes makes the worker's lanes: its own connection, and
// Config.Connections-1 more opened with the same options (servers,
// credentials, TLS, inbox prefix), so the same permissions apply.
func (w *Worker) openLanes(ctx context.Context) error {
	w.lanes = []lane{{nc: w.nc, store: w.store, events: w.events}}
	for i := 1; i < w.cfg.Connections; i++ {
		l, err := w.openLane(ctx, i)
		if err != nil {
			w.closeLanes()
			return err
		}
		w.lanes = append(w.lanes, l)
	}
	return nil
}

func (w *Worker) openLane(ctx context.Context, i int) (lane, error) {
	opts := w.nc.Opts
	opts.Name = fmt.Sprintf("%s (lane %d)", opts.Name, i)
	nc, err := opts.Connect()
	if err != nil {
		return lane{}, fmt.Errorf("open connection %d of %d to the broker: %w", i+1, w.cfg.Connections, err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return lane{}, err
	}
	state, err := js.KeyValue(ctx, broker.StateBucket)
	if err != nil {
		nc.Close()
		return lane{}, fmt.Errorf("open state bucket on connection %d: %w", i+1, err)
	}
	events := jobs.NewPublisher(js, w.log)
	if w.cfg.Metrics != nil {
		events.CountWith(w.cfg.Metrics)
	}
	return lane{nc: nc, store: jobs.NewStore(state), events: events}, nil
}

// closeLanes closes the connections that openLanes opened; the runners
// that wrote on them have ended.
func (w *Worker) closeLanes() {
	for _, l := range w.lanes {
		if l.nc != w.nc {
			l.nc.Close()
		}
	}
	w.lanes = nil
}
