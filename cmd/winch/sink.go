package main

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/winchhq/winch/audit"
	"github.com/winchhq/winch/broker"
	"github.com/winchhq/winch/metrics"
)

// SinkCmd is `winch sink`: events from JetStream into ClickHouse.
type SinkCmd struct {
	SinkFlags
	MetricsAddr string `name:"metrics-addr" env:"WINCH_METRICS_ADDR" placeholder:"HOST:PORT" help:"Serve /metrics (Prometheus), /healthz and /readyz here (default: not at all)."`
}

// SinkFlags configure the sink, in `winch sink` and `winch dev`.
type SinkFlags struct {
	store       atomic.Pointer[audit.Store] // once open, for readiness
	SinkBatch   int                         `env:"WINCH_SINK_BATCH" default:"5000" help:"Events per ClickHouse insert, at most."`
	SinkMaxWait time.Duration               `env:"WINCH_SINK_MAX_WAIT" default:"1s" help:"How long a batch may wait to fill before it is inserted."`
}

// Run moves events until SIGTERM or SIGINT.
func (c *SinkCmd) Run(ctx context.Context, g *Globals) error {
	if g.ClickHouseDSN == "" {
		return usageError("winch sink needs WINCH_CLICKHOUSE_DSN (like clickhouse://127.0.0.1:9000/winch)")
	}
	log := g.serviceLogger()
	nc, err := broker.Connect(ctx, g.connectConfig("winch-sink", log, true))
	if err != nil {
		return err
	}
	defer nc.Close()
	pm, stopMetrics, err := serveMetrics(ctx, c.MetricsAddr, map[string]metrics.Check{"nats": natsReady(nc), "clickhouse": c.clickHouseReady}, log)
	if err != nil {
		return err
	}
	defer stopMetrics()
	stop := c.start(ctx, g, nc, log, pm.sink())
	<-ctx.Done()
	stop()
	return nil
}

// clickHouseReady is ready while the sink's store is open and ClickHouse
// answers.
func (f *SinkFlags) clickHouseReady(ctx context.Context) error {
	store := f.store.Load()
	if store == nil {
		return errors.New("not connected yet")
	}
	return store.Ping(ctx)
}

// start runs a sink in the background, waiting (with backoff) for
// ClickHouse if it is not up yet; the returned function stops it.
func (f *SinkFlags) start(ctx context.Context, g *Globals, nc *nats.Conn, log *slog.Logger, m *metrics.Sink) (stop func()) {
	runCtx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		store := openStoreWaiting(runCtx, g.ClickHouseDSN, log)
		if store == nil {
			return
		}
		defer store.Close()
		f.store.Store(store)
		defer f.store.Store(nil)
		sink, err := audit.NewSink(nc, store, audit.SinkConfig{BatchSize: f.SinkBatch, MaxWait: f.SinkMaxWait, Logger: log, Metrics: m})
		for err == nil {
			if err = sink.Start(runCtx); err == nil {
				break
			}
			log.Warn("start sink; retrying", "err", err)
			if !sleepCtx(runCtx, 5*time.Second) {
				return
			}
			err = nil
		}
		if err != nil {
			log.Error("sink", "err", err)
			return
		}
		<-runCtx.Done()
		stopCtx, stopCancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer stopCancel()
		_ = sink.Stop(stopCtx)
	})
	return func() { cancel(); wg.Wait() }
}

// openStoreWaiting opens the audit store, retrying with backoff while
// ClickHouse does not answer; nil once ctx ends.
func openStoreWaiting(ctx context.Context, dsn string, log *slog.Logger) *audit.Store {
	wait := 500 * time.Millisecond
	for {
		store, err := audit.Open(ctx, dsn, log)
		if err == nil {
			return store
		}
		log.Warn("clickhouse not reachable yet; the events stream keeps the events meanwhile", "err", err, "retry_in", wait)
		if !sleepCtx(ctx, wait) {
			return nil
		}
		wait = min(wait*2, 10*time.Second)
	}
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	select {
	case <-ctx.Done():
		return false
	case <-time.After(d):
		return true
	}
}
