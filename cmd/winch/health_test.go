package main

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/winchhq/winch/metrics"
)

// TestHealthProbesAMetricsServer: winch health, the compose healthcheck,
// against the metrics server it probes there, ready and not.
func TestHealthProbesAMetricsServer(t *testing.T) {
	t.Parallel()
	var ready atomic.Bool
	srv := metrics.NewServer("127.0.0.1:0", prometheus.NewRegistry(), map[string]metrics.Check{
		"nats": func(context.Context) error {
			if !ready.Load() {
				return errors.New("NATS connection is RECONNECTING")
			}
			return nil
		},
	}, slog.New(slog.DiscardHandler))
	if err := srv.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Stop(context.Background()) })
	base := "http://" + srv.Addr()

	tests := []struct {
		name     string
		ready    bool
		args     []string
		code     int
		out, err string
	}{
		{"alive", false, []string{base + "/healthz"}, 0, "ok", ""},
		{"not ready says why", false, []string{base + "/readyz"}, exitUnavailable, "", "503 Service Unavailable: not ready: nats: NATS connection is RECONNECTING"},
		{"ready", true, []string{base + "/readyz"}, 0, "ready", ""},
		{"no such path", true, []string{base + "/nope"}, exitUnavailable, "", "404 Not Found"},
		{"nothing listens", true, []string{"http://127.0.0.1:1/healthz", "--timeout", "1s"}, exitUnavailable, "", "connection refused"},
		{"not a URL", true, []string{"127.0.0.1:9090/readyz"}, exitUsage, "", "want an http:// or https:// URL"},
	}
	for _, tt := range tests {
		ready.Store(tt.ready) // one at a time: the check reads it
		var out, errOut bytes.Buffer
		err := Run(t.Context(), append([]string{"health"}, tt.args...), Stdio{In: strings.NewReader(""), Out: &out, Err: &errOut})
		if code := exitCode(err, &errOut); code != tt.code {
			t.Errorf("%s: exit %d, want %d (stderr %q)", tt.name, code, tt.code, errOut.String())
		}
		if !strings.Contains(out.String(), tt.out) {
			t.Errorf("%s: stdout %q, want it to contain %q", tt.name, out.String(), tt.out)
		}
		if !strings.Contains(errOut.String(), tt.err) {
			t.Errorf("%s: stderr %q, want it to contain %q", tt.name, errOut.String(), tt.err)
		}
	}
}
