package docker_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/winchhq/winch/internal/jobtest"
	"github.com/winchhq/winch/internal/testenv"
	"github.com/winchhq/winch/schema"
	"github.com/winchhq/winch/worker"
	"github.com/winchhq/winch/worker/docker"
)

func TestExitCodesAndOutput(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.StartWorker(worker.Config{})

	events := e.Follow(e.Submit("core.echo", map[string]any{"text": "hello from a container"}))
	if got := jobtest.Kinds(events); got != "accepted(running) started log finished(succeeded)" {
		t.Fatalf("events: %s", got)
	}
	started := events[1]
	if started.Executor != docker.Name || !strings.HasPrefix(started.Image, docker.DefaultImage+"@sha256:") {
		t.Fatalf("started event: executor %q image %q", started.Executor, started.Image)
	}
	if out := jobtest.Output(events, schema.Stdout); out != "hello from a container\n" {
		t.Fatalf("stdout %q", out)
	}
	for _, code := range []int64{0, 3, 255} {
		end := jobtest.Last(e.Follow(e.Submit("core.exit", map[string]any{"code": code})))
		if end.ExitCode == nil || int64(*end.ExitCode) != code {
			t.Errorf("exit %d: got %v (%s)", code, end.ExitCode, end.State)
		}
	}
}

func TestStdoutAndStderrApartAndInOrder(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.StartWorker(worker.Config{})
	events := e.Follow(e.Submit("dtest.interleave", nil))
	if out, errOut := jobtest.Output(events, schema.Stdout), jobtest.Output(events, schema.Stderr); out != "a\nc\n" || errOut != "b\nd\n" {
		t.Fatalf("stdout %q, stderr %q", out, errOut)
	}
}

// The defaults isolate: no root, no capabilities, no new privileges, no
// network, a read-only root with a writable /tmp, no Docker socket. The
// engine's init is PID 1.
func TestIsolationByDefault(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.StartWorker(worker.Config{})
	events := e.Follow(e.Submit("dtest.inspect", map[string]any{"word": "secretless"}))
	if end := jobtest.Last(events); end.State != schema.StateSucceeded {
		t.Fatalf("inspect ended %s: %s", end.State, jobtest.Output(events, schema.Stderr))
	}
	got := map[string]string{}
	for _, line := range strings.Split(jobtest.Output(events, schema.Stdout), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			got[k] = strings.TrimSpace(v)
		}
	}
	want := map[string]string{
		"uid": "65534", "CapEff": "0000000000000000", "CapPrm": "0000000000000000", "NoNewPrivs": "1",
		"ifaces": "lo", "rootfs": "readonly", "tmp": "writable", "sock": "absent",
		"params": `{"word":"secretless"}`, "pid1": "docker-init",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
	if !strings.Contains(got["connect"], "Network is unreachable") {
		t.Errorf("a connection attempt was not refused by the absence of a network: %q", got["connect"])
	}
}

func TestMemoryLimitReportsOOM(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.StartWorker(worker.Config{})
	id := e.Submit("dtest.oom", nil)
	end := jobtest.Last(e.Follow(id))
	if end.State != schema.StateFailed || end.Reason != schema.ReasonOOMKilled || end.Error != "killed: out of memory" {
		code := "none"
		if end.ExitCode != nil {
			code = fmt.Sprint(*end.ExitCode)
		}
		t.Fatalf("ended %s, reason %q, error %q, exit %s", end.State, end.Reason, end.Error, code)
	}
	if st := e.Status(id); st.Reason != schema.ReasonOOMKilled {
		t.Fatalf("state reason %q", st.Reason)
	}
}

func TestPidsLimit(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.StartWorker(worker.Config{})
	events := e.Follow(e.Submit("dtest.forks", nil, func(r *schema.Request) { r.Timeout = schema.Duration(30 * time.Second) }))
	if stderr := jobtest.Output(events, schema.Stderr); !strings.Contains(stderr, "can't fork") {
		t.Fatalf("16 processes ran under a pids limit of 8; stderr %q", stderr)
	}
}

func TestCancelAndTimeoutEndTheContainer(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.StartWorker(worker.Config{})

	id := e.Submit("core.sleep", map[string]any{"seconds": 60})
	e.WaitFor(id, schema.KindStarted)
	list := containersOf(t, id)
	if len(list) != 1 {
		t.Fatalf("%d containers for a running job", len(list))
	}
	// The container as the engine sees it: the defaults of an unlimited
	// manifest, named and labelled for the job.
	info, err := api.ContainerInspect(t.Context(), list[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	hc := info.HostConfig
	if info.Name != "/"+docker.ContainerName(id, 1) || info.Config.Labels[docker.LabelCommand] != "core.sleep" ||
		hc.Privileged || !hc.ReadonlyRootfs || len(hc.CapDrop) != 1 || hc.CapDrop[0] != "ALL" ||
		len(hc.SecurityOpt) != 1 || hc.SecurityOpt[0] != "no-new-privileges" || hc.NetworkMode != "none" ||
		hc.Memory != int64(docker.Defaults.Memory) || hc.NanoCPUs != 1e9 || hc.PidsLimit == nil || *hc.PidsLimit != docker.Defaults.Pids ||
		len(hc.Binds) != 0 || info.Config.User != docker.User || hc.Init == nil || !*hc.Init {
		t.Fatalf("container %s: user %q, host config %+v", info.Name, info.Config.User, hc)
	}
	began := time.Now()
	if _, err := e.Client.Cancel(t.Context(), id, "tester"); err != nil {
		t.Fatal(err)
	}
	if end := jobtest.Last(e.Follow(id)); end.State != schema.StateCancelled {
		t.Fatalf("cancelled job ended %s", end.State)
	}
	t.Logf("cancel to end: %v", time.Since(began))
	if n := len(containersOf(t, id)); n != 0 {
		t.Fatalf("%d containers left after cancel", n)
	}

	id = e.Submit("dtest.stubborn", nil, func(r *schema.Request) { r.Timeout = schema.Duration(time.Second) })
	if end := jobtest.Last(e.Follow(id)); end.State != schema.StateTimedOut {
		t.Fatalf("a command that ignores SIGTERM ended %s", end.State)
	}
	if n := len(containersOf(t, id)); n != 0 {
		t.Fatalf("%d containers left after the timeout", n)
	}
}

// A command that writes 50 MiB is streamed: every byte arrives, in batches,
// and the worker (a process of its own here) does not hold the output.
func TestLargeOutputIsStreamedWithBoundedMemory(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c := e.StartChild("flood-" + e.Queue)
	before := procStatus(t, c.PID(), "VmRSS")
	const mb = 50
	id := e.Submit("dtest.flood", map[string]any{"mb": mb})
	var bytes, events int
	end := e.Watch(id, func(ev schema.Event) {
		if ev.Kind == schema.KindLog && ev.Stream == schema.Stdout {
			bytes += len(ev.Data)
			events++
		}
	})
	peak := procStatus(t, c.PID(), "VmHWM")
	if end.State != schema.StateSucceeded || bytes != mb<<20 {
		t.Fatalf("ended %s with %d bytes of output, want %d", end.State, bytes, mb<<20)
	}
	t.Logf("%d MiB in %d log events; worker RSS %d KiB before, peak %d KiB", mb, events, before, peak)
	if growth := peak - before; growth > (mb<<10)/2 {
		t.Fatalf("the worker's memory grew by %d KiB while streaming %d MiB: output is being held", growth, mb)
	}
}

// procStatus reads a KiB field of /proc/<pid>/status.
func procStatus(t *testing.T, pid int, field string) int {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			if err != nil {
				t.Fatalf("%s: %q", field, v)
			}
			return n
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}

// A worker killed mid-run leaves its container running; the reaper of any
// live worker stops and removes it, says so in an event, and records the
// job (which may not run twice) as lost.
func TestReaperRemovesContainerOfKilledWorker(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c := e.StartChild("doomed-" + e.Queue)
	id := e.Submit("dtest.once", map[string]any{"seconds": 120})
	e.WaitFor(id, schema.KindStarted)
	c.Kill()
	if list := containersOf(t, id); len(list) != 1 || list[0].State != "running" {
		t.Fatalf("after the kill the job's containers are %+v, want one running", list)
	}
	// A worker of another queue: only its reaper can remove the container.
	e.StartWorker(worker.Config{Queues: []string{e.Queue + "-x"}})
	if !jobtest.Eventually(30*time.Second, func() bool { return len(containersOf(t, id)) == 0 }) {
		t.Fatal("the reaper did not remove the container")
	}
	events := e.Follow(id)
	if !strings.Contains(jobtest.Kinds(events), "reaped") {
		t.Fatalf("no reaped event: %s", jobtest.Kinds(events))
	}
	if end := jobtest.Last(events); end.State != schema.StateFailed || end.Reason != schema.ReasonWorkerLost {
		t.Fatalf("job ended %s (%s)", end.State, end.Reason)
	}
}

// A retryable job whose worker was killed mid-run runs again elsewhere, and
// at no moment do two containers of it run.
func TestRedeliveredJobNeverRunsTwoContainers(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c := e.StartChild("crashy-" + e.Queue)
	id := e.Submit("core.sleep", map[string]any{"seconds": 3})
	e.WaitFor(id, schema.KindStarted)

	var peak atomic.Int64
	stop := make(chan struct{})
	var sampler sync.WaitGroup
	sampler.Go(func() {
		for {
			running := 0
			for _, ct := range containersOf(t, id) {
				if ct.State == "running" {
					running++
				}
			}
			if int64(running) > peak.Load() {
				peak.Store(int64(running))
			}
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	})
	c.Kill()
	w := e.StartWorker(worker.Config{})
	end := jobtest.Last(e.Follow(id))
	close(stop)
	sampler.Wait()
	if end.State != schema.StateSucceeded || end.Worker != w.ID() || end.Attempt != 2 {
		t.Fatalf("ended %s on %s, attempt %d", end.State, end.Worker, end.Attempt)
	}
	if p := peak.Load(); p != 1 {
		t.Fatalf("%d containers of the job ran at once", p)
	}
	if n := len(containersOf(t, id)); n != 0 {
		t.Fatalf("%d containers left", n)
	}
}

// Running the same attempt twice (a redelivery to a second worker) follows
// the one container instead of creating another.
func TestSameAttemptFindsItsContainer(t *testing.T) {
	t.Parallel()
	if dockerErr != nil {
		testenv.Missing(t, "docker", dockerErr)
	}
	exec := &docker.Executor{API: api, KillGrace: 500 * time.Millisecond}
	id := fmt.Sprintf("same-attempt-%d", time.Now().UnixNano())
	spec := schema.CommandSpec{Run: []string{"sh", "-c", "sleep 1; echo done"}}
	var starts atomic.Int32
	run := func() (worker.Outcome, string, error) {
		var out strings.Builder
		var mu sync.Mutex
		job := &worker.Job{ID: id, Attempt: 1, Worker: "w", Command: "x.y", Spec: spec,
			Stdout: writerFunc(func(p []byte) { mu.Lock(); out.Write(p); mu.Unlock() }), Stderr: writerFunc(func([]byte) {}),
			Starting: func() error { return nil }, Started: func(worker.StartInfo) { starts.Add(1) }}
		res, err := exec.Run(context.Background(), job)
		mu.Lock()
		defer mu.Unlock()
		return res, out.String(), err
	}
	first := make(chan error, 1)
	go func() { _, _, err := run(); first <- err }()
	// Creating and starting a container takes seconds when the engine is
	// busy with the other tests' containers.
	if !jobtest.Eventually(30*time.Second, func() bool { return starts.Load() == 1 || len(first) == 1 }) || starts.Load() != 1 {
		select {
		case err := <-first:
			t.Fatalf("the first run ended without starting: %v", err)
		default:
			t.Fatal("the first run did not start within 30s")
		}
	}
	res, _, err := run()
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("second run: %+v, %v", res, err)
	}
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if starts.Load() != 2 {
		t.Fatalf("Started was called %d times, want once per run", starts.Load())
	}
	// Both runs remove the one container; the engine may still be finishing
	// the removal the other one asked for.
	if !jobtest.Eventually(5*time.Second, func() bool { return len(containersOf(t, id)) == 0 }) {
		t.Fatal("the container was not removed")
	}
}

type writerFunc func([]byte)

func (f writerFunc) Write(p []byte) (int, error) { f(p); return len(p), nil }

func TestTwentyJobsOnTwoWorkers(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w1 := e.StartWorker(worker.Config{ID: "par-1-" + e.Queue, Concurrency: 10})
	w2 := e.StartWorker(worker.Config{ID: "par-2-" + e.Queue, Concurrency: 10})
	var ids []string
	for range 20 {
		ids = append(ids, e.Submit("core.sleep", map[string]any{"seconds": 1}))
	}
	count := map[string]int{}
	for _, id := range ids {
		if end := jobtest.Last(e.Follow(id)); end.State != schema.StateSucceeded {
			t.Fatalf("job %s ended %s: %s", id, end.State, end.Error)
		}
		count[e.Status(id).Worker]++
	}
	if count[w1.ID()] == 0 || count[w2.ID()] == 0 {
		t.Fatalf("jobs per worker: %v", count)
	}
}

// The module's files are copied in at /module, where the command runs and
// can read them but not change them.
func TestModuleFilesAreCopiedIn(t *testing.T) {
	t.Parallel()
	if dockerErr != nil {
		testenv.Missing(t, "docker", dockerErr)
	}
	mod := t.TempDir()
	if err := os.MkdirAll(mod+"/scripts", 0o755); err != nil {
		t.Fatal(err)
	}
	script := "echo hello from $(pwd); if touch /module/new 2>/dev/null; then echo module=writable; else echo module=readonly; fi\n"
	if err := os.WriteFile(mod+"/scripts/hello.sh", []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	var mu sync.Mutex
	job := &worker.Job{ID: fmt.Sprintf("module-files-%d", time.Now().UnixNano()), Attempt: 1, Worker: "w", Command: "x.y",
		Spec: schema.CommandSpec{Run: []string{"sh", "scripts/hello.sh"}}, ModuleDir: mod,
		Stdout: writerFunc(func(p []byte) { mu.Lock(); out.Write(p); mu.Unlock() }), Stderr: writerFunc(func([]byte) {}),
		Starting: func() error { return nil }, Started: func(worker.StartInfo) {}}
	res, err := (&docker.Executor{API: api}).Run(context.Background(), job)
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("Run: %+v %v", res, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if out.String() != "hello from /module\nmodule=readonly\n" {
		t.Fatalf("output %q", out.String())
	}
}

// Two installations of winch may share an engine: a worker reaps only its
// own installation's containers.
func TestReaperLeavesOtherDeploymentsAlone(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	id := fmt.Sprintf("other-%d", time.Now().UnixNano())
	resp, err := api.ContainerCreate(t.Context(), &container.Config{Image: docker.DefaultImage, Cmd: []string{"sleep", "60"},
		Labels: map[string]string{docker.LabelJob: id, docker.LabelAttempt: "1", docker.LabelWorker: "elsewhere", docker.LabelDeployment: "another-install"}},
		&container.HostConfig{NetworkMode: "none"}, nil, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = api.ContainerRemove(context.Background(), resp.ID, container.RemoveOptions{Force: true})
	})
	time.Sleep(jobtest.Topology.Lease() + 500*time.Millisecond) // old enough to be judged
	e.StartWorker(worker.Config{})
	time.Sleep(time.Second) // a few reaper rounds
	if n := len(containersOf(t, id)); n != 1 {
		t.Fatalf("another installation's container was reaped (%d left)", n)
	}
}
