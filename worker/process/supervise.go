package process

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"

	"github.com/winchhq/winch/worker/process/supervisor"
)

// init turns the process into a supervisor when it was started as one: the
// fallback when there is no dedicated winch-supervise binary (see the
// package comment). It is an init function, rather than a hook in main or
// TestMain, so that any binary that links this package (the winch CLI, every
// test binary) can supervise its own jobs' commands, with no help from its
// main package.
func init() {
	if len(os.Args) > 0 && os.Args[0] == supervisor.Marker {
		os.Exit(supervisor.Main(os.Args[1:]))
	}
}

// selfExe re-executes the running binary as the supervisor.
const selfExe = "/proc/self/exe"

// supervisorPath picks the supervisor's binary: the configured one, else
// winch-supervise beside exe (the running binary; "" if unknown), else
// selfExe.
func supervisorPath(configured, exe string) string {
	if configured != "" {
		return configured
	}
	if exe != "" {
		p := filepath.Join(filepath.Dir(exe), supervisor.Marker)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return p
		}
	}
	return selfExe
}

// supervisorBinary resolves the supervisor's binary once per Executor.
func (e *Executor) supervisorBinary() string {
	e.once.Do(func() {
		exe, _ := os.Executable()
		e.supervisor = supervisorPath(e.Supervisor, exe)
	})
	return e.supervisor
}

// startedMessage decodes what the supervisor wrote to the started pipe: the
// command's pid, or why it could not be started.
func startedMessage(msg []byte) (int, error) {
	if s, ok := bytes.CutPrefix(msg, []byte("!")); ok {
		n, err := strconv.Atoi(string(s))
		if err != nil {
			return 0, fmt.Errorf("bad message from the supervisor: %q", msg)
		}
		return 0, syscall.Errno(n)
	}
	if len(msg) == 0 {
		return 0, errors.New("the supervisor failed to start the command")
	}
	pid, err := strconv.Atoi(string(msg))
	if err != nil {
		return 0, fmt.Errorf("bad message from the supervisor: %q", msg)
	}
	return pid, nil
}
