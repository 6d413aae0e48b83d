package main

import (
	"context"
	"errors"
	"net"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/winchhq/winch/internal/testenv"
	"github.com/winchhq/winch/worker/docker"
)

func requireDocker(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	api, err := docker.Connect(ctx)
	if err != nil {
		testenv.Missing(t, "docker", err)
		return
	}
	defer api.Close()
	if err := (&docker.Executor{API: api}).CheckImage(ctx); err != nil {
		testenv.Missing(t, "docker", err)
	}
}

// runWinch runs a winch command to its end: combined output, exit code.
func runWinch(t *testing.T, env []string, args ...string) (string, int) {
	t.Helper()
	out, err := winchCmd(t, env, args...).CombinedOutput()
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return string(out), exit.ExitCode()
	}
	if err != nil {
		t.Fatal(err)
	}
	return string(out), 0
}

func TestExecutorSelection(t *testing.T) {
	t.Parallel()
	t.Run("no engine: auto falls back to processes, loudly", func(t *testing.T) {
		t.Parallel()
		cmd, lines := startWinch(t, []string{"DOCKER_HOST=unix:///nonexistent/docker.sock"}, "worker", "--queues", "fallback")
		waitLog(t, lines, "falling back to the process executor")
		waitLog(t, lines, "WITHOUT ISOLATION")
		waitLog(t, lines, `"executor":"process"`)
		_ = cmd.Process.Signal(syscall.SIGTERM)
		for lines.Scan() {
		}
		if err := cmd.Wait(); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("docker asked for without an engine: fails", func(t *testing.T) {
		t.Parallel()
		out, code := runWinch(t, []string{"WINCH_EXECUTOR=docker", "DOCKER_HOST=unix:///nonexistent/docker.sock"}, "worker", "--queues", "noengine")
		if code != exitUnavailable || !strings.Contains(out, "docker engine not reachable") {
			t.Fatalf("exit %d:\n%s", code, out)
		}
	})
	t.Run("image missing: says how to build it", func(t *testing.T) {
		t.Parallel()
		requireDocker(t)
		out, code := runWinch(t, []string{"WINCH_DEFAULT_IMAGE=winch-no-such-image:1"}, "worker", "--queues", "noimage")
		if code != exitUnavailable || !strings.Contains(out, "winch-no-such-image:1") || !strings.Contains(out, "make images") {
			t.Fatalf("exit %d:\n%s", code, out)
		}
	})
}

// The README's flow: `winch dev` runs commands in containers, and says so.
func TestDevRunsCommandsInContainers(t *testing.T) {
	t.Parallel()
	requireDocker(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "nats://" + l.Addr().String()
	l.Close()
	env := []string{"WINCH_NATS_URL=" + url, "WINCH_DATA_DIR=" + t.TempDir(), "WINCH_HTTP_ADDR=127.0.0.1:0"}
	dev, lines := startWinch(t, env, "dev")
	waitLog(t, lines, "commands run in docker containers")
	waitLog(t, lines, "winch dev ready")
	out, code := runWinch(t, env, "run", "core.echo", "--text", "hi from a container")
	if code != 0 || out != "hi from a container\n" {
		t.Fatalf("winch run: exit %d, output %q", code, out)
	}
	if err := dev.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	for lines.Scan() {
	}
	if err := dev.Wait(); err != nil {
		t.Fatalf("winch dev exited with %v after Ctrl-C", err)
	}
}
