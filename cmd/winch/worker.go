package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/winchhq/winch/broker"
	"github.com/winchhq/winch/worker"
	"github.com/winchhq/winch/worker/process"
)

// WorkerFlags configure a worker, in `winch worker` and `winch dev`.
type WorkerFlags struct {
	WorkerID     string        `name:"worker-id" env:"WINCH_WORKER_ID" help:"Name of this worker (default: host-pid)."`
	Queues       []string      `env:"WINCH_QUEUES" default:"default" help:"Queues to serve, comma-separated."`
	Concurrency  int           `env:"WINCH_CONCURRENCY" default:"4" help:"Jobs this worker runs at once."`
	DrainTimeout time.Duration `env:"WINCH_DRAIN_TIMEOUT" default:"30s" help:"On SIGTERM, how long running jobs may finish before they are handed back."`
	KillGrace    time.Duration `env:"WINCH_KILL_GRACE" default:"1s" help:"Between SIGTERM and SIGKILL when a command is stopped."`
	AckWait      time.Duration `env:"WINCH_ACK_WAIT" default:"30s" help:"How long a silent worker keeps a job before it is handed to another."`
	MaxDeliver   int           `env:"WINCH_MAX_DELIVER" default:"5" help:"Deliveries of one request before its job is dead."`
	Executor     string        `env:"WINCH_EXECUTOR" enum:"process" default:"process" help:"How commands run (${enum})."`
}

func (f *WorkerFlags) topology() broker.Topology {
	return broker.Topology{AckWait: f.AckWait, MaxDeliver: f.MaxDeliver}
}

// startWorker builds and starts a worker on nc.
func (f *WorkerFlags) startWorker(ctx context.Context, g *Globals, nc *nats.Conn, log *slog.Logger) (*worker.Worker, error) {
	if f.Concurrency < 1 {
		return nil, usageError("--concurrency must be at least 1")
	}
	catalog, err := g.catalog()
	if err != nil {
		return nil, err
	}
	w, err := worker.New(nc, worker.Config{
		ID:           f.WorkerID,
		Queues:       splitList(f.Queues),
		Concurrency:  f.Concurrency,
		DrainTimeout: f.DrainTimeout,
		Topology:     f.topology(),
		Catalog:      catalog,
		Executor:     &process.Executor{KillGrace: f.KillGrace},
		Logger:       log,
	})
	if err != nil {
		return nil, &ExitError{Code: exitUsage, Err: err}
	}
	log.Warn("the process executor runs commands on this host without isolation")
	if err := w.Start(ctx); err != nil {
		return nil, fmt.Errorf("start worker: %w", err)
	}
	return w, nil
}

// WorkerCmd is `winch worker`.
type WorkerCmd struct {
	WorkerFlags
}

// Run serves until SIGTERM or SIGINT, then drains.
func (c *WorkerCmd) Run(ctx context.Context, g *Globals) error {
	log := g.serviceLogger()
	nc, err := broker.Connect(ctx, broker.ConnectConfig{URL: g.NatsURL, Name: "winch-worker", Logger: log, Wait: true})
	if err != nil {
		return err
	}
	defer nc.Close()
	w, err := c.startWorker(ctx, g, nc, log)
	if err != nil {
		return err
	}
	<-ctx.Done()
	log.Info("stopping: draining running jobs", "deadline", c.DrainTimeout)
	return w.Stop(context.Background())
}
