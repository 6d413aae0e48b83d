package process_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/winchhq/winch/worker"
	"github.com/winchhq/winch/worker/process"
)

// treeEnv marks every process of a test's job: all of them inherit the
// job's environment, whatever session or process group they move to.
const treeEnv = "WINCH_TEST_TREE"

// fakeWorkerEnv makes the test binary a fake worker (see TestMain): it runs
// the script in $WINCH_TEST_FAKE_WORKER through Executor.Run, with the job's
// processes marked by $WINCH_TEST_FAKE_WORKER_TREE, under the supervisor
// in $WINCH_TEST_FAKE_WORKER_SUPERVISOR.
const fakeWorkerEnv = "WINCH_TEST_FAKE_WORKER"

func fakeWorker() int {
	j, _, _ := job([]string{"sh", "-c", os.Getenv(fakeWorkerEnv)}, nil)
	j.Env = append(j.Env, treeEnv+"="+os.Getenv(fakeWorkerEnv+"_TREE"))
	j.Stdout, j.Stderr = os.Stdout, os.Stderr
	e := &process.Executor{KillGrace: 200 * time.Millisecond, Supervisor: os.Getenv(fakeWorkerEnv + "_SUPERVISOR")}
	res, err := e.Run(context.Background(), j)
	fmt.Fprintln(os.Stderr, "fake worker: the job ended:", res, err)
	return 3
}

func nonce(t *testing.T) string {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// treeProcs lists the live processes of the job marked by tree, with their
// names (zombies have no environment left, so they do not count).
func treeProcs(tree string) map[int]string {
	mark := []byte(treeEnv + "=" + tree + "\x00")
	procs := map[int]string{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		env, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err != nil || !bytes.Contains(env, mark) {
			continue
		}
		comm, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "comm"))
		procs[pid] = strings.TrimSpace(string(comm))
	}
	return procs
}

func describe(procs map[int]string) string {
	var s []string
	for pid, name := range procs {
		s = append(s, fmt.Sprintf("%d:%s", pid, name))
	}
	sort.Strings(s)
	return strings.Join(s, " ")
}

func countNamed(procs map[int]string, name string) int {
	n := 0
	for _, c := range procs {
		if c == name {
			n++
		}
	}
	return n
}

// waitForTree polls until the job marked by tree has want sleeps running.
func waitForTree(t *testing.T, tree string, want int) map[int]string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		procs := treeProcs(tree)
		if countNamed(procs, "sleep") >= want {
			return procs
		}
		if time.Now().After(deadline) {
			t.Fatalf("the job's tree did not come up: %s", describe(procs))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitTreeGone polls until no process of the job is left; it kills
// leftovers, so that a failing test leaves nothing behind.
func waitTreeGone(t *testing.T, tree string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		procs := treeProcs(tree)
		if len(procs) == 0 {
			return
		}
		if time.Now().After(deadline) {
			killTree(tree)
			t.Fatalf("processes of the job outlived it: %s", describe(procs))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func killTree(tree string) {
	for pid := range treeProcs(tree) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

// treeScript starts six sleeps: in the background, in the foreground of a
// child shell, in new sessions, and orphaned by a double fork.
const treeScript = `
sleep 300 &
sleep 300 &
setsid sleep 300 &
sh -c 'setsid sleep 300 & sleep 300 & exit 0'
sh -c 'sleep 300; echo' &
echo ready
wait
`

func TestWorkerDeathKillsTheWholeTree(t *testing.T) {
	t.Parallel()
	eachSupervisor(t, func(t *testing.T, sup string) {
		tree := nonce(t)
		t.Cleanup(func() { killTree(tree) })
		self, err := os.Executable()
		if err != nil {
			t.Fatal(err)
		}
		w := exec.Command(self, "-test.run=^$")
		w.Env = append(os.Environ(), fakeWorkerEnv+"="+treeScript, fakeWorkerEnv+"_TREE="+tree, fakeWorkerEnv+"_SUPERVISOR="+sup)
		// A file, not a pipe: processes that outlive the fake worker must not
		// hold up Wait.
		out, err := os.Create(filepath.Join(t.TempDir(), "out"))
		if err != nil {
			t.Fatal(err)
		}
		defer out.Close()
		w.Stdout, w.Stderr = out, out
		if err := w.Start(); err != nil {
			t.Fatal(err)
		}
		procs := waitForTree(t, tree, 6)
		if countNamed(procs, "sh") < 2 {
			t.Fatalf("the job's shells are not running: %s", describe(procs))
		}
		// The supervisor has the job's environment too.
		if countNamed(procs, supervisorComm(sup)) != 1 {
			t.Fatalf("the job does not run under a %s: %s", supervisorComm(sup), describe(procs))
		}
		if err := w.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		_ = w.Wait()
		waitTreeGone(t, tree, 5*time.Second)
		if data, _ := os.ReadFile(out.Name()); bytes.Contains(data, []byte("the job ended")) {
			t.Fatalf("the fake worker was not the one to die:\n%s", data)
		}
	})
}

// supervisorComm is the name the supervisor runs under: its binary's, or
// "exe" for a re-executed /proc/self/exe.
func supervisorComm(sup string) string {
	if sup == "" {
		return "exe"
	}
	return filepath.Base(sup)
}

// treeJob runs script as a job whose processes are marked by a fresh tree.
func treeJob(t *testing.T, script string) (j *worker.Job, out *buffer, tree string) {
	t.Helper()
	tree = nonce(t)
	t.Cleanup(func() { killTree(tree) })
	j, out, _ = job([]string{"sh", "-c", script}, nil)
	j.Env = append(j.Env, treeEnv+"="+tree)
	return j, out, tree
}

// assertTreeGone checks that nothing of the job is left when Run returns.
func assertTreeGone(t *testing.T, tree string) {
	t.Helper()
	if procs := treeProcs(tree); len(procs) != 0 {
		killTree(tree)
		t.Fatalf("processes of the job outlived it: %s", describe(procs))
	}
}

type result struct {
	res worker.Outcome
	err error
}

func TestCancelStopsTheCommandWithSIGTERMFirst(t *testing.T) {
	t.Parallel()
	eachSupervisor(t, func(t *testing.T, sup string) {
		j, out, tree := treeJob(t, `trap 'echo got TERM; exit 3' TERM; sleep 300 & setsid sleep 300 & wait`)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan result, 1)
		go func() {
			res, err := (&process.Executor{KillGrace: 20 * time.Second, Supervisor: sup}).Run(ctx, j)
			done <- result{res, err}
		}()
		waitForTree(t, tree, 2)
		start := time.Now()
		cancel()
		r := <-done
		if r.err != nil || r.res.ExitCode != 3 {
			t.Fatalf("Run: %+v, %v; want exit 3", r.res, r.err)
		}
		if took := time.Since(start); took > 10*time.Second {
			t.Fatalf("the command took %v to stop: it did not get SIGTERM", took)
		}
		if !strings.Contains(out.String(), "got TERM") {
			t.Fatalf("the command did not see SIGTERM: %q", out.String())
		}
		assertTreeGone(t, tree) // the setsid'd sleep too, though it got no SIGTERM
	})
}

func TestCancelKillsATermIgnoringTreeAfterTheGrace(t *testing.T) {
	t.Parallel()
	eachSupervisor(t, func(t *testing.T, sup string) {
		j, _, tree := treeJob(t, `trap '' TERM; sleep 300 & setsid sleep 300 & sh -c 'sleep 300 & wait' & sh -c 'setsid sleep 300 & exit 0'; wait`)
		ctx, cancel := context.WithCancel(context.Background())
		const grace = 300 * time.Millisecond
		done := make(chan result, 1)
		go func() {
			res, err := (&process.Executor{KillGrace: grace, Supervisor: sup}).Run(ctx, j)
			done <- result{res, err}
		}()
		waitForTree(t, tree, 4)
		start := time.Now()
		cancel()
		r := <-done
		if r.err != nil || r.res.ExitCode != 128+9 {
			t.Fatalf("Run: %+v, %v; want exit %d", r.res, r.err, 128+9)
		}
		if took := time.Since(start); took < grace {
			t.Fatalf("the command was killed after %v, within its grace of %v", took, grace)
		}
		assertTreeGone(t, tree)
	})
}

func TestEscapedChildrenDieWithTheJob(t *testing.T) {
	t.Parallel()
	eachSupervisor(t, func(t *testing.T, sup string) {
		// The command exits once both escapees run: one in its own session,
		// one orphaned as well by a double fork.
		j, _, tree := treeJob(t, `
	setsid sh -c 'touch "$TMPDIR/a"; exec sleep 300' >/dev/null 2>&1 &
	sh -c 'setsid sh -c "touch \"\$TMPDIR/b\"; exec sleep 300" >/dev/null 2>&1 & exit 0'
	while [ ! -e "$TMPDIR/a" ] || [ ! -e "$TMPDIR/b" ]; do sleep 0.01; done
	exit 5`)
		res, err := (&process.Executor{KillGrace: 200 * time.Millisecond, Supervisor: sup}).Run(context.Background(), j)
		if err != nil || res.ExitCode != 5 {
			t.Fatalf("Run: %+v, %v; want exit 5", res, err)
		}
		assertTreeGone(t, tree)
	})
}

func TestUnstartablePrograms(t *testing.T) {
	t.Parallel()
	eachSupervisor(t, func(t *testing.T, sup string) {
		notExec := filepath.Join(t.TempDir(), "script")
		if err := os.WriteFile(notExec, []byte("#!/bin/sh\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		for _, tt := range []struct {
			path string
			want error
		}{
			{"/winch-no-such-dir/program", fs.ErrNotExist},
			{notExec, fs.ErrPermission},
		} {
			j, _, _ := job([]string{tt.path}, nil)
			started := false
			j.Started = func(worker.StartInfo) { started = true }
			_, err := (&process.Executor{Supervisor: sup}).Run(context.Background(), j)
			if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), "cannot start") {
				t.Errorf("Run of %s: %v; want %v", tt.path, err, tt.want)
			}
			if started {
				t.Errorf("Run of %s reported it started", tt.path)
			}
		}
	})
}

func TestStartedReportsTheCommandsPID(t *testing.T) {
	t.Parallel()
	eachSupervisor(t, func(t *testing.T, sup string) {
		j, out, _ := job([]string{"sh", "-c", "echo $$"}, nil)
		var info worker.StartInfo
		j.Started = func(i worker.StartInfo) { info = i }
		if _, err := (&process.Executor{Supervisor: sup}).Run(context.Background(), j); err != nil {
			t.Fatal(err)
		}
		if info.Executor != process.Name || strconv.Itoa(info.PID) != strings.TrimSpace(out.String()) {
			t.Fatalf("started %+v; the command's pid is %s", info, out.String())
		}
	})
}

// The supervisor must pass on neither its own environment nor its signal
// dispositions: the command sees exactly the environment the executor
// builds, with default dispositions for the signals the supervisor catches,
// even if the worker ignores them.
func TestCommandGetsACleanEnvironmentAndSignals(t *testing.T) {
	eachSupervisor(t, func(t *testing.T, sup string) {
		signal.Ignore(syscall.SIGHUP, syscall.SIGINT)
		defer signal.Reset(syscall.SIGHUP, syscall.SIGINT)
		j, out, _ := job([]string{"env"}, nil)
		if _, err := (&process.Executor{Supervisor: sup}).Run(context.Background(), j); err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
			name, _, _ := strings.Cut(line, "=")
			names = append(names, name)
		}
		sort.Strings(names)
		if got, want := strings.Join(names, " "), "HOME LANG PATH TMPDIR WINCH_JOB_ID WINCH_PARAMS_FILE"; got != want {
			t.Fatalf("the command's environment has %s; want %s:\n%s", got, want, out.String())
		}

		j, out, _ = job([]string{"grep", "-E", "^Sig(Blk|Ign):", "/proc/self/status"}, nil)
		if _, err := (&process.Executor{Supervisor: sup}).Run(context.Background(), j); err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
			name, hexMask, _ := strings.Cut(line, ":")
			mask, err := strconv.ParseUint(strings.TrimSpace(hexMask), 16, 64)
			if err != nil {
				t.Fatalf("bad line %q", line)
			}
			if name == "SigBlk" && mask != 0 {
				t.Errorf("the command starts with signals blocked: %s", line)
			}
			if hupInt := uint64(1)<<(syscall.SIGHUP-1) | 1<<(syscall.SIGINT-1); name == "SigIgn" && mask&hupInt != 0 {
				t.Errorf("the command starts with SIGHUP or SIGINT ignored: %s", line)
			}
		}
	})
}
