package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Check says whether something the process needs is usable now (NATS
// connected, ClickHouse answering); an error says what is not.
type Check func(ctx context.Context) error

// Server serves /metrics, /healthz (the process is up) and /readyz (every
// check passes: an orchestrator sends it work, or counts it in).
type Server struct {
	addr   string
	log    *slog.Logger
	checks map[string]Check
	srv    *http.Server
	ln     net.Listener
	done   chan struct{}
}

// NewServer serves reg's metrics and the checks on addr.
func NewServer(addr string, reg *prometheus.Registry, checks map[string]Check, log *slog.Logger) *Server {
	s := &Server{addr: addr, log: log, checks: checks, done: make(chan struct{})}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("GET /readyz", s.ready)
	s.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	return s
}

func (s *Server) ready(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	var failed []error
	for name, check := range s.checks {
		if err := check(ctx); err != nil {
			failed = append(failed, fmt.Errorf("%s: %w", name, err))
		}
	}
	if len(failed) > 0 {
		http.Error(w, "not ready: "+errors.Join(failed...).Error(), http.StatusServiceUnavailable)
		return
	}
	fmt.Fprintln(w, "ready")
}

// Start listens and serves until Stop.
func (s *Server) Start(ctx context.Context) error {
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", s.addr)
	if err != nil {
		return fmt.Errorf("metrics: listen on %s: %w", s.addr, err)
	}
	s.ln = ln
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("metrics server", "err", err)
		}
	}()
	s.log.Info("metrics listening", "url", "http://"+ln.Addr().String()+"/metrics")
	return nil
}

// Addr is where the server listens, once started.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Stop ends the server, letting scrapes in flight finish.
func (s *Server) Stop(ctx context.Context) error {
	if s.ln == nil {
		return nil
	}
	err := s.srv.Shutdown(ctx)
	<-s.done
	return err
}
