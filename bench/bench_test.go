// Package bench measures winch against the baselines a user would compare it
// with. Run with `make bench`; results are recorded in BENCHMARKS.md.
package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/winchhq/winch/internal/testenv"
	"github.com/winchhq/winch/modules"
	"github.com/winchhq/winch/producer"
	"github.com/winchhq/winch/schema"
	"github.com/winchhq/winch/worker"
	"github.com/winchhq/winch/worker/process"
)

// server starts an embedded NATS server for one benchmark, on disk as winch
// dev runs it.
func server(b *testing.B) *nats.Conn {
	b.Helper()
	dir := b.TempDir()
	srv, err := testenv.StartNATS(dir)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(srv.Stop)
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(nc.Close)
	return nc
}

func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	slices.Sort(d)
	return d[min(len(d)-1, int(float64(len(d))*p))]
}

func reportLatency(b *testing.B, name string, lat []time.Duration) {
	b.ReportMetric(float64(percentile(lat, 0.50).Microseconds()), name+"-p50-µs")
	b.ReportMetric(float64(percentile(lat, 0.99).Microseconds()), name+"-p99-µs")
}

// BenchmarkRawJetStream is the floor: publish a request-sized message to a
// work-queue stream and take it with a pull consumer, with explicit acks,
// on the same embedded server, one at a time and in a stream.
func BenchmarkRawJetStream(b *testing.B) {
	payload := []byte(`{"version":1,"id":"06h28epmilf65fc1q5igsc3mkc","command":"core.true","queue":"default","principal":"bench","created_at":"2026-11-28T22:16:30.101Z"}`)
	for _, mode := range []string{"sequential", "pipelined"} {
		b.Run(mode, func(b *testing.B) {
			nc := server(b)
			ctx := context.Background()
			js, _ := jetstream.New(nc)
			if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "RAW", Subjects: []string{"raw.>"},
				Retention: jetstream.WorkQueuePolicy, Storage: jetstream.FileStorage}); err != nil {
				b.Fatal(err)
			}
			cons, err := js.CreateOrUpdateConsumer(ctx, "RAW", jetstream.ConsumerConfig{Durable: "raw", AckPolicy: jetstream.AckExplicitPolicy})
			if err != nil {
				b.Fatal(err)
			}
			sent := make([]time.Time, b.N)
			lat := make([]time.Duration, 0, b.N)
			var mu sync.Mutex
			done := make(chan struct{})
			got := 0
			cc, err := cons.Consume(func(m jetstream.Msg) {
				meta, _ := m.Metadata()
				_ = m.Ack()
				mu.Lock()
				defer mu.Unlock()
				lat = append(lat, time.Since(sent[meta.Sequence.Stream-1]))
				if got++; got == b.N {
					close(done)
				}
			})
			if err != nil {
				b.Fatal(err)
			}
			defer cc.Stop()
			b.ResetTimer()
			for i := range b.N {
				mu.Lock()
				sent[i] = time.Now()
				mu.Unlock()
				if mode == "sequential" {
					if _, err := js.Publish(ctx, "raw.default.bench", payload, jetstream.WithMsgID(fmt.Sprint(i))); err != nil {
						b.Fatal(err)
					}
					for {
						mu.Lock()
						n := got
						mu.Unlock()
						if n > i {
							break
						}
						time.Sleep(10 * time.Microsecond)
					}
				} else if _, err := js.PublishAsync("raw.default.bench", payload, jetstream.WithMsgID(fmt.Sprint(i))); err != nil {
					b.Fatal(err)
				}
			}
			<-done
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
			reportLatency(b, "publish-to-consume", lat)
		})
	}
}

// BenchmarkNoopJob is winch's whole path for a command that does nothing:
// submit (publish + state entry), a worker claims it (compare-and-set),
// emits accepted, runs `true` with the process executor, emits started and
// finished, records the end and acks. Sequential measures one job at a time
// end to end; pipelined submits every job at once to a worker of
// concurrency 8 and measures throughput.
func BenchmarkNoopJob(b *testing.B) {
	for _, mode := range []string{"sequential", "pipelined"} {
		b.Run(mode, func(b *testing.B) {
			nc := server(b)
			ctx := context.Background()
			catalog, _ := modules.NewCatalog(modules.Core())
			w, err := worker.New(nc, worker.Config{ID: "bench", Concurrency: 8, Catalog: catalog, Executor: &process.Executor{}})
			if err != nil {
				b.Fatal(err)
			}
			if err := w.Start(ctx); err != nil {
				b.Fatal(err)
			}
			defer func() { _ = w.Stop(ctx) }()
			client, err := producer.New(ctx, nc, nil)
			if err != nil {
				b.Fatal(err)
			}

			var mu sync.Mutex
			created := map[string]time.Time{}
			var startLat, endLat []time.Duration
			finished := make(chan struct{}, b.N)
			sub, err := nc.Subscribe("winch.events.*.*", func(m *nats.Msg) {
				var ev schema.Event
				if json.Unmarshal(m.Data, &ev) != nil {
					return
				}
				mu.Lock()
				defer mu.Unlock()
				switch ev.Kind {
				case schema.KindStarted:
					startLat = append(startLat, ev.Time.Sub(created[ev.JobID]))
				case schema.KindFinished:
					endLat = append(endLat, time.Since(created[ev.JobID]))
					if ev.State != schema.StateSucceeded {
						fmt.Fprintln(os.Stderr, "job failed:", ev.Error)
					}
					finished <- struct{}{}
				}
			})
			if err != nil {
				b.Fatal(err)
			}
			defer func() { _ = sub.Unsubscribe() }()

			b.ResetTimer()
			for range b.N {
				id := schema.NewJobID()
				now := time.Now()
				mu.Lock()
				created[id] = now
				mu.Unlock()
				if _, err := client.Submit(ctx, schema.Request{ID: id, Command: "core.true", Principal: "bench", CreatedAt: now}); err != nil {
					b.Fatal(err)
				}
				if mode == "sequential" {
					<-finished
				}
			}
			if mode == "pipelined" {
				for range b.N {
					<-finished
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "jobs/s")
			reportLatency(b, "enqueue-to-start", startLat)
			reportLatency(b, "enqueue-to-finish", endLat)
		})
	}
}

// BenchmarkExecTrue is the executor's floor: os/exec running `true`, as the
// process executor does for core.true, without winch around it.
func BenchmarkExecTrue(b *testing.B) {
	for range b.N {
		if err := exec.Command("true").Run(); err != nil {
			b.Fatal(err)
		}
	}
}
