package main

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/winchhq/winch/broker"
	"github.com/winchhq/winch/metrics"
)

// DevCmd is `winch dev`: the embedded broker and a worker in one process.
type DevCmd struct {
	DataDir string `env:"WINCH_DATA_DIR" help:"Where JetStream keeps its files (default: winch under your cache dir)."`
	WorkerFlags
	SinkFlags
	GatewayFlags
	NotifyFlags
}

// Run serves until SIGTERM or SIGINT, then drains the worker and stops the
// server.
func (c *DevCmd) Run(ctx context.Context, g *Globals) error {
	began := time.Now()
	log := g.serviceLogger()
	dir, err := dataDir(c.DataDir)
	if err != nil {
		return err
	}
	if !broker.IsLoopback(g.NatsURL) {
		log.Warn("winch dev is listening beyond this machine, without authentication", "url", g.NatsURL)
	}
	srv, err := broker.NewServer(broker.ServerConfig{ListenURL: g.NatsURL, DataDir: dir, Name: "winch-dev", Logger: log})
	if err != nil {
		return &ExitError{Code: exitUsage, Err: err}
	}
	if err := srv.Start(ctx); err != nil {
		return fmt.Errorf("%w (WINCH_NATS_URL=%s)", err, g.NatsURL)
	}
	defer srv.Stop()
	nc, err := broker.Connect(ctx, broker.ConnectConfig{URL: srv.ClientURL(), Name: "winch-dev", Logger: log})
	if err != nil {
		return err
	}
	defer nc.Close()
	checks := map[string]metrics.Check{"nats": natsReady(nc), "notifier": c.notifierReady}
	if g.ClickHouseDSN != "" {
		checks["clickhouse"] = c.clickHouseReady
	}
	pm, stopMetrics, err := serveMetrics(ctx, c.MetricsAddr, checks, log)
	if err != nil {
		return err
	}
	defer stopMetrics()
	if pm != nil {
		c.NotifyFlags.metrics = metrics.NewNotifier(pm.reg)
	}
	w, release, err := c.startWorker(ctx, g, nc, log, pm)
	if err != nil {
		return err
	}
	defer release()
	if g.ClickHouseDSN != "" {
		log.Info("the audit sink runs too: events go to ClickHouse", "dsn", redactDSN(g.ClickHouseDSN))
		stopSink := c.SinkFlags.start(ctx, g, nc, log, pm.sink())
		defer stopSink()
	}
	if c.HTTPAddr != "off" {
		gw, stopGateway, err := c.GatewayFlags.start(ctx, g, nc, log, devTokenPath(dir), pm.gateway())
		if err != nil {
			return err
		}
		defer stopGateway()
		if len(c.GatewayFlags.TokensFile+c.GatewayFlags.Tokens+c.OIDCIssuer) == 0 {
			log.Info("console: "+gw.URL()+"/", "sign_in", "the token in "+devTokenPath(dir),
				"curl", "export TOKEN=$(cat "+devTokenPath(dir)+")")
		} else {
			log.Info("console: " + gw.URL() + "/")
		}
	}
	stopNotifier := c.NotifyFlags.start(ctx, nc, log)
	defer stopNotifier()
	log.Info("winch dev ready", "url", srv.ClientURL(), "data_dir", dir, "executor", w.Executor(),
		"startup", time.Since(began).Round(time.Millisecond).String())
	<-ctx.Done()
	log.Info("stopping: draining running jobs", "deadline", c.DrainTimeout.String())
	return w.Stop(context.Background())
}

func dataDir(dir string) (string, error) {
	if dir == "" {
		cache, err := os.UserCacheDir()
		if err != nil {
			return "", fmt.Errorf("no data dir: set WINCH_DATA_DIR (%w)", err)
		}
		dir = filepath.Join(cache, "winch")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("data dir: %w", err)
	}
	return dir, nil
}

// redactDSN hides a password in a DSN before it is logged.
func redactDSN(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil {
		return "(unparsable DSN)"
	}
	return u.Redacted()
}
