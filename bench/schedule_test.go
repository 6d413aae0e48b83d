package bench

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/winchhq/winch/broker"
	"github.com/winchhq/winch/internal/testenv"
	"github.com/winchhq/winch/schedule"
	"github.com/winchhq/winch/schema"
)

// scheduleDef is schedule i of a benchmark, owned by one of ten principals.
func scheduleDef(i int, spec schedule.Spec) schedule.Definition {
	return schedule.Definition{
		Version: schedule.Version, Name: fmt.Sprintf("s%05d", i), Owner: fmt.Sprintf("owner%d", i%10),
		Cron: spec.Cron, TimeZone: spec.TimeZone, Every: schema.Duration(spec.Every), At: spec.At,
		CatchUp: schedule.CatchUpRunOnce, CreatedAt: time.Now().UTC(),
		Request: schema.Request{Command: "core.true", Queue: schema.DefaultQueue},
	}
}

// putSchedules stores n schedules, publishing asynchronously.
func putSchedules(b *testing.B, js jetstream.JetStream, n int, spec func(i int) schedule.Spec) {
	b.Helper()
	for i := range n {
		d := scheduleDef(i, spec(i))
		msg := nats.NewMsg(broker.ScheduleSubject(d.Name, d.Owner))
		msg.Data = d.Encode()
		sp := d.Spec()
		msg.Header.Set(schedule.HeaderSchedule, sp.Pattern())
		if sp.TimeZone != "" {
			msg.Header.Set(schedule.HeaderScheduleTimeZone, sp.TimeZone)
		}
		msg.Header.Set(schedule.HeaderScheduleTarget, broker.FireSubject(d.Name, d.Owner))
		if _, err := js.PublishMsgAsync(msg); err != nil {
			b.Fatal(err)
		}
		if i%1000 == 999 || i == n-1 {
			select {
			case <-js.PublishAsyncComplete():
			case <-time.After(time.Minute):
				b.Fatal("schedules not acknowledged within a minute")
			}
		}
	}
}

// rssKiB is the process's resident memory: the embedded server, the worker
// and the client together.
func rssKiB() int64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return n
		}
	}
	return 0
}

func heapMiB() float64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return float64(m.HeapInuse) / (1 << 20)
}

// idleCPU is the process's CPU per second of wall time over d while
// nothing runs.
func idleCPU(d time.Duration) time.Duration {
	c0, t0 := cpuTime(), time.Now()
	time.Sleep(d)
	return time.Duration(float64(cpuTime()-c0) / time.Since(t0).Seconds())
}

// BenchmarkSchedulesIdle: 10,000 schedules defined (daily crons in ten time
// zones, none due during the run), a worker serving: what they cost while
// nothing fires, against the same stack with none. The server, the worker
// and the client are one process here, so memory and CPU are theirs
// together. Run with -benchtime 1x.
func BenchmarkSchedulesIdle(b *testing.B) {
	zones := []string{"UTC", "Europe/Berlin", "America/New_York", "Asia/Tokyo", "Australia/Sydney", "Europe/London", "America/Los_Angeles", "Asia/Kolkata", "Africa/Lagos", "America/Sao_Paulo"}
	for range b.N {
		s := startStack(b, noopExecutor{}, 4, broker.Topology{})
		js, err := jetstream.New(s.clientNC)
		if err != nil {
			b.Fatal(err)
		}
		window := 5 * time.Second
		time.Sleep(time.Second) // settle after start
		heap0, rss0, cpu0 := heapMiB(), rssKiB(), idleCPU(window)
		began := time.Now()
		// 03:00 on the day after tomorrow, local to each zone: never due now.
		day := (time.Now().Day()+2)%28 + 1
		putSchedules(b, js, 10_000, func(i int) schedule.Spec {
			return schedule.Spec{Cron: fmt.Sprintf("%d 3 %d * *", i%60, day), TimeZone: zones[i%len(zones)]}
		})
		define := time.Since(began)
		time.Sleep(time.Second)
		heap1, rss1, cpu1 := heapMiB(), rssKiB(), idleCPU(window)
		t0 := time.Now()
		list, err := s.client.Schedules(context.Background())
		if err != nil || len(list) != 10_000 {
			b.Fatalf("listed %d schedules: %v", len(list), err)
		}
		listTook := time.Since(t0)
		b.ReportMetric(float64(define.Milliseconds()), "define-10k-ms")
		b.ReportMetric(float64(listTook.Milliseconds()), "list-10k-ms")
		b.ReportMetric(heap1-heap0, "heap-MiB-added")
		b.ReportMetric(float64(rss1-rss0)/1024, "rss-MiB-added")
		b.ReportMetric(float64(cpu0.Microseconds())/1000, "idle-cpu-ms/s-none")
		b.ReportMetric(float64(cpu1.Microseconds())/1000, "idle-cpu-ms/s-10k")
	}
}

// BenchmarkScheduleFireJitter: 1,000 schedules (@at) due in the same second;
// how long after that second each fire reaches the stream (the server's
// part), becomes a request (the worker's relay) and its job is accepted
// (a worker of the no-op executor, concurrency 32). Run with -benchtime 1x.
func BenchmarkScheduleFireJitter(b *testing.B) {
	const n = 1000
	for range b.N {
		s := startStack(b, noopExecutor{}, *pipelinedConcurrency, broker.Topology{})
		js, err := jetstream.New(s.clientNC)
		if err != nil {
			b.Fatal(err)
		}
		var mu sync.Mutex
		accepted := map[string]time.Time{}
		sub, err := s.clientNC.Subscribe("winch.events.*.accepted", func(m *nats.Msg) {
			ev, err := schema.DecodeEvent(m.Data)
			if err != nil || ev.Schedule == "" {
				return
			}
			mu.Lock()
			accepted[ev.JobID] = time.Now()
			mu.Unlock()
		})
		if err != nil {
			b.Fatal(err)
		}
		due := time.Now().Add(4 * time.Second).Truncate(time.Second)
		putSchedules(b, js, n, func(int) schedule.Spec { return schedule.Spec{At: due} })
		deadline := time.Now().Add(90 * time.Second)
		for {
			mu.Lock()
			got := len(accepted)
			mu.Unlock()
			if got >= n || time.Now().After(deadline) {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		_ = sub.Unsubscribe()
		st, err := schedule.Open(context.Background(), js)
		if err != nil {
			b.Fatal(err)
		}
		var fire, relay, accept []time.Duration
		stream, _ := js.Stream(context.Background(), broker.SchedulesStream)
		for i := range n {
			d := scheduleDef(i, schedule.Spec{At: due})
			if raw, err := stream.GetLastMsgForSubject(context.Background(), broker.FireSubject(d.Name, d.Owner)); err == nil {
				fire = append(fire, raw.Time.Sub(due))
			}
			if r, ok, err := st.LastRun(context.Background(), d.Name, d.Owner); err == nil && ok {
				relay = append(relay, r.Relayed.Sub(due))
			}
			mu.Lock()
			if t, ok := accepted[schedule.JobID(d.Name, d.Owner, due)]; ok {
				accept = append(accept, t.Sub(due))
			}
			mu.Unlock()
		}
		if len(accept) < n {
			b.Fatalf("%d of %d fires accepted", len(accept), n)
		}
		for _, m := range []struct {
			name string
			d    []time.Duration
		}{{"fire", fire}, {"relay", relay}, {"accept", accept}} {
			b.ReportMetric(float64(percentile(m.d, 0.50).Milliseconds()), m.name+"-p50-ms")
			b.ReportMetric(float64(percentile(m.d, 0.99).Milliseconds()), m.name+"-p99-ms")
		}
		b.ReportMetric(float64(percentile(accept, 1).Milliseconds()), "accept-max-ms")
	}
}

// procStat is the resident memory (KiB) and user+system CPU of process pid,
// from /proc.
func procStat(pid int) (rssKiB int64, cpu time.Duration) {
	if data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
		for line := range strings.SplitSeq(string(data), "\n") {
			if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
				rssKiB, _ = strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			}
		}
	}
	if data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
		// utime and stime are the 12th and 13th fields after the command
		// name, in ticks of 1/100 s.
		_, rest, _ := strings.Cut(string(data), ") ")
		if f := strings.Fields(rest); len(f) >= 13 {
			u, _ := strconv.ParseInt(f[11], 10, 64)
			s, _ := strconv.ParseInt(f[12], 10, 64)
			cpu = time.Duration(u+s) * 10 * time.Millisecond
		}
	}
	return rssKiB, cpu
}

// idleProcs is the CPU per second of wall time over d of each process.
func idleProcs(d time.Duration, pids ...int) []time.Duration {
	before := make([]time.Duration, len(pids))
	for i, pid := range pids {
		_, before[i] = procStat(pid)
	}
	t0 := time.Now()
	time.Sleep(d)
	out := make([]time.Duration, len(pids))
	for i, pid := range pids {
		_, c := procStat(pid)
		out[i] = time.Duration(float64(c-before[i]) / time.Since(t0).Seconds())
	}
	return out
}

// startBroker runs a NATS server with JetStream on disk in a process of its
// own (the test binary again, as testenv.ServerChildMain runs it) and
// returns its URL and process.
func startBroker(b *testing.B) (string, *exec.Cmd) {
	b.Helper()
	dir := b.TempDir()
	url := fmt.Sprintf("nats://127.0.0.1:%d", testenv.FreePort(b))
	conf := filepath.Join(dir, "nats.conf")
	if err := os.WriteFile(conf, fmt.Appendf(nil, "listen: %s\njetstream { store_dir: %q }\n", strings.TrimPrefix(url, "nats://"), filepath.Join(dir, "js")), 0o644); err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$", "-test.bench=^$")
	cmd.Env = append(os.Environ(), testenv.ServerChildEnv(conf))
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	})
	if line, err := bufio.NewReader(out).ReadString('\n'); err != nil || strings.TrimSpace(line) != "ready" {
		b.Fatalf("broker did not start: %q %v", line, err)
	}
	return url, cmd
}

// BenchmarkSchedulesIdleProcesses is BenchmarkSchedulesIdle with the
// broker and the worker in processes of their own, as deployed: what 10,000
// defined schedules cost each of them while nothing fires. Run with
// -benchtime 1x.
func BenchmarkSchedulesIdleProcesses(b *testing.B) {
	zones := []string{"UTC", "Europe/Berlin", "America/New_York", "Asia/Tokyo", "Australia/Sydney", "Europe/London", "America/Los_Angeles", "Asia/Kolkata", "Africa/Lagos", "America/Sao_Paulo"}
	for range b.N {
		url, brokerCmd := startBroker(b)
		nc, err := nats.Connect(url)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(nc.Close)
		js, err := jetstream.New(nc)
		if err != nil {
			b.Fatal(err)
		}
		if err := ensure(context.Background(), js, broker.Topology{}); err != nil {
			b.Fatal(err)
		}
		w := startChild(b, url, 0)
		pids := []int{brokerCmd.Process.Pid, w.cmd.Process.Pid}
		window := 5 * time.Second
		time.Sleep(time.Second) // settle after start
		cpu0 := idleProcs(window, pids...)
		brokerRSS0, _ := procStat(pids[0])
		workerRSS0, _ := procStat(pids[1])
		day := (time.Now().Day()+2)%28 + 1
		putSchedules(b, js, 10_000, func(i int) schedule.Spec {
			return schedule.Spec{Cron: fmt.Sprintf("%d 3 %d * *", i%60, day), TimeZone: zones[i%len(zones)]}
		})
		time.Sleep(time.Second)
		cpu1 := idleProcs(window, pids...)
		brokerRSS1, _ := procStat(pids[0])
		workerRSS1, _ := procStat(pids[1])
		b.ReportMetric(float64(brokerRSS0)/1024, "broker-rss-MiB-none")
		b.ReportMetric(float64(brokerRSS1)/1024, "broker-rss-MiB-10k")
		b.ReportMetric(float64(workerRSS0)/1024, "worker-rss-MiB-none")
		b.ReportMetric(float64(workerRSS1)/1024, "worker-rss-MiB-10k")
		b.ReportMetric(float64(cpu0[0].Microseconds())/1000, "broker-idle-cpu-ms/s-none")
		b.ReportMetric(float64(cpu1[0].Microseconds())/1000, "broker-idle-cpu-ms/s-10k")
		b.ReportMetric(float64(cpu0[1].Microseconds())/1000, "worker-idle-cpu-ms/s-none")
		b.ReportMetric(float64(cpu1[1].Microseconds())/1000, "worker-idle-cpu-ms/s-10k")
	}
}
