package main

import (
	"bufio"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/winchhq/winch/internal/gittest"
	"github.com/winchhq/winch/producer"
	"github.com/winchhq/winch/schema"
)

var interruptSeq atomic.Int64

// Ctrl-C in winch run, through the real binary: once detaches and the job
// goes on; twice within the window, or once with --cancel-on-interrupt,
// cancels the job and waits for its end, which its history records.
func TestRunInterrupts(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		flags     []string
		fanout    bool // winch run --each: the interrupt acts on the parent
		signals   int
		says      []string
		wantState schema.State
	}{
		{"one Ctrl-C detaches", nil, false, 1,
			[]string{"detaching from job %s, which goes on; Ctrl-C again within 3s cancels it", "stopped following; job %s goes on (winch logs -f %s, winch cancel %s)"},
			schema.StateRunning},
		{"a second Ctrl-C cancels", nil, false, 2,
			[]string{"cancelling job %s; waiting for it to end", "job %s cancelled by tester"},
			schema.StateCancelled},
		{"--cancel-on-interrupt cancels at the first", []string{"--cancel-on-interrupt"}, false, 1,
			[]string{"cancelling job %s; waiting for it to end", "job %s cancelled by tester"},
			schema.StateCancelled},
		{"fan-out: one Ctrl-C detaches", nil, true, 1,
			[]string{"detaching from job %s, which goes on; Ctrl-C again within 3s cancels it", "stopped following; job %s goes on (winch logs -f %s, winch cancel %s)"},
			schema.StateRunning},
		{"fan-out: a second Ctrl-C cancels the parent and so its children", nil, true, 2,
			[]string{"cancelling job %s; waiting for it to end", "fan-out %s cancelled: 0 of 2 children succeeded"},
			schema.StateCancelled},
		{"fan-out: --cancel-on-interrupt cancels at the first", []string{"--cancel-on-interrupt"}, true, 1,
			[]string{"cancelling job %s; waiting for it to end", "fan-out %s cancelled"},
			schema.StateCancelled},
	}
	// A fan-out's values are text: a module's command that takes one and
	// sleeps, for the fan-out cases.
	modEnv := []string{"WINCH_MODULE_CACHE=" + t.TempDir()}
	mod := gittest.New(t)
	mod.Commit("naps", map[string]string{"winch.yaml": "module: naps\ncommands:\n  nap:\n    params:\n      name: {type: string, required: true}\n    run: [sleep, '60']\n"})
	if out, code := runWinch(t, modEnv, "modules", "add", mod.Dir); code != 0 {
		t.Fatalf("winch modules add: exit %d\n%s", code, out)
	}
	t.Cleanup(func() { runWinch(t, modEnv, "modules", "remove", "naps") })
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			id := fmt.Sprintf("interrupt-%d", interruptSeq.Add(1))
			args := append([]string{"run", "--id", id}, tt.flags...)
			args = append(args, "core.sleep", "--seconds", "60")
			started := id
			if tt.fanout {
				args = append([]string{"run", "--id", id, "--each", "a,b"}, append(tt.flags, "naps.nap")...)
				started = schema.FanoutChildID(id, 0)
			}
			cmd := winchCmd(t, append(modEnv, "WINCH_PRINCIPAL=tester"), args...)
			stderr, err := cmd.StderrPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			lines := make(chan string, 32)
			go func() {
				s := bufio.NewScanner(stderr)
				for s.Scan() {
					lines <- s.Text()
				}
				close(lines)
			}()
			c := testClient(t)
			waitStarted(t, c, started)
			var said []string
			waitSaid := func(want string) {
				t.Helper()
				timeout := time.After(10 * time.Second)
				for {
					select {
					case l, ok := <-lines:
						if !ok {
							t.Fatalf("winch run ended without saying %q; it said %q", want, said)
						}
						said = append(said, l)
						if strings.Contains(l, want) {
							return
						}
					case <-timeout:
						t.Fatalf("winch run did not say %q within 10s; it said %q", want, said)
					}
				}
			}
			for i := range tt.signals {
				if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
					t.Fatal(err)
				}
				if i+1 < tt.signals {
					waitSaid("Ctrl-C again within")
				}
			}
			for _, s := range tt.says {
				waitSaid(strings.ReplaceAll(s, "%s", id))
			}
			for range lines {
			}
			err = cmd.Wait()
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != exitCancelled {
				t.Fatalf("winch run exited with %v, want %d", err, exitCancelled)
			}
			st, err := c.Status(t.Context(), id)
			if err != nil {
				t.Fatal(err)
			}
			if st.State != tt.wantState {
				t.Fatalf("after the interrupt the job is %s, want %s", st.State, tt.wantState)
			}
			if tt.wantState == schema.StateCancelled && st.CancelledBy != "tester" {
				t.Fatalf("the job's record says it was cancelled by %q", st.CancelledBy)
			}
			if tt.fanout && tt.wantState == schema.StateCancelled {
				// The parent ended after its children: none goes on.
				for i := range 2 {
					child, err := c.Status(t.Context(), schema.FanoutChildID(id, i))
					if err == nil && !child.State.Terminal() {
						t.Fatalf("child %d is %s after its parent was cancelled", i, child.State)
					}
				}
			}
			if tt.wantState == schema.StateRunning {
				if _, err := c.Cancel(t.Context(), id, "tester"); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

// Ctrl-C at the prompt of a context marked confirm: true ends winch run at
// once, with stdin still open, saying that nothing was published; and
// nothing was.
func TestConfirmPromptInterrupted(t *testing.T) {
	t.Parallel()
	env := []string{"XDG_CONFIG_HOME=" + t.TempDir(), "WINCH_PRINCIPAL=tester"}
	if out, code := runWinch(t, env, "context", "add", "careful", "--nats-url", natsURL, "--confirm"); code != 0 {
		t.Fatalf("winch context add: exit %d\n%s", code, out)
	}
	id := fmt.Sprintf("confirm-%d", interruptSeq.Add(1))
	cmd := winchCmd(t, append(env, "WINCH_NATS_URL="), "--context", "careful", "run", "--id", id, "core.echo", "--text", "hi")
	stdin, err := cmd.StdinPipe() // left open: nobody answers
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// The prompt ends without a newline: read what comes until it is there.
	var said strings.Builder
	prompted := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 256)
		once := false
		for {
			n, err := stderr.Read(buf)
			said.Write(buf[:n])
			if !once && strings.Contains(said.String(), "[y/N] ") {
				once = true
				close(prompted)
			}
			if err != nil {
				return
			}
		}
	}()
	select {
	case <-prompted:
	case <-done:
		t.Fatalf("winch run ended without asking: %q", said.String())
	case <-time.After(10 * time.Second):
		t.Fatal("no confirmation prompt within 10s")
	}
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { <-done; exited <- cmd.Wait() }()
	select {
	case err = <-exited:
	case <-time.After(5 * time.Second):
		t.Fatal("winch run still waits for an answer 5s after Ctrl-C")
	}
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != exitCancelled {
		t.Fatalf("winch run exited with %v, want %d", err, exitCancelled)
	}
	if !strings.Contains(said.String(), "interrupted at the confirmation prompt of context careful; nothing was published") {
		t.Fatalf("winch run said %q", said.String())
	}
	if st, err := testClient(t).Status(t.Context(), id); !errors.Is(err, producer.ErrNotFound) {
		t.Fatalf("job %s: %+v, %v; want not found: the interrupted run published nothing", id, st, err)
	}
}
