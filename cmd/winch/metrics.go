package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/winchhq/winch/metrics"
)

// processMetrics is a process's one registry, served on WINCH_METRICS_ADDR:
// winch dev puts its worker's, sink's and gateway's collectors on it. A nil
// one (no address) measures nothing.
type processMetrics struct {
	reg *prometheus.Registry
}

// serveMetrics serves /metrics, /healthz and /readyz (ready when every
// check passes) on addr, before the process's parts start so that a taken
// address is a usage error; nil and a no-op stop when addr is empty.
func serveMetrics(ctx context.Context, addr string, checks map[string]metrics.Check, log *slog.Logger) (*processMetrics, func(), error) {
	if addr == "" {
		return nil, func() {}, nil
	}
	reg := prometheus.NewRegistry()
	metrics.Process(reg)
	srv := metrics.NewServer(addr, reg, checks, log)
	if err := srv.Start(ctx); err != nil {
		return nil, nil, &ExitError{Code: exitUsage, Err: err}
	}
	return &processMetrics{reg: reg}, func() {
		stopCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Stop(stopCtx)
	}, nil
}

func (p *processMetrics) worker() *metrics.Worker {
	if p == nil {
		return nil
	}
	return metrics.NewWorker(p.reg)
}

func (p *processMetrics) sink() *metrics.Sink {
	if p == nil {
		return nil
	}
	return metrics.NewSink(p.reg)
}

func (p *processMetrics) gateway() *metrics.Gateway {
	if p == nil {
		return nil
	}
	return metrics.NewGateway(p.reg)
}
