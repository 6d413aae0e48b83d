package docker_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/winchhq/winch/internal/jobtest"
	"github.com/winchhq/winch/internal/testenv"
	"github.com/winchhq/winch/metrics"
	"github.com/winchhq/winch/schema"
	"github.com/winchhq/winch/worker"
	"github.com/winchhq/winch/worker/docker"
	"github.com/winchhq/winch/worker/files"
)

// execJob is one attempt run straight through an executor, with what it
// was told and what it wrote.
type execJob struct {
	*worker.Job
	starting, started atomic.Int32
	mu                sync.Mutex
	stdout, stderr    strings.Builder
}

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9_.-]`)

func newExecJob(t *testing.T, run ...string) *execJob {
	t.Helper()
	if dockerErr != nil {
		testenv.Missing(t, "docker", dockerErr)
	}
	j := &execJob{}
	j.Job = &worker.Job{ID: fmt.Sprintf("exec-%s-%d", unsafeName.ReplaceAllString(t.Name(), "-"), time.Now().UnixNano()),
		Attempt: 1, Worker: "w", Command: "x.y", Spec: schema.CommandSpec{Run: run},
		Stdout:   writerFunc(func(p []byte) { j.mu.Lock(); j.stdout.Write(p); j.mu.Unlock() }),
		Stderr:   writerFunc(func(p []byte) { j.mu.Lock(); j.stderr.Write(p); j.mu.Unlock() }),
		Starting: func() error { j.starting.Add(1); return nil },
		Started:  func(worker.StartInfo) { j.started.Add(1) },
	}
	return j
}

func (j *execJob) output() (string, string) {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.stdout.String(), j.stderr.String()
}

// notStarted fails t unless the attempt was never started and left no
// container.
func (j *execJob) notStarted(t *testing.T) {
	t.Helper()
	if n, m := j.starting.Load(), j.started.Load(); n != 0 || m != 0 {
		t.Errorf("Starting called %d times, Started %d: the command was started", n, m)
	}
	if n := len(containersOf(t, j.ID)); n != 0 {
		t.Errorf("%d containers left", n)
	}
}

// The engine's init is PID 1: a plain sleep, which sets no handler, ends
// on the SIGTERM of a cancel instead of waiting out the kill grace for a
// SIGKILL.
func TestCancelEndsAPlainSleepBySIGTERM(t *testing.T) {
	t.Parallel()
	j := newExecJob(t, "sleep", "300")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	exec := &docker.Executor{API: api, KillGrace: 30 * time.Second}
	type result struct {
		out worker.Outcome
		err error
	}
	done := make(chan result, 1)
	go func() {
		out, err := exec.Run(ctx, j.Job)
		done <- result{out, err}
	}()
	if !jobtest.Eventually(30*time.Second, func() bool { return j.started.Load() == 1 }) {
		t.Fatal("the command did not start")
	}
	list := containersOf(t, j.ID)
	if len(list) != 1 {
		t.Fatalf("%d containers for a running job", len(list))
	}
	info, err := api.ContainerInspect(t.Context(), list[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	if info.HostConfig.Init == nil || !*info.HostConfig.Init {
		t.Fatalf("the container runs without an init: %v", info.HostConfig.Init)
	}
	began := time.Now()
	cancel()
	var res result
	select {
	case res = <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return within 20s of the cancel")
	}
	t.Logf("cancel to return: %v", time.Since(began))
	if res.err != nil || res.out.ExitCode != 128+15 {
		t.Fatalf("cancelled sleep: %+v, %v; want exit 143 (SIGTERM), not 137 (SIGKILL after the grace)", res.out, res.err)
	}
}

// An engine that cannot be reached is no fault of the command: the error is
// transient, and nothing was started.
func TestUnreachableEngineIsTransient(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := "tcp://" + l.Addr().String()
	l.Close()
	for _, tt := range []struct{ name, host string }{
		{"no socket", "unix:///nonexistent/docker.sock"},
		{"refused", refused},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := client.NewClientWithOpts(client.WithHost(tt.host), client.WithAPIVersionNegotiation())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			j := newExecJob(t, "sh", "-c", "echo ran")
			_, err = (&docker.Executor{API: c}).Run(t.Context(), j.Job)
			if err == nil || !worker.IsTransient(err) {
				t.Fatalf("Run against %s: %v, want a transient error", tt.host, err)
			}
			t.Logf("error: %v", err)
			j.notStarted(t)
		})
	}
}

// A derived image whose build fails, or an image that is not there, is no
// fault of the command: transient.
func TestImageTroubleIsTransient(t *testing.T) {
	t.Parallel()
	t.Run("build fails", func(t *testing.T) {
		t.Parallel()
		j := newExecJob(t, "true")
		j.Module = fmt.Sprintf("fail%d", time.Now().UnixNano()%1e9)
		j.Commit = "0123456789abcdef0123"
		j.Build = "Dockerfile"
		j.ModuleDir = t.TempDir()
		if err := os.WriteFile(j.ModuleDir+"/Dockerfile", []byte("FROM "+docker.DefaultImage+"\nRUN false\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		var log strings.Builder
		j.BuildLog = &log
		t.Cleanup(func() {
			_, _ = api.ImageRemove(context.Background(), docker.DerivedImage(j.Module, j.Commit), image.RemoveOptions{Force: true})
		})
		_, err := (&docker.Executor{API: api}).Run(t.Context(), j.Job)
		if err == nil || !worker.IsTransient(err) || !strings.Contains(err.Error(), "build the image of module "+j.Module) {
			t.Fatalf("Run: %v, want a transient build error", err)
		}
		t.Logf("error: %v\nbuild log:\n%s", err, log.String())
		j.notStarted(t)
	})
	t.Run("image missing", func(t *testing.T) {
		t.Parallel()
		j := newExecJob(t, "true")
		j.Image = fmt.Sprintf("winch-no-such-image:%d", time.Now().UnixNano())
		_, err := (&docker.Executor{API: api}).Run(t.Context(), j.Job)
		if !errors.Is(err, docker.ErrImageMissing) || !worker.IsTransient(err) {
			t.Fatalf("Run: %v, want a transient %v", err, docker.ErrImageMissing)
		}
		j.notStarted(t)
	})
}

// A command whose program is not in its image cannot start, now or on a
// retry: a permanent error, and nothing started (the init would otherwise
// run and exit 127).
func TestMissingProgramIsPermanent(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name   string
		run    []string
		module bool
		want   error
	}{
		{"absolute", []string{"/no/such/program"}, false, docker.ErrNoProgram},
		{"on PATH", []string{"winch-no-such-program", "arg"}, false, docker.ErrNoProgram},
		{"relative in module", []string{"./scripts/missing.sh"}, true, docker.ErrNoProgram},
		{"not executable", []string{"/etc/passwd"}, false, docker.ErrNotExecutable},
		{"directory", []string{"/tmp"}, false, docker.ErrNotExecutable},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			j := newExecJob(t, tt.run...)
			if tt.module {
				j.ModuleDir = t.TempDir()
				if err := os.WriteFile(j.ModuleDir+"/present.sh", []byte("echo hi\n"), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			res, err := (&docker.Executor{API: api}).Run(t.Context(), j.Job)
			if !errors.Is(err, tt.want) || worker.IsTransient(err) || !strings.Contains(err.Error(), tt.run[0]) {
				t.Fatalf("Run: %+v, %v; want a permanent error naming %s: %v", res, err, tt.run[0], tt.want)
			}
			t.Logf("error: %v", err)
			j.notStarted(t)
		})
	}
	// What is there runs, from the image (a link to busybox) and from the
	// module; a second run of the same program in the same image goes by
	// what the first found.
	counted := &statCounter{API: api}
	exec := &docker.Executor{API: counted}
	for i, run := range [][]string{{"sh", "-c", "echo ok"}, {"sh", "-c", "echo ok"}, {"/bin/echo", "ok"}, {"./ok.sh"}} {
		j := newExecJob(t, run...)
		if run[0] == "./ok.sh" {
			j.ModuleDir = t.TempDir()
			if err := os.WriteFile(j.ModuleDir+"/ok.sh", []byte("#!/bin/sh\necho ok\n"), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		before := counted.stats.Load()
		res, err := exec.Run(t.Context(), j.Job)
		if out, errOut := j.output(); err != nil || res.ExitCode != 0 || out != "ok\n" {
			t.Fatalf("run %d %q: %+v, %v, stdout %q stderr %q", i, run, res, err, out, errOut)
		}
		stats := counted.stats.Load() - before
		t.Logf("run %d %q: %d stat requests", i, run, stats)
		if i == 1 && stats != 0 {
			t.Errorf("the second run of %q looked for it again (%d stat requests)", run, stats)
		}
	}
}

// statCounter counts the executor's requests for what a path holds.
type statCounter struct {
	docker.API
	stats atomic.Int32
}

func (c *statCounter) ContainerStatPath(ctx context.Context, id, path string) (container.PathStat, error) {
	c.stats.Add(1)
	return c.API.ContainerStatPath(ctx, id, path)
}

// Once Starting is called, no error is transient: the worker has recorded
// that the command may be running. Here the container is gone when the
// start is asked for.
func TestFailedStartIsPermanent(t *testing.T) {
	t.Parallel()
	j := newExecJob(t, "true")
	j.Starting = func() error {
		j.starting.Add(1)
		return api.ContainerRemove(context.Background(), docker.ContainerName(j.ID, j.Attempt), container.RemoveOptions{Force: true, RemoveVolumes: true})
	}
	_, err := (&docker.Executor{API: api}).Run(t.Context(), j.Job)
	if err == nil || worker.IsTransient(err) || !strings.Contains(err.Error(), "start container") {
		t.Fatalf("Run: %v, want a permanent error of the start", err)
	}
	t.Logf("error: %v", err)
	if j.started.Load() != 0 {
		t.Fatal("Started was called")
	}
}

// A module holding a link out of itself is refused, whether its files are
// copied in or built into its image: permanently, for so it will be at the
// next try.
func TestModuleLinkOutIsPermanent(t *testing.T) {
	t.Parallel()
	for _, build := range []bool{false, true} {
		t.Run(fmt.Sprintf("build=%v", build), func(t *testing.T) {
			t.Parallel()
			j := newExecJob(t, "true")
			j.ModuleDir = t.TempDir()
			if err := os.Symlink("/etc/passwd", j.ModuleDir+"/stolen"); err != nil {
				t.Fatal(err)
			}
			if build {
				j.Module = fmt.Sprintf("link%d", time.Now().UnixNano()%1e9)
				j.Commit = "0123456789abcdef0123"
				j.Build = "Dockerfile"
				if err := os.WriteFile(j.ModuleDir+"/Dockerfile", []byte("FROM "+docker.DefaultImage+"\nCOPY stolen /stolen\n"), 0o644); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() {
					_, _ = api.ImageRemove(context.Background(), docker.DerivedImage(j.Module, j.Commit), image.RemoveOptions{Force: true})
				})
			}
			_, err := (&docker.Executor{API: api}).Run(t.Context(), j.Job)
			if !errors.Is(err, files.ErrEscape) || worker.IsTransient(err) {
				t.Fatalf("Run: %v, want a permanent %v", err, files.ErrEscape)
			}
			j.notStarted(t)
		})
	}
}

// The executor times the engine's create and start of each container for
// the worker's metrics (winch_container_create_seconds, _start_seconds).
func TestContainerCreateAndStartAreTimed(t *testing.T) {
	t.Parallel()
	j := newExecJob(t, "true")
	reg := prometheus.NewRegistry()
	m := metrics.NewWorker(reg)
	res, err := (&docker.Executor{API: api, Timings: m}).Run(t.Context(), j.Job)
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("Run: %+v, %v", res, err)
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]uint64{}
	for _, f := range families {
		for _, s := range f.GetMetric() {
			if h := s.GetHistogram(); h != nil {
				got[f.GetName()] += h.GetSampleCount()
			}
		}
	}
	for _, name := range []string{"winch_container_create_seconds", "winch_container_start_seconds"} {
		if got[name] != 1 {
			t.Errorf("%s has %d samples after one run, want 1", name, got[name])
		}
	}
}
