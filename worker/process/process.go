// Package process runs commands as plain processes on the worker's host. It
// does not isolate them: it exists for development and for hosts without a
// container engine. Each command runs in its own process group with a clean
// environment, and the whole group is killed on cancel or timeout.
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
	"syscall"
	"time"

	"github.com/winchhq/winch/worker"
	"github.com/winchhq/winch/worker/files"
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
	cmd := &exec.Cmd{
		Path:   path,
		Args:   argv,
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
		SysProcAttr: &syscall.SysProcAttr{
			Setpgid: true,
			// If the worker dies, so does the command, rather than running
			// on unobserved while another worker retries it.
			Pdeathsig: syscall.SIGKILL,
		},
		// Output copying stops this long after the process exits, even if
		// a background child still holds the pipes.
		WaitDelay: grace,
	}
	if err := job.Starting(); err != nil {
		return worker.Outcome{}, err
	}
	if err := cmd.Start(); err != nil {
		return worker.Outcome{}, fmt.Errorf("cannot start %q: %w", argv[0], err)
	}
	pgid := cmd.Process.Pid
	job.Started(worker.StartInfo{Executor: Name, PID: pgid})

	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var waitErr error
	select {
	case waitErr = <-done:
	case <-ctx.Done():
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
		select {
		case waitErr = <-done:
		case <-time.After(grace):
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			waitErr = <-done
		}
	}
	// Leave nothing of the job behind: background children die with it.
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
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
