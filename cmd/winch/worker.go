package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/goccy/go-yaml"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/winchhq/winch/broker"
	"github.com/winchhq/winch/metrics"
	"github.com/winchhq/winch/modules"
	"github.com/winchhq/winch/worker"
	"github.com/winchhq/winch/worker/docker"
	"github.com/winchhq/winch/worker/process"
)

// WorkerFlags configure a worker, in `winch worker` and `winch dev`.
type WorkerFlags struct {
	WorkerID      string        `name:"worker-id" env:"WINCH_WORKER_ID" help:"Name of this worker (default: host-pid)."`
	Queues        []string      `env:"WINCH_QUEUES" default:"default" help:"Queues to serve, comma-separated."`
	Concurrency   int           `env:"WINCH_CONCURRENCY" default:"4" help:"Jobs this worker runs at once."`
	Connections   int           `env:"WINCH_WORKER_CONNECTIONS" help:"Connections to NATS, each fetching and running its share of the slots (at most --concurrency); one connection caps a busy worker. Default: 2 from a concurrency of 8, else 1."`
	DrainTimeout  time.Duration `env:"WINCH_DRAIN_TIMEOUT" default:"30s" help:"On SIGTERM, how long running jobs may finish before they are handed back."`
	KillGrace     time.Duration `env:"WINCH_KILL_GRACE" default:"1s" help:"Between SIGTERM and SIGKILL when a command is stopped."`
	ScheduleGrace time.Duration `env:"WINCH_SCHEDULE_GRACE" default:"1m" help:"How late a schedule's fire may be and still be on time; a later one is missed, and its schedule's --catch-up runs it once or skips it."`
	AckWait       time.Duration `env:"WINCH_ACK_WAIT" help:"Cluster-wide: how long a silent worker keeps a job before it is handed to another (the lease). Default: the fleet's (30s for a new one); a value that differs from the fleet's is refused: change it with winch init."`
	MaxDeliver    int           `env:"WINCH_MAX_DELIVER" help:"Cluster-wide: deliveries of one request before its job is dead. Default: the fleet's (5 for a new one); see --ack-wait."`
	Executor      string        `env:"WINCH_EXECUTOR" enum:"auto,docker,process" default:"auto" help:"How commands run: docker, or process (no isolation); auto picks docker when an engine answers (${enum})."`
	DefaultImage  string        `env:"WINCH_DEFAULT_IMAGE" default:"${default_image}" help:"Image of commands whose module names none (the core commands)."`
	ReapInterval  time.Duration `env:"WINCH_REAP_INTERVAL" default:"1m" help:"How often to remove containers that dead workers left behind."`
	RolesFile     string        `env:"WINCH_ROLES_FILE" type:"existingfile" help:"YAML file granting roles: principal: [role, ...]. Commands that declare roles run only for principals with one of them."`
	MetricsAddr   string        `name:"metrics-addr" env:"WINCH_METRICS_ADDR" placeholder:"HOST:PORT" help:"Serve /metrics (Prometheus), /healthz and /readyz here (default: not at all)."`
}

func (f *WorkerFlags) topology() broker.Topology {
	return broker.Topology{AckWait: f.AckWait, MaxDeliver: f.MaxDeliver}
}

// startWorker builds and starts a worker on nc. The returned function
// releases what the executor holds, after the worker stopped.
// pm, when set, gets the worker's metrics.
func (f *WorkerFlags) startWorker(ctx context.Context, g *Globals, nc *nats.Conn, log *slog.Logger, pm *processMetrics) (*worker.Worker, func(), error) {
	if f.Concurrency < 1 {
		return nil, nil, usageError("--concurrency must be at least 1")
	}
	if f.Connections < 0 {
		return nil, nil, usageError("--connections must be at least 1 (or 0 for the default)")
	}
	core, err := modules.NewCatalog(modules.Core())
	if err != nil {
		return nil, nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, nil, err
	}
	// The first process to start makes the topology with its settings;
	// later ones must agree with it (broker.ConflictError).
	if _, err := broker.Ensure(ctx, js, f.topology()); err != nil {
		return nil, nil, topologyError(err)
	}
	reg, err := newRegistry(ctx, nc)
	if err != nil {
		return nil, nil, err
	}
	catalog := &modules.Resolver{Core: core, Registry: reg}
	roles, err := loadRoles(f.RolesFile)
	if err != nil {
		return nil, nil, &ExitError{Code: exitUsage, Err: err}
	}
	m := pm.worker()
	exec, release, err := f.executor(ctx, log, m)
	if err != nil {
		return nil, nil, err
	}
	w, err := worker.New(nc, worker.Config{
		ID:            f.WorkerID,
		Queues:        splitList(f.Queues),
		Concurrency:   f.Concurrency,
		Connections:   f.Connections,
		DrainTimeout:  f.DrainTimeout,
		ScheduleGrace: f.ScheduleGrace,
		ReapInterval:  f.ReapInterval,
		Topology:      f.topology(),
		Catalog:       catalog,
		Roles:         roles,
		Executor:      exec,
		Logger:        log,
		Metrics:       m,
	})
	if err != nil {
		release()
		return nil, nil, &ExitError{Code: exitUsage, Err: err}
	}
	if err := w.Start(ctx); err != nil {
		release()
		return nil, nil, fmt.Errorf("start worker: %w", err)
	}
	return w, release, nil
}

// natsReady is ready while the connection to NATS is up.
func natsReady(nc *nats.Conn) metrics.Check {
	return func(context.Context) error {
		if st := nc.Status(); st != nats.CONNECTED {
			return fmt.Errorf("NATS connection is %s", st)
		}
		return nil
	}
}

// executor picks how commands run: in containers when an engine answers
// (or when asked to), else as plain processes, loudly.
func (f *WorkerFlags) executor(ctx context.Context, log *slog.Logger, m *metrics.Worker) (worker.Executor, func(), error) {
	processExec := func() (worker.Executor, func(), error) {
		log.Warn("the process executor runs commands on this host WITHOUT ISOLATION: no container, no limits beyond a timeout")
		return &process.Executor{KillGrace: f.KillGrace}, func() {}, nil
	}
	if f.Executor == "process" {
		return processExec()
	}
	pingCtx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	api, err := docker.Connect(pingCtx)
	if err != nil {
		if f.Executor == "docker" {
			return nil, nil, &ExitError{Code: exitUnavailable, Err: fmt.Errorf("WINCH_EXECUTOR=docker: %w", err)}
		}
		log.Warn("no docker engine answers; falling back to the process executor", "err", err)
		return processExec()
	}
	exec := &docker.Executor{API: api, DefaultImage: f.DefaultImage, KillGrace: f.KillGrace, Logger: log}
	if m != nil {
		exec.Timings = m
	}
	if err := exec.CheckImage(ctx); err != nil {
		api.Close()
		return nil, nil, &ExitError{Code: exitUnavailable, Err: fmt.Errorf("%w, or run commands without isolation with WINCH_EXECUTOR=process", err)}
	}
	log.Info("commands run in docker containers", "default_image", f.DefaultImage)
	return exec, func() { api.Close() }, nil
}

// WorkerCmd is `winch worker`.
type WorkerCmd struct {
	WorkerFlags
}

// Run serves until SIGTERM or SIGINT, then drains.
func (c *WorkerCmd) Run(ctx context.Context, g *Globals) error {
	log := g.serviceLogger()
	nc, err := broker.Connect(ctx, g.connectConfig("winch-worker", log, true))
	if err != nil {
		return err
	}
	defer nc.Close()
	pm, stopMetrics, err := serveMetrics(ctx, c.MetricsAddr, map[string]metrics.Check{"nats": natsReady(nc)}, log)
	if err != nil {
		return err
	}
	defer stopMetrics()
	w, release, err := c.startWorker(ctx, g, nc, log, pm)
	if err != nil {
		return err
	}
	defer release()
	<-ctx.Done()
	log.Info("stopping: draining running jobs", "deadline", c.DrainTimeout.String())
	return w.Stop(context.Background())
}

// loadRoles reads a roles file: a YAML mapping of principal to roles.
func loadRoles(path string) (worker.Roles, error) {
	if path == "" {
		return nil, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var roles worker.Roles
	if err := yaml.UnmarshalWithOptions(data, &roles, yaml.Strict()); err != nil {
		return nil, fmt.Errorf("roles file %s: %s (want principal: [role, ...])", path, yaml.FormatError(err, false, false))
	}
	return roles, nil
}

// topologyError makes a conflict with the fleet's settings a usage error.
func topologyError(err error) error {
	var conflict *broker.ConflictError
	if errors.As(err, &conflict) {
		return &ExitError{Code: exitUsage, Err: err}
	}
	return err
}
