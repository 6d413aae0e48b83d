package main

import (
	"context"
	"io"
	"net/http"
	"regexp"
	"strconv"
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
