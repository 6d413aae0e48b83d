// Package supervisor is the per-job supervisor of the process executor
// (github.com/winchhq/winch/worker/process): the process that runs a job's
// command as its child and is the child subreaper of the command's whole
// tree, so that nothing of the job outlives it. It runs either as its own
// small binary, cmd/winch-supervise, or inside any binary that links
// package process, re-executed with argv[0] Marker.
//
// It imports only the standard library and golang.org/x/sys, so that the
// dedicated binary starts in about a millisecond: a supervisor starts for
// every job.
package supervisor

import (
	"bytes"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// A job's command does not run as the worker's child but under a supervisor,
// the child subreaper of the command's tree. The protocol between the two:
//
//	argv:  Marker, the command's path, the command's argv... (Main gets
//	       argv[1:])
//	fd 3:  read end of the "alive" pipe. The worker holds the write end for
//	       the life of the job and never writes to it; EOF means the worker
//	       has died or gives up on the command: the supervisor SIGKILLs the
//	       whole tree and exits.
//	fd 4:  write end of the "started" pipe: the supervisor writes the
//	       command's pid, or "!" and the errno of a failed exec, then closes
//	       it.
//	SIGTERM to the supervisor: forwarded to the command's process group.
//	exit:  once the command has exited and the rest of the tree is killed
//	       and reaped: the command's exit code, or 128+N if signal N killed
//	       it (as a shell reports it, and as the executor reports it).
//
// The environment, working directory and fds 0-2 are the command's; the
// supervisor passes them on untouched.
const (
	// Marker is the supervisor's argv[0]; it makes a binary that links
	// package process a supervisor (see the init function there).
	Marker = "winch-supervise"
	// AliveFD and StartedFD are the supervisor's fds of the two pipes.
	AliveFD   = 3
	StartedFD = 4
	// Failed is the supervisor's exit code when it could not run the
	// command at all.
	Failed = 127
)

// Main runs the supervisor: args are its argv without argv[0] (the
// command's path, then the command's argv), the pipes are on AliveFD and
// StartedFD. It returns the supervisor's exit code.
func Main(args []string) int {
	if len(args) < 2 {
		fmt.Fprintln(os.Stderr, "winch: the supervisor was started without a command")
		return Failed
	}
	path, argv := args[0], args[1:]
	// Neither pipe is for the command.
	syscall.CloseOnExec(AliveFD)
	syscall.CloseOnExec(StartedFD)
	started := os.NewFile(StartedFD, "winch-started")
	fail := func(format string, a ...any) int {
		fmt.Fprintf(os.Stderr, "winch: supervisor: "+format+"\n", a...)
		return Failed
	}
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return fail("become a subreaper: %v", err)
	}
	// Catch rather than ignore: caught signals are reset for the command
	// when it execs, ignored ones would be ignored by it too. Only SIGTERM
	// means something (stop gracefully); the others must not kill the
	// supervisor without its killing the tree.
	sigs := make(chan os.Signal, 64)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGCHLD, syscall.SIGINT, syscall.SIGHUP,
		syscall.SIGQUIT, syscall.SIGPIPE, syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGALRM)

	// The worker may have died before we got here: start nothing.
	if workerGone(AliveFD) {
		return Failed
	}
	gone := make(chan struct{})
	go watchWorker(os.NewFile(AliveFD, "winch-alive"), gone)

	pid, err := syscall.ForkExec(path, argv, &syscall.ProcAttr{
		Env:   os.Environ(),
		Files: []uintptr{0, 1, 2},
		Sys: &syscall.SysProcAttr{
			Setpgid: true,
			// Should the supervisor itself be SIGKILLed, at least the
			// command dies with it. (The supervisor does not lock OS
			// threads, so its forking thread lives as long as it does.)
			Pdeathsig: syscall.SIGKILL,
		},
	})
	if err != nil {
		errno, ok := err.(syscall.Errno)
		if !ok {
			errno = syscall.EINVAL
		}
		_, _ = started.WriteString("!" + strconv.Itoa(int(errno)))
		_ = started.Close()
		return Failed
	}
	_, _ = started.WriteString(strconv.Itoa(pid))
	_ = started.Close()

	t := &tree{self: os.Getpid(), cmd: pid}
	for !t.cmdDone {
		select {
		case <-gone:
			t.kill()
			return t.code
		case sig := <-sigs:
			if sig == syscall.SIGTERM {
				_ = syscall.Kill(-pid, syscall.SIGTERM)
			}
		}
		// Reap on any signal: SIGCHLDs are coalesced, and may be lost
		// behind others.
		t.reap()
	}
	// The command has ended: nothing of the job outlives it.
	t.kill()
	return t.code
}

// workerGone polls the alive pipe without blocking.
func workerGone(fd int) bool {
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	for {
		_, err := unix.Poll(fds, 0)
		if err == unix.EINTR {
			continue
		}
		return err != nil || fds[0].Revents&(unix.POLLHUP|unix.POLLERR|unix.POLLNVAL) != 0
	}
}

// watchWorker closes gone when the alive pipe reaches EOF (or fails).
func watchWorker(alive *os.File, gone chan<- struct{}) {
	defer close(gone)
	buf := make([]byte, 64)
	for {
		if _, err := alive.Read(buf); err != nil {
			return
		}
	}
}

// tree is the supervisor's view of the command's process tree.
type tree struct {
	self, cmd int
	cmdDone   bool
	code      int // the command's exit code, once cmdDone
}

// reap collects every exited child without blocking. As a subreaper, the
// supervisor inherits the tree's orphans, and must reap them too.
func (t *tree) reap() (more bool) {
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		switch {
		case err == syscall.EINTR:
			continue
		case err != nil: // ECHILD: no children left
			return false
		case pid == 0: // children left, none exited
			return true
		case pid == t.cmd:
			t.cmdDone = true
			if ws.Signaled() {
				t.code = 128 + int(ws.Signal())
			} else {
				t.code = ws.ExitStatus()
			}
		}
	}
}

// kill SIGKILLs the command's process group and every descendant of the
// supervisor, over and over, until it has no child left. Whatever a killed
// process forked in the meantime is orphaned to the supervisor, so no
// child left means no descendant left, whatever session or process group it
// moved to.
//
// With no child left to begin with (the command exited, leaving nothing
// behind: the common case), there is nothing to look for in /proc.
//
// Pids are read from /proc and then signalled, so one could in principle
// have been reused in between; the kernel allocates pids cyclically, so that
// would take the whole pid space to wrap around in that instant.
func (t *tree) kill() {
	_ = syscall.Kill(-t.cmd, syscall.SIGKILL)
	for delay := time.Millisecond; t.reap(); delay = min(2*delay, 20*time.Millisecond) {
		for _, pid := range descendants(t.self) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		if !t.reap() {
			break
		}
		time.Sleep(delay)
	}
	if !t.cmdDone { // reaped by someone else? Should not happen.
		t.code = 128 + int(syscall.SIGKILL)
	}
}

// descendants lists the live descendants of pid, from /proc.
func descendants(pid int) []int {
	d, err := os.Open("/proc")
	if err != nil {
		return nil
	}
	names, _ := d.Readdirnames(-1)
	_ = d.Close()
	children := map[int][]int{}
	for _, name := range names {
		p, err := strconv.Atoi(name)
		if err != nil {
			continue
		}
		if ppid, ok := parentOf(name); ok {
			children[ppid] = append(children[ppid], p)
		}
	}
	var all []int
	for next := []int{pid}; len(next) > 0; {
		p := next[0]
		next = next[1:]
		all = append(all, children[p]...)
		next = append(next, children[p]...)
	}
	return all
}

// parentOf reads a process's parent from /proc/<pid>/stat, skipping zombies
// and dead processes (they need reaping, not killing).
func parentOf(pid string) (int, bool) {
	stat, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return 0, false
	}
	// pid (comm) state ppid ...; comm may hold spaces and parentheses.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, false
	}
	f := bytes.Fields(stat[i+1:])
	if len(f) < 2 || f[0][0] == 'Z' || f[0][0] == 'X' {
		return 0, false
	}
	ppid, err := strconv.Atoi(string(f[1]))
	return ppid, err == nil
}
