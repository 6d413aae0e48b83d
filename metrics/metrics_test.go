package metrics_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/winchhq/winch/metrics"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// /readyz says 503 and why while a check fails, 200 once none does;
// /healthz answers as long as the process does.
func TestReadiness(t *testing.T) {
	var broken error = errors.New("NATS connection is RECONNECTING")
	reg := prometheus.NewRegistry()
	srv := metrics.NewServer("127.0.0.1:0", reg, map[string]metrics.Check{
		"nats": func(context.Context) error { return broken },
	}, slog.New(slog.DiscardHandler))
	if err := srv.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer srv.Stop(context.Background())
	get := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get("http://" + srv.Addr() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "nats: NATS connection is RECONNECTING") {
		t.Fatalf("readyz with NATS down: %d %q", code, body)
	}
	if code, _ := get("/healthz"); code != http.StatusOK {
		t.Fatalf("healthz: %d", code)
	}
	broken = nil
	if code, body := get("/readyz"); code != http.StatusOK {
		t.Fatalf("readyz with NATS up: %d %q", code, body)
	}
}

// The Grafana dashboard in ops/ asks only for metrics that exist (the
// worker's, the sink's, the gateway's and the process's).
func TestDashboardUsesOnlyMetricsThatExist(t *testing.T) {
	reg := prometheus.NewRegistry()
	metrics.Process(reg)
	w := metrics.NewWorker(reg)
	now := time.Now()
	w.Finished("core.echo", "default", "succeeded", now.Add(-time.Second), now) // vectors appear once used
	w.Started("default", now.Add(-time.Second), now)
	w.EventPublished("log")
	w.Pending("default", "normal", 0)
	w.ContainerCreated(time.Millisecond)
	w.ContainerStarted(time.Millisecond)
	metrics.NewSink(reg).Inserted(1, time.Millisecond)
	metrics.NewGateway(reg).Request("GET /v1/jobs", 200, time.Millisecond)
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	exists := map[string]bool{}
	for _, f := range families {
		exists[f.GetName()] = true
	}
	raw, err := os.ReadFile("../ops/grafana/winch-workers.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("dashboard: %v", err)
	}
	name := regexp.MustCompile(`\b(winch|go|process)_[a-z_]+`)
	used := 0
	for _, p := range dash.Panels {
		for _, target := range p.Targets {
			for _, m := range name.FindAllString(target.Expr, -1) {
				used++
				base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(m, "_bucket"), "_sum"), "_count")
				if !exists[m] && !exists[base] {
					t.Errorf("panel %q asks for %s, which no winch process exports", p.Title, m)
				}
			}
		}
	}
	if used == 0 {
		t.Fatal("the dashboard asks for no metric at all")
	}
}
