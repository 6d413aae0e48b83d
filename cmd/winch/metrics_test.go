package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
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
		`winch_events_published_total{kind="finished"} 3`,
		`winch_queue_pending{priority="normal",queue="metrics"} 0`,
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

// metricWant is a sample that /metrics must come to have: metric name
// with every label given, whose value satisfies ok.
type metricWant struct {
	name   string
	labels []string
	ok     func(float64) bool
}

func is(n float64) func(float64) bool { return func(v float64) bool { return v == n } }

// awaitMetrics reads http://addr/metrics until every want holds or timeout
// passes, and returns the last body and the wants that did not hold.
func awaitMetrics(t *testing.T, addr string, timeout time.Duration, wants []metricWant) (body string, missing []string) {
	t.Helper()
	for deadline := time.Now().Add(timeout); ; time.Sleep(200 * time.Millisecond) {
		_, body = httpGet(t, "http://"+addr+"/metrics", "")
		missing = missing[:0]
		for _, w := range wants {
			if v, found := sample(body, w.name, w.labels...); !found || !w.ok(v) {
				missing = append(missing, fmt.Sprintf("%s%v (found %v: %v)", w.name, w.labels, found, v))
			}
		}
		if len(missing) == 0 || time.Now().After(deadline) {
			return body, missing
		}
	}
}

// sample finds the value of metric name with every label given (`k="v"`)
// in a Prometheus text exposition.
func sample(body, name string, labels ...string) (float64, bool) {
	for _, line := range strings.Split(body, "\n") {
		rest, ok := strings.CutPrefix(line, name)
		if !ok || (rest != "" && rest[0] != '{' && rest[0] != ' ') {
			continue
		}
		matches := true
		for _, l := range labels {
			matches = matches && strings.Contains(rest, l)
		}
		if !matches {
			continue
		}
		v, err := strconv.ParseFloat(rest[strings.LastIndex(rest, " ")+1:], 64)
		return v, err == nil
	}
	return 0, false
}

// httpGet answers a GET of url with token (none if empty).
func httpGet(t *testing.T, url, token string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestDevServesEveryPartsMetricsOnOneAddress: `winch dev` with
// WINCH_METRICS_ADDR serves its worker's, sink's, gateway's and notifier's metrics on
// one endpoint, ready once NATS and ClickHouse are; after a job submitted
// and followed over HTTP, every part's counters have moved.
func TestDevServesEveryPartsMetricsOnOneAddress(t *testing.T) {
	t.Parallel()
	if chErr != nil {
		testenv.Missing(t, "clickhouse", chErr)
	}
	data := t.TempDir()
	metricsAddr := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	httpAddr := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	env := []string{"WINCH_NATS_URL=nats://127.0.0.1:" + strconv.Itoa(testenv.FreePort(t)), "WINCH_DATA_DIR=" + data,
		"WINCH_EXECUTOR=process", "WINCH_HTTP_ADDR=" + httpAddr, "WINCH_METRICS_ADDR=" + metricsAddr,
		"WINCH_CLICKHOUSE_DSN=" + strings.Replace(clickhouseDSN, "/winch_cli", "/winch_dev_metrics", 1), "WINCH_SINK_MAX_WAIT=200ms"}
	dev, lines := startWinch(t, env, "dev")
	waitLog(t, lines, "winch dev ready")
	go func() {
		for lines.Scan() {
		}
	}()
	t.Cleanup(func() { _ = dev.Process.Signal(syscall.SIGINT); _ = dev.Wait() })
	token, err := os.ReadFile(filepath.Join(data, "gateway-token"))
	if err != nil {
		t.Fatal(err)
	}
	tok := strings.TrimSpace(string(token))
	base := "http://" + httpAddr

	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, base+"/v1/jobs", strings.NewReader(`{"command":"core.echo","params":{"text":"measured"}}`))
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var sub struct{ ID string }
	err = json.NewDecoder(resp.Body).Decode(&sub)
	resp.Body.Close()
	if err != nil || sub.ID == "" {
		t.Fatalf("submit: %d %v", resp.StatusCode, err)
	}
	if code, events := httpGet(t, base+"/v1/jobs/"+sub.ID+"/events", tok); code != http.StatusOK || !strings.Contains(events, "event: finished") {
		t.Fatalf("events: %d\n%s", code, events)
	}
	if code, _ := httpGet(t, base+"/v1/jobs", ""); code != http.StatusUnauthorized {
		t.Fatalf("GET /v1/jobs without a token: %d", code)
	}

	wants := []metricWant{
		{"winch_jobs_finished_total", []string{`command="core.echo"`, `state="succeeded"`}, is(1)},
		{"winch_events_published_total", []string{`kind="finished"`}, is(1)},
		{"winch_events_published_total", []string{`kind="log"`}, func(v float64) bool { return v >= 1 }},
		{"winch_queue_pending", []string{`queue="default"`, `priority="normal"`}, is(0)},
		{"winch_gateway_requests_total", []string{`route="POST /v1/jobs"`, `code="202"`}, is(1)},
		{"winch_gateway_requests_total", []string{`route="GET /v1/jobs"`, `code="401"`}, is(1)},
		{"winch_gateway_request_seconds_count", []string{`route="GET /v1/jobs/{id}/events"`}, is(1)},
		{"winch_gateway_event_streams", nil, is(0)},
		{"winch_sink_events_stored_total", nil, func(v float64) bool { return v >= 4 }}, // accepted, started, a log, finished
		{"winch_sink_dead_letters_total", nil, is(0)},
		{"winch_notifications_delivered_total", nil, is(0)}, // the notifier's, though nothing asked for a webhook
		{"process_resident_memory_bytes", nil, func(v float64) bool { return v > 0 }},
	}
	body, missing := awaitMetrics(t, metricsAddr, 30*time.Second, wants)
	if len(missing) > 0 {
		t.Fatalf("/metrics of winch dev lacks %q; it has:\n%s", missing, body)
	}
	if code, body := httpGet(t, "http://"+metricsAddr+"/readyz", ""); code != http.StatusOK {
		t.Fatalf("readyz: %d %s", code, body)
	}
}

// TestGatewayMetrics: `winch gateway` with WINCH_METRICS_ADDR serves
// /healthz, /readyz and its request counts.
func TestGatewayMetrics(t *testing.T) {
	t.Parallel()
	metricsAddr := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	httpAddr := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	sum := sha256.Sum256([]byte("wt_metrics-test-token-0123456789abcdef"))
	_, lines := startWinch(t, []string{"WINCH_HTTP_ADDR=" + httpAddr, "WINCH_METRICS_ADDR=" + metricsAddr,
		"WINCH_TOKENS=" + hex.EncodeToString(sum[:]) + ":alice"}, "gateway")
	waitLog(t, lines, "gateway listening")
	go func() {
		for lines.Scan() {
		}
	}()
	for _, path := range []string{"/healthz", "/readyz"} {
		if code, body := httpGet(t, "http://"+metricsAddr+path, ""); code != http.StatusOK {
			t.Fatalf("%s: %d %s", path, code, body)
		}
	}
	if code, body := httpGet(t, "http://"+httpAddr+"/v1/whoami", "wt_metrics-test-token-0123456789abcdef"); code != http.StatusOK {
		t.Fatalf("whoami: %d %s", code, body)
	}
	for range 2 {
		if code, _ := httpGet(t, "http://"+httpAddr+"/v1/whoami", "wrong"); code != http.StatusUnauthorized {
			t.Fatalf("whoami with a wrong token: %d", code)
		}
	}
	_, body := httpGet(t, "http://"+metricsAddr+"/metrics", "")
	for _, w := range []struct {
		labels []string
		want   float64
	}{
		{[]string{`route="GET /v1/whoami"`, `code="200"`}, 1},
		{[]string{`route="GET /v1/whoami"`, `code="401"`}, 2},
	} {
		if v, ok := sample(body, "winch_gateway_requests_total", w.labels...); !ok || v != w.want {
			t.Errorf("winch_gateway_requests_total%v = %v (found %v), want %v", w.labels, v, ok, w.want)
		}
	}
	if v, ok := sample(body, "winch_gateway_request_seconds_count", `route="GET /v1/whoami"`); !ok || v != 3 {
		t.Errorf("winch_gateway_request_seconds_count = %v (found %v), want 3\n%s", v, ok, body)
	}
}
