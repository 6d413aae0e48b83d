package main

import (
	"bufio"
	"context"
	"errors"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/winchhq/winch/broker"
	"github.com/winchhq/winch/internal/testenv"
	"github.com/winchhq/winch/producer"
	"github.com/winchhq/winch/schema"
)

// winchCmd is this test binary run as `winch args...`, against the test's
// NATS server unless env says otherwise; env adds to the environment.
func winchCmd(t *testing.T, env []string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "WINCH_TEST_RUN_MAIN=1", "WINCH_NATS_URL="+natsURL, "WINCH_LOG_FORMAT=json")
	cmd.Env = append(cmd.Env, env...)
	t.Cleanup(func() {
		if cmd.Process != nil && cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	return cmd
}

// startWinch starts a long-running winch command and returns its log lines.
func startWinch(t *testing.T, env []string, args ...string) (*exec.Cmd, *bufio.Scanner) {
	t.Helper()
	cmd := winchCmd(t, env, args...)
	cmd.Stderr = t.Output()
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd, bufio.NewScanner(out)
}

// waitLog reads the process's log lines until one contains want.
func waitLog(t *testing.T, lines *bufio.Scanner, want string) {
	t.Helper()
	for lines.Scan() {
		if strings.Contains(lines.Text(), want) {
			return
		}
	}
	t.Fatalf("the process ended without logging %q", want)
}

func testClient(t *testing.T) *producer.Client {
	nc, err := broker.Connect(t.Context(), broker.ConnectConfig{URL: natsURL})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	c, err := producer.New(t.Context(), nc, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func waitStarted(t *testing.T, c *producer.Client, id string) {
	t.Helper()
	stop := errors.New("started")
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	_, err := c.Follow(ctx, id, producer.UntilDone, func(ev schema.Event) error {
		if ev.Kind == schema.KindStarted {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) {
		t.Fatalf("job %s did not start: %v", id, err)
	}
}

func TestWorkerDrainsOnSIGTERM(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		drain     string
		seconds   float64
		wantState schema.State
	}{
		{"running job finishes", "20s", 1, schema.StateSucceeded},
		{"job past the deadline is handed back", "300ms", 30, schema.StateQueued},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			queue := "sigterm-" + string(rune('a'+i))
			cmd, lines := startWinch(t, []string{"WINCH_EXECUTOR=process"}, "worker", "--queues", queue, "--drain-timeout", tt.drain, "--ack-wait", "2s")
			waitLog(t, lines, "worker serving")
			c := testClient(t)
			sub, err := c.Submit(t.Context(), schema.Request{Command: "core.sleep", Params: map[string]any{"seconds": tt.seconds}, Queue: queue, Principal: "tester"})
			if err != nil {
				t.Fatal(err)
			}
			id := sub.Request.ID
			waitStarted(t, c, id)
			if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			waitLog(t, lines, "stopping: draining running jobs")
			for lines.Scan() { // the rest of the log, until exit
			}
			if err := cmd.Wait(); err != nil {
				t.Fatalf("worker exited with %v after SIGTERM", err)
			}
			st, err := c.Status(t.Context(), id)
			if err != nil {
				t.Fatal(err)
			}
			if st.State != tt.wantState {
				t.Fatalf("after SIGTERM the job is %s, want %s", st.State, tt.wantState)
			}
			if tt.wantState == schema.StateQueued {
				if _, err := c.Cancel(t.Context(), id, "tester"); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

// TestBrokerSyncsEveryWriteByDefault: `winch broker` without a config file
// is one server that nothing backs up, so it syncs each write before it
// acknowledges it; WINCH_NATS_SYNC chooses otherwise.
func TestBrokerSyncsEveryWriteByDefault(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ sync, want string }{{"", `"sync_always":true`}, {"2m", `"sync_always":false`}} {
		t.Run("sync="+tt.sync, func(t *testing.T) {
			t.Parallel()
			url := "nats://127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
			cmd, lines := startWinch(t, []string{"WINCH_NATS_URL=" + url, "WINCH_DATA_DIR=" + t.TempDir(), "WINCH_NATS_SYNC=" + tt.sync}, "broker")
			for lines.Scan() && !strings.Contains(lines.Text(), "winch broker ready") {
			}
			if !strings.Contains(lines.Text(), tt.want) {
				t.Errorf("WINCH_NATS_SYNC=%q: the broker says %s, want %s", tt.sync, lines.Text(), tt.want)
			}
			_ = cmd.Process.Signal(syscall.SIGTERM)
			for lines.Scan() {
			}
			_ = cmd.Wait()
		})
	}
}
