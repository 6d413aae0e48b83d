package process_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/winchhq/winch/schema"
	"github.com/winchhq/winch/worker"
	"github.com/winchhq/winch/worker/process"
	"github.com/winchhq/winch/worker/process/supervisor"
)

// supervisorEnv holds the path of the winch-supervise that TestMain builds,
// for the internal tests and the fake workers.
const supervisorEnv = "WINCH_TEST_SUPERVISOR"

func TestMain(m *testing.M) {
	if os.Getenv(fakeWorkerEnv) != "" {
		os.Exit(fakeWorker())
	}
	dir, err := os.MkdirTemp("", "winch-supervise-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin := filepath.Join(dir, supervisor.Marker)
	// go test puts its own go first on PATH.
	build := exec.Command("go", "build", "-o", bin, "github.com/winchhq/winch/cmd/winch-supervise")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build winch-supervise:", err)
		_ = os.RemoveAll(dir)
		os.Exit(1)
	}
	supervisors[0].path = bin
	if err := os.Setenv(supervisorEnv, bin); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	goleak.VerifyTestMain(m, goleak.Cleanup(func(code int) {
		_ = os.RemoveAll(dir)
		os.Exit(code)
	}))
}

// supervisors are the executor's two ways of running the supervisor: the
// dedicated binary (built by TestMain) and, for want of one beside the test
// binary, the re-execution of the test binary itself.
var supervisors = []struct{ name, path string }{{"dedicated", ""}, {"reexec", ""}}

// eachSupervisor runs f as a subtest per supervisor, with the
// Executor.Supervisor that selects it.
func eachSupervisor(t *testing.T, f func(t *testing.T, sup string)) {
	for _, s := range supervisors {
		t.Run(s.name, func(t *testing.T) { f(t, s.path) })
	}
}

// buffer is a concurrency-safe output sink.
type buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func job(argv []string, params map[string]any) (*worker.Job, *buffer, *buffer) {
	var out, errOut buffer
	return &worker.Job{
		ID: "j1", Attempt: 1, Command: "test.cmd", Spec: schema.CommandSpec{Run: argv},
		Params: params, Env: append([]string{"WINCH_JOB_ID=j1"}, schema.ParamEnv(params)...),
		Stdout: &out, Stderr: &errOut, Starting: func() error { return nil }, Started: func(worker.StartInfo) {},
	}, &out, &errOut
}

func TestCleanEnvironmentAndParameters(t *testing.T) {
	eachSupervisor(t, func(t *testing.T, sup string) {
		t.Setenv("WORKER_SECRET", "do-not-leak")
		j, out, _ := job([]string{"sh", "-c", "env; cat \"$WINCH_PARAMS_FILE\""}, map[string]any{"name": "main", "tables": []string{"a", "b"}})
		res, err := (&process.Executor{Supervisor: sup}).Run(context.Background(), j)
		if err != nil || res.ExitCode != 0 {
			t.Fatalf("Run: %+v, %v", res, err)
		}
		got := out.String()
		if strings.Contains(got, "WORKER_SECRET") {
			t.Fatal("the worker's environment leaked into the command")
		}
		for _, want := range []string{"WINCH_JOB_ID=j1", "WINCH_PARAM_NAME=main", "WINCH_PARAM_TABLES=a\nb", "PATH=/usr/local/sbin:", `{"name":"main","tables":["a","b"]}`} {
			if !strings.Contains(got, want) {
				t.Errorf("output lacks %q:\n%s", want, got)
			}
		}
	})
}

func TestExitCodes(t *testing.T) {
	t.Parallel()
	eachSupervisor(t, func(t *testing.T, sup string) {
		for _, tt := range []struct {
			script string
			want   int
		}{
			{"exit 0", 0}, {"exit 7", 7}, {"kill -KILL $$", 128 + 9},
		} {
			j, _, _ := job([]string{"sh", "-c", tt.script}, nil)
			res, err := (&process.Executor{Supervisor: sup}).Run(context.Background(), j)
			if err != nil || res.ExitCode != tt.want {
				t.Errorf("%s: exit %d, %v; want %d", tt.script, res.ExitCode, err, tt.want)
			}
		}
	})
}

func TestMissingProgram(t *testing.T) {
	t.Parallel()
	eachSupervisor(t, func(t *testing.T, sup string) {
		j, _, _ := job([]string{"winch-no-such-program"}, nil)
		if _, err := (&process.Executor{Supervisor: sup}).Run(context.Background(), j); err == nil || !strings.Contains(err.Error(), "not found") {
			t.Fatalf("Run of a missing program: %v", err)
		}
	})
}

func alive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// backgroundPID reads the pid a script printed on its first line.
func backgroundPID(t *testing.T, out *buffer) int {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if line, _, ok := strings.Cut(out.String(), "\n"); ok {
			pid, err := strconv.Atoi(line)
			if err != nil {
				t.Fatalf("bad pid line %q", line)
			}
			return pid
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("the script printed no pid")
	return 0
}

func waitGone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for alive(pid) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if alive(pid) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
		t.Fatalf("process %d of the job outlived it", pid)
	}
}

func TestCancelKillsTheWholeGroup(t *testing.T) {
	t.Parallel()
	eachSupervisor(t, func(t *testing.T, sup string) {
		j, out, _ := job([]string{"sh", "-c", "sleep 60 & echo $!; wait"}, nil)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			_, err := (&process.Executor{KillGrace: 200 * time.Millisecond, Supervisor: sup}).Run(ctx, j)
			done <- err
		}()
		pid := backgroundPID(t, out)
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		waitGone(t, pid)
	})
}

func TestBackgroundChildrenDieWithTheJob(t *testing.T) {
	t.Parallel()
	eachSupervisor(t, func(t *testing.T, sup string) {
		j, out, _ := job([]string{"sh", "-c", "sleep 60 >/dev/null 2>&1 & echo $!"}, nil)
		if _, err := (&process.Executor{KillGrace: 200 * time.Millisecond, Supervisor: sup}).Run(context.Background(), j); err != nil {
			t.Fatal(err)
		}
		waitGone(t, backgroundPID(t, out))
	})
}

func TestParamsFileIsPrivateAndRemoved(t *testing.T) {
	t.Parallel()
	eachSupervisor(t, func(t *testing.T, sup string) {
		j, out, _ := job([]string{"sh", "-c", "stat -c %a \"$WINCH_PARAMS_FILE\"; echo \"$WINCH_PARAMS_FILE\""}, map[string]any{"password": "x"})
		if _, err := (&process.Executor{Supervisor: sup}).Run(context.Background(), j); err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(out.String()), "\n")
		if lines[0] != "600" {
			t.Fatalf("params file mode %s", lines[0])
		}
		if _, err := os.Stat(lines[1]); !os.IsNotExist(err) {
			t.Fatalf("params file %s still exists after the job: %v", lines[1], err)
		}
	})
}

func TestModuleFilesAreCopiedIn(t *testing.T) {
	t.Parallel()
	eachSupervisor(t, func(t *testing.T, sup string) {
		mod := t.TempDir()
		if err := os.MkdirAll(mod+"/scripts", 0o755); err != nil {
			t.Fatal(err)
		}
		script := "echo hello from $(basename $(pwd)); echo overwritten > scripts/hello.sh\n"
		if err := os.WriteFile(mod+"/scripts/hello.sh", []byte(script), 0o644); err != nil {
			t.Fatal(err)
		}
		j, out, _ := job([]string{"sh", "scripts/hello.sh"}, nil)
		j.ModuleDir = mod
		if res, err := (&process.Executor{Supervisor: sup}).Run(context.Background(), j); err != nil || res.ExitCode != 0 {
			t.Fatalf("Run: %+v %v", res, err)
		}
		if out.String() != "hello from module\n" {
			t.Fatalf("output %q", out.String())
		}
		if data, _ := os.ReadFile(mod + "/scripts/hello.sh"); string(data) != script {
			t.Fatal("the command changed the worker's copy of the module")
		}
	})
}
