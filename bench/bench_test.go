// Package bench measures winch against the baselines a user would compare it
// with. Run with `make bench`; results are recorded in BENCHMARKS.md.
package bench

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/client"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/winchhq/winch/broker"
	"github.com/winchhq/winch/internal/testenv"
	"github.com/winchhq/winch/schema"
	"github.com/winchhq/winch/worker"
	"github.com/winchhq/winch/worker/docker"
	"github.com/winchhq/winch/worker/process"
)

// server starts an embedded NATS server for one benchmark, on disk as winch
// dev runs it, or with the nats-server configuration conf, if given.
func server(b *testing.B, conf ...string) *nats.Conn {
	b.Helper()
	dir := b.TempDir()
	srv, err := testenv.StartNATS(dir)
	if len(conf) > 0 {
		srv, err = startConfigured(dir, conf[0])
	}
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

// clusterConn starts a three-server cluster of the benchmark's own, with
// the servers' default sync (every 2 minutes: a write is safe once a
// quorum has it in memory), and connects to all three.
func clusterConn(b *testing.B) (*nats.Conn, *testenv.Cluster) {
	b.Helper()
	c := testenv.StartCluster(b, 3)
	nc, err := nats.Connect(c.URLs())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(nc.Close)
	return nc, c
}

// startConfigured starts a server with winch's defaults and conf.
func startConfigured(dir, conf string) (*broker.Server, error) {
	path := filepath.Join(dir, "nats.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	srv, err := broker.NewServer(broker.ServerConfig{ConfigFile: path, DataDir: filepath.Join(dir, "data"), ListenURL: "nats://127.0.0.1:0", Name: "winch-bench", NoMonitoring: true})
	if err != nil {
		return nil, err
	}
	return srv, srv.Start(context.Background())
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
// on the same embedded server, one at a time and in a stream (and in a
// stream with every write synced, as nats.conf has it).
func BenchmarkRawJetStream(b *testing.B) {
	payload := []byte(`{"version":1,"id":"06h28epmilf65fc1q5igsc3mkc","command":"core.true","queue":"default","principal":"bench","created_at":"2026-11-28T22:16:30.101Z"}`)
	for _, mode := range []string{"sequential", "pipelined", "pipelined-fsync", "pipelined-R3"} {
		b.Run(mode, func(b *testing.B) {
			var nc *nats.Conn
			systemCPU, replicas := cpuTime, 1
			switch mode {
			case "pipelined-fsync":
				nc = server(b, syncAlways)
			case "pipelined-R3":
				var c *testenv.Cluster
				nc, c = clusterConn(b)
				systemCPU = func() time.Duration { return cpuTime() + c.CPUTime() }
				replicas = 3
			default:
				nc = server(b)
			}
			ctx := context.Background()
			js, _ := jetstream.New(nc)
			if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "RAW", Subjects: []string{"raw.>"},
				Retention: jetstream.WorkQueuePolicy, Storage: jetstream.FileStorage, Replicas: replicas}); err != nil {
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
			cpu := systemCPU()
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
				} else if _, err := js.PublishAsync("raw.default.bench", payload, jetstream.WithMsgID(fmt.Sprint(i)), jetstream.WithStallWait(time.Minute)); err != nil {
					b.Fatal(err)
				}
			}
			<-done
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
			b.ReportMetric((systemCPU()-cpu).Seconds()*1000/float64(b.N), "cpu-ms/msg")
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
		b.Run(mode, func(b *testing.B) { noopJobs(b, mode, &process.Executor{}) })
	}
}

// BenchmarkNoopJobDocker is the same path with the docker executor: each job
// a container of its own, with every isolation default.
func BenchmarkNoopJobDocker(b *testing.B) {
	api := dockerAPI(b)
	for _, mode := range []string{"sequential", "pipelined"} {
		b.Run(mode, func(b *testing.B) { noopJobs(b, mode, &docker.Executor{API: api}) })
	}
}

func noopJobs(b *testing.B, mode string, exec worker.Executor) {
	measureJobs(b, startStack(b, exec, 8, broker.Topology{}), mode)
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

func dockerAPI(b *testing.B) *client.Client {
	b.Helper()
	api, err := docker.Connect(context.Background())
	if err != nil {
		b.Skipf("no docker engine: %v", err)
	}
	b.Cleanup(func() { api.Close() })
	if err := (&docker.Executor{API: api}).CheckImage(context.Background()); err != nil {
		b.Skip(err)
	}
	return api
}

// BenchmarkDockerRunTrue is what a user would compare a container job with:
// `docker run --rm` of the toolbox running `true`, with no network.
func BenchmarkDockerRunTrue(b *testing.B) {
	dockerAPI(b)
	for range b.N {
		if out, err := exec.Command("docker", "run", "--rm", "--network", "none", docker.DefaultImage, "true").CombinedOutput(); err != nil {
			b.Fatalf("%v: %s", err, out)
		}
	}
}

// BenchmarkContainerExecutor is the docker executor alone, without NATS:
// create (with every isolation default), copy the parameters in, attach,
// start, wait, inspect and remove one container running `true`. The
// per-step times show what a pool of pre-created containers could save.
func BenchmarkContainerExecutor(b *testing.B) {
	api := dockerAPI(b)
	e := &docker.Executor{API: &timedAPI{API: api}}
	t := e.API.(*timedAPI)
	ctx := context.Background()
	b.ResetTimer()
	for i := range b.N {
		job := &worker.Job{ID: fmt.Sprintf("bench-%d-%d", time.Now().UnixNano(), i), Attempt: 1, Worker: "bench", Command: "core.true",
			Spec: schema.CommandSpec{Run: []string{"true"}}, Stdout: io.Discard, Stderr: io.Discard,
			Starting: func() error { return nil }, Started: func(worker.StartInfo) {}}
		if res, err := e.Run(ctx, job); err != nil || res.ExitCode != 0 {
			b.Fatalf("run: %+v %v", res, err)
		}
	}
	b.StopTimer()
	for _, step := range []string{"create", "start", "wait", "remove"} {
		b.ReportMetric(float64(t.total[step].Microseconds())/float64(b.N), step+"-µs/op")
	}
}

// timedAPI adds up the time of each step of a container's life.
type timedAPI struct {
	docker.API
	total map[string]time.Duration
}

func (t *timedAPI) add(step string, began time.Time) {
	if t.total == nil {
		t.total = map[string]time.Duration{}
	}
	t.total[step] += time.Since(began)
}

func (t *timedAPI) ContainerCreate(ctx context.Context, cfg *container.Config, host *container.HostConfig, net *network.NetworkingConfig, p *ocispec.Platform, name string) (container.CreateResponse, error) {
	defer t.add("create", time.Now())
	return t.API.ContainerCreate(ctx, cfg, host, net, p, name)
}

func (t *timedAPI) ContainerStart(ctx context.Context, id string, opts container.StartOptions) error {
	defer t.add("start", time.Now())
	return t.API.ContainerStart(ctx, id, opts)
}

func (t *timedAPI) ContainerWait(ctx context.Context, id string, cond container.WaitCondition) (<-chan container.WaitResponse, <-chan error) {
	began := time.Now()
	res, errs := t.API.ContainerWait(ctx, id, cond)
	out := make(chan container.WaitResponse, 1)
	go func() {
		select {
		case r := <-res:
			t.add("wait", began)
			out <- r
		case <-ctx.Done():
		}
	}()
	return out, errs
}

func (t *timedAPI) ContainerRemove(ctx context.Context, id string, opts container.RemoveOptions) error {
	defer t.add("remove", time.Now())
	return t.API.ContainerRemove(ctx, id, opts)
}
