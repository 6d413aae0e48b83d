package main

import (
	"context"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/winchhq/winch/broker"
	"github.com/winchhq/winch/notify"
)

// NotifierCmd is `winch notifier`: webhooks when jobs end.
type NotifierCmd struct {
	NotifyFlags
}

// NotifyFlags configure the notifier, in `winch notifier` and `winch dev`.
// The signing secret comes from WINCH_NOTIFY_SECRET only: a flag would
// show it in the process list.
type NotifyFlags struct {
	NotifyRetryFor time.Duration `env:"WINCH_NOTIFY_RETRY_FOR" default:"1h" help:"Retry a webhook that fails until this long after the job ended (at least once)."`
	NotifyAllow    []string      `env:"WINCH_NOTIFY_ALLOW" help:"URL prefixes webhooks may have, comma-separated (default: any): keeps requests from making the notifier POST anywhere on its network."`
	ConsoleURL     string        `env:"WINCH_CONSOLE_URL" help:"The console's URL, for the link in each notification."`
}

// Run delivers until SIGTERM or SIGINT.
func (c *NotifierCmd) Run(ctx context.Context, g *Globals) error {
	log := g.serviceLogger()
	nc, err := broker.Connect(ctx, g.connectConfig("winch-notifier", log, true))
	if err != nil {
		return err
	}
	defer nc.Close()
	stop := c.start(ctx, nc, log)
	<-ctx.Done()
	stop()
	return nil
}

// start runs a notifier in the background, retrying its start (the events
// stream may not exist yet); the returned function stops it.
func (f *NotifyFlags) start(ctx context.Context, nc *nats.Conn, log *slog.Logger) (stop func()) {
	runCtx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		n, err := notify.New(nc, notify.Config{Secret: []byte(os.Getenv("WINCH_NOTIFY_SECRET")), RetryFor: f.NotifyRetryFor,
			Allow: splitList(f.NotifyAllow), ConsoleURL: f.ConsoleURL, Logger: log})
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
		<-runCtx.Done()
		stopCtx, stopCancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer stopCancel()
		_ = n.Stop(stopCtx)
	})
	return func() { cancel(); wg.Wait() }
}
