package bench

import (
	"context"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/winchhq/winch/broker"
	"github.com/winchhq/winch/modules"
	"github.com/winchhq/winch/schema"
	"github.com/winchhq/winch/worker"
	"github.com/winchhq/winch/worker/process"
)

// limitedCore is the core module with core.true under a concurrency limit.
func limitedCore(b *testing.B, limit int) *modules.Catalog {
	b.Helper()
	core := modules.Core()
	t := core.Commands["true"]
	t.Concurrency = &schema.Concurrency{Key: "bench", Limit: limit}
	core.Commands["true"] = t
	cat, err := modules.NewCatalog(core)
	if err != nil {
		b.Fatal(err)
	}
	return cat
}

// stackWith is startStack with the worker's catalog given.
func stackWith(b *testing.B, cat *modules.Catalog, exec worker.Executor, concurrency int) *jobStack {
	b.Helper()
	s := startStack(b, exec, concurrency, broker.Topology{})
	_ = s.worker.Stop(context.Background()) // replaced by one with the catalog
	w, err := worker.New(s.workerNC, worker.Config{ID: "bench-limited", Concurrency: concurrency, Catalog: cat, Executor: exec})
	if err != nil {
		b.Fatal(err)
	}
	if err := w.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = w.Stop(context.Background()) })
	s.worker = w
	return s
}

// BenchmarkConcurrencyLimit is what a concurrency limit costs a job: the
// no-op path (core.true, nothing run) without a limit, with a limit it
// never reaches (taking and freeing a slot: two compare-and-sets), and
// with limit 1 under a pipelined load (every job but one waits, and is
// woken by the end of the one before it).
func BenchmarkConcurrencyLimit(b *testing.B) {
	for _, tc := range []struct {
		name  string
		limit int
		mode  string
	}{
		{"none/sequential", 0, "sequential"},
		{"unreached/sequential", 1000, "sequential"},
		{"none/pipelined", 0, "pipelined"},
		{"unreached/pipelined", 1000, "pipelined"},
		{"limit-1/pipelined", 1, "pipelined"},
	} {
		b.Run(tc.name, func(b *testing.B) {
			cat, _ := modules.NewCatalog(modules.Core())
			if tc.limit > 0 {
				cat = limitedCore(b, tc.limit)
			}
			measureJobs(b, stackWith(b, cat, noopExecutor{}, 8), tc.mode)
		})
	}
}

// BenchmarkFanout10k runs one fan-out of 10,000 core.true children
// (-benchtime 1x) on one worker of concurrency 32, with --parallel 32,
// through the no-op executor (winch's path alone) and the process
// executor (a process per child). It reports the time to finish, the
// children per second, the peak Go heap of the process (broker, worker and
// client: the server is embedded) and what JetStream stores afterwards.
func BenchmarkFanout10k(b *testing.B) {
	for _, tc := range []struct {
		name string
		exec worker.Executor
	}{
		{"noop", noopExecutor{}},
		{"process", &process.Executor{}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			cat, _ := modules.NewCatalog(modules.Core())
			s := stackWith(b, cat, tc.exec, 32)
			values := make([]string, schema.MaxFanout)
			for i := range values {
				values[i] = fmt.Sprintf("target-%05d", i)
			}
			var peak atomic.Uint64
			stop := make(chan struct{})
			sampled := make(chan struct{})
			go func() {
				defer close(sampled)
				var ms runtime.MemStats
				for {
					runtime.ReadMemStats(&ms)
					if ms.HeapInuse > peak.Load() {
						peak.Store(ms.HeapInuse)
					}
					select {
					case <-stop:
						return
					case <-time.After(100 * time.Millisecond):
					}
				}
			}()
			b.ResetTimer()
			for range b.N {
				id := schema.NewJobID()
				done := make(chan schema.State, 1)
				sub, err := s.clientNC.Subscribe(broker.EventSubject(id, string(schema.KindFinished)), func(m *nats.Msg) {
					if ev, err := schema.DecodeEvent(m.Data); err == nil {
						done <- ev.State
					}
				})
				if err != nil {
					b.Fatal(err)
				}
				// The core module has no text parameter: the values go to
				// core.echo's text, and the run is core.true's (no-op) or
				// echo's (one process each).
				if _, err := s.client.Submit(context.Background(), schema.Request{ID: id, Command: "core.echo", Principal: "bench",
					Each: &schema.Each{Param: "text", Values: values}, Parallel: 32}); err != nil {
					b.Fatal(err)
				}
				if st := <-done; st != schema.StateSucceeded {
					b.Fatalf("fan-out ended %s", st)
				}
				_ = sub.Unsubscribe()
			}
			b.StopTimer()
			close(stop)
			<-sampled
			b.ReportMetric(b.Elapsed().Seconds()/float64(b.N), "s/fanout")
			b.ReportMetric(float64(b.N*schema.MaxFanout)/b.Elapsed().Seconds(), "children/s")
			b.ReportMetric(float64(peak.Load())/(1<<20), "peak-heap-MiB")
			js, _ := jetstream.New(s.clientNC)
			if info, err := js.AccountInfo(context.Background()); err == nil {
				b.ReportMetric(float64(info.Store)/(1<<20), "js-store-MiB")
				b.ReportMetric(float64(info.Memory)/(1<<20), "js-memory-MiB")
			}
		})
	}
}
