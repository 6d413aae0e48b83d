package main

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/winchhq/winch/broker"
	"github.com/winchhq/winch/metrics"
	"github.com/winchhq/winch/notify"
)

// NotifierCmd is `winch notifier`: webhooks when jobs end.
type NotifierCmd struct {
	NotifyFlags
	MetricsAddr string `name:"metrics-addr" env:"WINCH_METRICS_ADDR" placeholder:"HOST:PORT" help:"Serve /metrics (Prometheus), /healthz and /readyz here (default: not at all)."`
}

// NotifyFlags configure the notifier, in `winch notifier` and `winch dev`.
// The signing secret comes from WINCH_NOTIFY_SECRET only: a flag would
// show it in the process list.
type NotifyFlags struct {
	running        atomic.Bool       // once the notifier takes events, for readiness
	metrics        *metrics.Notifier // nil: not measured
	NotifyRetryFor time.Duration     `env:"WINCH_NOTIFY_RETRY_FOR" default:"1h" help:"Retry a webhook that fails until this long after the job ended (at least once)."`
	NotifyAllow    []string          `env:"WINCH_NOTIFY_ALLOW" help:"URL prefixes webhooks may have, comma-separated (default: any): keeps requests from making the notifier POST anywhere on its network."`
	ConsoleURL     string            `env:"WINCH_CONSOLE_URL" help:"The console's URL, for the link in each notification."`
	NotifyAckWait  time.Duration     `env:"WINCH_NOTIFY_ACK_WAIT" default:"30s" help:"How long the notifications a notifier held stay with it after it died, before another takes them (set on the notifiers' consumer)."`
}

// Run delivers until SIGTERM or SIGINT.
func (c *NotifierCmd) Run(ctx context.Context, g *Globals) error {
	log := g.serviceLogger()
	nc, err := broker.Connect(ctx, g.connectConfig("winch-notifier", log, true))
	if err != nil {
		return err
	}
	defer nc.Close()
	pm, stopMetrics, err := serveMetrics(ctx, c.MetricsAddr, map[string]metrics.Check{"nats": natsReady(nc), "notifier": c.notifierReady}, log)
	if err != nil {
		return err
	}
	defer stopMetrics()
	if pm != nil {
		c.metrics = metrics.NewNotifier(pm.reg)
	}
	stop := c.start(ctx, nc, log)
	<-ctx.Done()
	stop()
	return nil
}

// notifierReady is ready once the notifier takes events (the events stream
// may not exist yet at start).
func (f *NotifyFlags) notifierReady(context.Context) error {
	if !f.running.Load() {
		return errors.New("not taking events yet")
	}
	return nil
}

// start runs a notifier in the background, retrying its start (the events
// stream may not exist yet); the returned function stops it.
func (f *NotifyFlags) start(ctx context.Context, nc *nats.Conn, log *slog.Logger) (stop func()) {
	runCtx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		n, err := notify.New(nc, notify.Config{Secret: []byte(os.Getenv("WINCH_NOTIFY_SECRET")), RetryFor: f.NotifyRetryFor,
			Allow: splitList(f.NotifyAllow), ConsoleURL: f.ConsoleURL, AckWait: f.NotifyAckWait, Logger: log, Metrics: f.metrics})
		if err != nil {
			log.Error("notifier", "err", err)
			return
		}
		for {
			if err = n.Start(runCtx); err == nil {
				break
			}
			log.Warn("start notifier; retrying", "err", err)
			if !sleepCtx(runCtx, 5*time.Second) {
				return
			}
		}
		f.running.Store(true)
		defer f.running.Store(false)
		<-runCtx.Done()
		stopCtx, stopCancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer stopCancel()
		_ = n.Stop(stopCtx)
	})
	return func() { cancel(); wg.Wait() }
}
