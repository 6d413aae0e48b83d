package main

import (
	"context"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/winchhq/winch/internal/testenv"
	"github.com/winchhq/winch/producer"
	"github.com/winchhq/winch/schema"
)

// TestWorkerMetrics: a worker started with WINCH_METRICS_ADDR serves
// /healthz, /readyz and Prometheus metrics that move with the jobs it runs.
func TestWorkerMetrics(t *testing.T) {
	t.Parallel()
	addr := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	queue := "metrics"
	_, lines := startWinch(t, []string{"WINCH_EXECUTOR=process", "WINCH_METRICS_ADDR=" + addr}, "worker", "--queues", queue, "--concurrency", "3", "--ack-wait", "2s")
	waitLog(t, lines, "worker serving")
	get := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	for _, path := range []string{"/healthz", "/readyz"} {
		if code, body := get(path); code != http.StatusOK {
			t.Fatalf("%s: %d %s", path, code, body)
		}
	}

	c := testClient(t)
	for _, r := range []schema.Request{
		{Command: "core.echo", Params: map[string]any{"text": "hi"}},
		{Command: "core.echo", Params: map[string]any{"text": "again"}},
		{Command: "core.exit", Params: map[string]any{"code": 3}},
	} {
		r.Queue, r.Principal = queue, "tester"
		sub, err := c.Submit(t.Context(), r)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		_, err = c.Follow(ctx, sub.Request.ID, producer.UntilDone, func(schema.Event) error { return nil })
		cancel()
		if err != nil {
			t.Fatal(err)
		}
	}
	wants := []string{
		`winch_jobs_finished_total{command="core.echo",queue="metrics",state="succeeded"} 2`,
		`winch_jobs_finished_total{command="core.exit",queue="metrics",state="failed"} 1`,
		`winch_job_run_seconds_count{command="core.echo"} 2`,
		`winch_job_start_delay_seconds_count{queue="metrics"} 3`,
		`winch_jobs_running 0`,
		`winch_worker_slots 3`,
		`go_goroutines `,
		`process_resident_memory_bytes `,
	}
	// A job's end is counted just after its final event is out: look
	// again for a moment.
	var body string
	var missing []string
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		_, body = get("/metrics")
		missing = missing[:0]
		for _, want := range wants {
			if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(want)).MatchString(body) {
				missing = append(missing, want)
			}
		}
		if len(missing) == 0 || time.Now().After(deadline) {
			break
		}
	}
	if len(missing) > 0 {
		t.Fatalf("/metrics has no line %q; it has:\n%s", missing, body)
	}
}

// TestSinkReadiness: `winch sink` with WINCH_METRICS_ADDR is ready once it
// has ClickHouse, and counts what it stores.
func TestSinkReadiness(t *testing.T) {
	t.Parallel()
	if chErr != nil {
		testenv.Missing(t, "clickhouse", chErr)
	}
	addr := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	_, lines := startWinch(t, []string{"WINCH_CLICKHOUSE_DSN=" + clickhouseDSN, "WINCH_METRICS_ADDR=" + addr}, "sink")
	waitLog(t, lines, "metrics listening")
	var code int
	var body string
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if code, body = resp.StatusCode, string(b); code == http.StatusOK {
			break
		}
	}
	if code != http.StatusOK {
		t.Fatalf("the sink is not ready with ClickHouse up: %d %s", code, body)
	}
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if !strings.Contains(string(b), "winch_sink_insert_failures_total 0") {
		t.Fatalf("/metrics of the sink:\n%s", b)
	}
}
