// Package process runs commands as plain processes on the worker's host. It
// does not isolate them: it exists for development and for hosts without a
// container engine. Each command runs in its own process group with a clean
// environment, under a supervisor (package supervisor) that kills the
// command's whole tree when the command ends, when it is stopped (SIGTERM to
// its process group first, a grace period, then SIGKILL) and when the
// worker dies.
//
// A supervisor starts for every job, so it is a small binary of its own,
// winch-supervise (cmd/winch-supervise; `make build` puts it beside
// bin/winch, the image beside /winch). The executor runs
// Executor.Supervisor if set, else winch-supervise from the directory of
// the running binary (os.Executable), else, as a fallback, the running
// binary itself (/proc/self/exe) with argv[0] "winch-supervise", which the
// init function of this package turns into the supervisor. The fallback
// works in any binary that links this package, but costs the start of that
// whole binary, with every package's init functions, per job: about 40 ms
// for winch, against about 1 ms for winch-supervise. The choice is made
// once per Executor, at its first job.
package process

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/winchhq/winch/worker"
	"github.com/winchhq/winch/worker/files"
	"github.com/winchhq/winch/worker/process/supervisor"
)

// Name is the executor's name in events and job states.
const Name = "process"

// Executor runs commands with os/exec.
type Executor struct {
	// KillGrace is how long a stopped command has between SIGTERM and
	// SIGKILL.
	KillGrace time.Duration
	// WorkDir is where each job gets a scratch directory (default: the
	// system temp dir).
	WorkDir string
	// Supervisor is the path of the supervisor's binary (default:
	// winch-supervise beside the running binary, else the running binary
	// itself; see the package comment). "/proc/self/exe" forces the latter.
	Supervisor string

	once       sync.Once
	supervisor string // resolved from Supervisor
}

var _ worker.Executor = (*Executor)(nil)

// Name implements worker.Executor.
func (e *Executor) Name() string { return Name }

// searchPath is the only PATH a command sees: nothing of the worker's
// environment leaks into it.
const searchPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Run implements worker.Executor.
func (e *Executor) Run(ctx context.Context, job *worker.Job) (worker.Outcome, error) {
	grace := e.KillGrace
	if grace <= 0 {
		grace = time.Second
	}
	dir, err := os.MkdirTemp(e.WorkDir, "winch-"+job.ID+"-")
	if err != nil {
		return worker.Outcome{}, fmt.Errorf("make the job's directory: %w", err)
	}
	defer os.RemoveAll(dir)
	paramsFile := filepath.Join(dir, "params.json")
	data, err := json.Marshal(job.Params)
	if err != nil {
		return worker.Outcome{}, fmt.Errorf("encode parameters: %w", err)
	}
	if err := os.WriteFile(paramsFile, data, 0o600); err != nil {
		return worker.Outcome{}, fmt.Errorf("write parameters: %w", err)
	}

	workDir := dir
	if job.ModuleDir != "" {
		if workDir, err = copyModule(job.ModuleDir, dir); err != nil {
			return worker.Outcome{}, err
		}
	}
	argv := job.Spec.Run
	path, err := lookPath(argv[0])
	if err != nil {
		return worker.Outcome{}, fmt.Errorf("cannot run %q: %w", argv[0], err)
	}
	// alive stays open in the worker for the life of the job; started
	// carries the command's pid back (see package supervisor).
	aliveR, aliveW, err := os.Pipe()
	if err != nil {
		return worker.Outcome{}, fmt.Errorf("make the supervisor's pipe: %w", err)
	}
	defer aliveW.Close()
	startedR, startedW, err := os.Pipe()
	if err != nil {
		_ = aliveR.Close()
		return worker.Outcome{}, fmt.Errorf("make the supervisor's pipe: %w", err)
	}
	defer startedR.Close()
	cmd := &exec.Cmd{
		// winch-supervise, or this very binary (see init in supervise.go).
		Path:   e.supervisorBinary(),
		Args:   append([]string{supervisor.Marker, path}, argv...),
		Dir:    workDir,
		Stdout: job.Stdout,
		Stderr: job.Stderr,
		Env: append([]string{
			"PATH=" + searchPath,
			"HOME=" + dir,
			"TMPDIR=" + dir,
			"LANG=C.UTF-8",
			"WINCH_PARAMS_FILE=" + paramsFile,
		}, job.Env...),
		ExtraFiles: []*os.File{aliveR, startedW}, // fds 3 and 4
		// Out of the worker's process group, so that a terminal's ^C
		// reaches the worker, which stops its jobs, and not the jobs.
		// No Pdeathsig: the alive pipe tells the supervisor of the worker's
		// death (of any kind, where a parent-death signal is tied to the
		// forking thread), and a SIGKILL would not let it kill the tree.
		SysProcAttr: &syscall.SysProcAttr{Setpgid: true},
		// Output copying stops this long after the process exits, even if
		// something still holds the pipes.
		WaitDelay: grace,
	}
	if err := job.Starting(); err != nil {
		_, _ = aliveR.Close(), startedW.Close()
		return worker.Outcome{}, err
	}
	err = cmd.Start()
	_, _ = aliveR.Close(), startedW.Close()
	if err != nil {
		return worker.Outcome{}, fmt.Errorf("cannot start %q: %w", argv[0], err)
	}
	// The supervisor closes its end once the command has started or failed
	// to.
	msg, _ := io.ReadAll(startedR)
	pid, err := startedMessage(msg)
	if err != nil {
		if werr := cmd.Wait(); len(msg) == 0 && werr != nil {
			err = fmt.Errorf("%w (%v)", err, werr)
		}
		if errno, ok := err.(syscall.Errno); ok {
			err = &os.PathError{Op: "fork/exec", Path: path, Err: errno} // as os/exec reports it
		}
		return worker.Outcome{}, fmt.Errorf("cannot start %q: %w", argv[0], err)
	}
	job.Started(worker.StartInfo{Executor: Name, PID: pid})

	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var waitErr error
	select {
	case waitErr = <-done:
	case <-ctx.Done():
		// The supervisor passes SIGTERM on to the command's process group.
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case waitErr = <-done:
		case <-time.After(grace):
			// EOF on the alive pipe: the supervisor kills the whole tree.
			_ = aliveW.Close()
			waitErr = <-done
		}
	}
	// The supervisor leaves nothing of the job behind when it exits. If it
	// was killed instead, at least the command's group goes.
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		_ = syscall.Kill(-pid, syscall.SIGKILL)
	}
	return outcome(waitErr)
}

// copyModule copies the module's files into the job's directory, so that
// the command cannot change the worker's copy.
func copyModule(src, jobDir string) (string, error) {
	dst := filepath.Join(jobDir, "module")
	if err := os.Mkdir(dst, 0o755); err != nil {
		return "", err
	}
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(files.Tar(src, pw)) }()
	if err := files.Untar(pr, dst); err != nil {
		_ = pr.CloseWithError(err)
		return "", fmt.Errorf("copy the module's files: %w", err)
	}
	return dst, nil
}

func outcome(err error) (worker.Outcome, error) {
	if err == nil || errors.Is(err, exec.ErrWaitDelay) {
		return worker.Outcome{}, nil
	}
	var exit *exec.ExitError
	if !errors.As(err, &exit) {
		return worker.Outcome{}, err
	}
	if ws, ok := exit.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return worker.Outcome{ExitCode: 128 + int(ws.Signal())}, nil // as a shell reports it
	}
	return worker.Outcome{ExitCode: exit.ExitCode()}, nil
}

// lookPath finds argv[0] on the commands' PATH, not the worker's.
func lookPath(name string) (string, error) {
	if filepath.IsAbs(name) {
		return name, nil
	}
	for _, d := range filepath.SplitList(searchPath) {
		p := filepath.Join(d, name)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("not found on %s", searchPath)
}
