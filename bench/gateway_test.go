package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/winchhq/winch/gateway"
	"github.com/winchhq/winch/modules"
	"github.com/winchhq/winch/producer"
	"github.com/winchhq/winch/schema"
	"github.com/winchhq/winch/worker"
	"github.com/winchhq/winch/worker/process"
)

const benchToken = "bench-token-0123456789abcdef"

// startGateway serves a gateway over client on a free loopback port.
func startGateway(b *testing.B, client *producer.Client, streams int) string {
	b.Helper()
	gw, err := gateway.New(gateway.Config{Addr: "127.0.0.1:0", Client: client,
		Tokens: []gateway.Token{{SHA256: gateway.HashToken(benchToken), Principal: "bench"}},
		Limits: gateway.Limits{StreamsPerPrincipal: streams}})
	if err == nil {
		err = gw.Start(context.Background())
	}
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = gw.Stop(context.Background()) })
	return gw.URL()
}

// BenchmarkSubmit compares queueing a request over HTTP with doing it
// through the Go client in the same process: producer.Submit (publish
// only), producer.Run (catalog, validation, publish: what `winch run`
// does, reading the registry each time), the same with the catalog kept
// (KeepCatalog, as the gateway does) and POST /v1/jobs. Nothing consumes
// the queue. Parallel callers: RunParallel, 4 per P.
func BenchmarkSubmit(b *testing.B) {
	nc, _ := winchServer(b)
	client, err := producer.New(context.Background(), nc, nil)
	if err != nil {
		b.Fatal(err)
	}
	url := startGateway(b, client, 32)
	report := func(b *testing.B, began time.Time) {
		b.ReportMetric(float64(b.N)/time.Since(began).Seconds(), "submits/s")
	}
	b.Run("producer.Submit", func(b *testing.B) {
		b.SetParallelism(4)
		began := time.Now()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := client.Submit(context.Background(), schema.Request{Command: "core.true", Queue: "bench-submit", Principal: "bench"}); err != nil {
					b.Fatal(err)
				}
			}
		})
		report(b, began)
	})
	fresh, err := producer.New(context.Background(), nc, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("producer.Run", func(b *testing.B) {
		b.SetParallelism(4)
		began := time.Now()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := fresh.Run(context.Background(), producer.RunRequest{Command: "core.echo", Params: map[string]any{"text": "x"}, Queue: "bench-submit", Principal: "bench"}); err != nil {
					b.Fatal(err)
				}
			}
		})
		report(b, began)
	})
	b.Run("producer.Run-kept-catalog", func(b *testing.B) {
		b.SetParallelism(4)
		began := time.Now()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := client.Run(context.Background(), producer.RunRequest{Command: "core.echo", Params: map[string]any{"text": "x"}, Queue: "bench-submit", Principal: "bench"}); err != nil {
					b.Fatal(err)
				}
			}
		})
		report(b, began)
	})
	b.Run("http", func(b *testing.B) {
		b.SetParallelism(4)
		hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
		body := `{"command":"core.echo","params":{"text":"x"},"queue":"bench-submit"}`
		began := time.Now()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				req, _ := http.NewRequest("POST", url+"/v1/jobs", strings.NewReader(body))
				req.Header.Set("Authorization", "Bearer "+benchToken)
				resp, err := hc.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusAccepted {
					b.Fatalf("status %d", resp.StatusCode)
				}
			}
		})
		report(b, began)
	})
}

const gatewayChildEnv = "WINCH_BENCH_CHILD_GATEWAY"

// childGateway serves a gateway on the server at WINCH_NATS_URL, in a
// process of its own so that its memory can be read apart, until killed.
func childGateway() int {
	nc, err := nats.Connect(os.Getenv("WINCH_NATS_URL"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer nc.Close()
	client, err := producer.New(context.Background(), nc, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	gw, err := gateway.New(gateway.Config{Addr: "127.0.0.1:0", Client: client,
		Tokens: []gateway.Token{{SHA256: gateway.HashToken(benchToken), Principal: "bench"}},
		Limits: gateway.Limits{StreamsPerPrincipal: 100_000}})
	if err == nil {
		err = gw.Start(context.Background())
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println(gw.URL())
	select {}
}

// rss reads a process's resident set (VmRSS) and its peak (VmHWM), in MiB.
func rss(pid int) (now, peak float64) {
	data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && (f[0] == "VmRSS:" || f[0] == "VmHWM:") {
			kb, _ := strconv.ParseFloat(f[1], 64)
			if f[0] == "VmRSS:" {
				now = kb / 1024
			} else {
				peak = kb / 1024
			}
		}
	}
	return now, peak
}

// BenchmarkSSEFollowers: WINCH_BENCH_FOLLOWERS (default 1000) clients
// follow one chatty job over server-sent events through a gateway in a
// process of its own: the job prints a line every 10 ms for
// WINCH_BENCH_LINES lines (default 300). Reported: the gateway's resident
// memory before the followers, with them connected and idle, and its peak;
// the delivery lag of each log event to each follower (from the event's
// time at the worker to its arrival at the follower), p50 and p99.
func BenchmarkSSEFollowers(b *testing.B) {
	followers := envInt("WINCH_BENCH_FOLLOWERS", 1000)
	lines := envInt("WINCH_BENCH_LINES", 300)
	nc, _ := winchServer(b)
	client, err := producer.New(context.Background(), nc, nil)
	if err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), gatewayChildEnv+"=1", "WINCH_NATS_URL="+nc.ConnectedUrl())
	cmd.Stderr = os.Stderr
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	sc := bufio.NewScanner(out)
	if !sc.Scan() {
		b.Fatal("the gateway child did not start")
	}
	url := sc.Text()
	pid := cmd.Process.Pid
	m, err := modules.ParseManifest("winch.yaml", []byte(`module: bench
commands:
  chatty:
    params:
      lines: {type: int, required: true}
    run: ["sh", "-c", "i=0; while [ $i -lt $WINCH_PARAM_LINES ]; do echo line $i; i=$((i+1)); sleep 0.01; done"]
`))
	if err != nil {
		b.Fatal(err)
	}
	catalog, _ := modules.NewCatalog(modules.Core(), m)
	for i := 0; i < b.N; i++ {
		queue := fmt.Sprintf("sse-%d", i)
		sub, err := client.Submit(context.Background(), schema.Request{Command: "bench.chatty", Params: map[string]any{"lines": lines}, Queue: queue, Principal: "bench"})
		if err != nil {
			b.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond)
		before, _ := rss(pid)
		hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: followers, MaxConnsPerHost: 0}}
		var connected, done sync.WaitGroup
		var mu sync.Mutex
		var lags []time.Duration
		var deliveries, failures atomic.Int64
		for range followers {
			connected.Add(1)
			done.Add(1)
			go func() {
				defer done.Done()
				req, _ := http.NewRequest("GET", url+"/v1/jobs/"+sub.Request.ID+"/events", nil)
				req.Header.Set("Authorization", "Bearer "+benchToken)
				resp, err := hc.Do(req)
				connected.Done()
				if err != nil || resp.StatusCode != http.StatusOK {
					failures.Add(1)
					return
				}
				defer resp.Body.Close()
				r := bufio.NewReader(resp.Body)
				var mine []time.Duration
				for {
					line, err := r.ReadSlice('\n')
					if err != nil {
						break
					}
					if !strings.HasPrefix(string(line[:min(len(line), 6)]), "data: ") {
						continue
					}
					got := time.Now()
					var ev struct {
						Kind string
						Time time.Time
					}
					if json.Unmarshal(line[6:], &ev) == nil && ev.Kind == "log" {
						mine = append(mine, got.Sub(ev.Time))
					}
					deliveries.Add(1)
				}
				mu.Lock()
				lags = append(lags, mine...)
				mu.Unlock()
			}()
		}
		connected.Wait()
		time.Sleep(500 * time.Millisecond)
		idle, _ := rss(pid)
		w, err := worker.New(nc, worker.Config{ID: "sse-" + strconv.Itoa(i), Queues: []string{queue}, Concurrency: 1, Catalog: catalog, Executor: &process.Executor{}})
		if err == nil {
			err = w.Start(context.Background())
		}
		if err != nil {
			b.Fatal(err)
		}
		began := time.Now()
		done.Wait()
		took := time.Since(began)
		_ = w.Stop(context.Background())
		_, peak := rss(pid)
		if failures.Load() > 0 {
			b.Fatalf("%d followers failed", failures.Load())
		}
		b.ReportMetric(float64(followers), "followers")
		b.ReportMetric(float64(deliveries.Load())/float64(followers), "events/follower")
		b.ReportMetric(before, "gw-MiB-before")
		b.ReportMetric(idle, "gw-MiB-connected")
		b.ReportMetric(peak, "gw-MiB-peak")
		b.ReportMetric(float64(percentile(lags, 0.50).Milliseconds()), "lag-p50-ms")
		b.ReportMetric(float64(percentile(lags, 0.99).Milliseconds()), "lag-p99-ms")
		b.ReportMetric(took.Seconds(), "job-s")
	}
}

func envInt(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n > 0 {
		return n
	}
	return def
}
