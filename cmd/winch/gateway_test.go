package main

import (
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/winchhq/winch/internal/testenv"
)

// `winch dev` serves the gateway and says where the console is; the
// issue's curl lines work against it as written (with its address).
func TestDevServesTheGatewayToCurl(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("curl"); err != nil {
		testenv.Missing(t, "curl", err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	natsAddr := l.Addr().String()
	l.Close()
	data := t.TempDir()
	env := []string{"WINCH_NATS_URL=nats://" + natsAddr, "WINCH_DATA_DIR=" + data, "WINCH_EXECUTOR=process", "WINCH_HTTP_ADDR=127.0.0.1:0"}
	dev, lines := startWinch(t, env, "dev")
	var console string
	for console == "" && lines.Scan() {
		var entry struct{ Msg, Curl string }
		if json.Unmarshal(lines.Bytes(), &entry) == nil && strings.HasPrefix(entry.Msg, "console: http://127.0.0.1:") {
			console = strings.TrimPrefix(entry.Msg, "console: ")
			if !strings.Contains(entry.Curl, filepath.Join(data, "gateway-token")) {
				t.Errorf("the console line does not say where the token is: %s", lines.Text())
			}
		}
	}
	if console == "" {
		t.Fatal("winch dev did not print the console URL")
	}
	waitLog(t, lines, "winch dev ready")
	go func() {
		for lines.Scan() {
		}
	}()
	base := strings.TrimSuffix(console, "/")
	token, err := os.ReadFile(filepath.Join(data, "gateway-token"))
	if err != nil {
		t.Fatal(err)
	}
	sh := func(script string) string {
		t.Helper()
		cmd := exec.Command("sh", "-ec", strings.ReplaceAll(script, "http://127.0.0.1:5123", base))
		cmd.Env = append(os.Environ(), "TOKEN="+strings.TrimSpace(string(token)))
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", script, err, out)
		}
		return string(out)
	}
	// The lines, word for word but for the port.
	out := sh(`curl -sS -H "Authorization: Bearer $TOKEN" -d '{"command":"core.echo","params":{"text":"hi"}}' \
     http://127.0.0.1:5123/v1/jobs`)
	var sub struct {
		ID    string
		State string
	}
	if err := json.Unmarshal([]byte(out), &sub); err != nil || sub.ID == "" || sub.State != "queued" {
		t.Fatalf("submit: %s", out)
	}
	events := sh(`curl -sS -N -H "Authorization: Bearer $TOKEN" http://127.0.0.1:5123/v1/jobs/` + sub.ID + `/events`)
	if !strings.Contains(events, `"data":"hi\n"`) || !strings.Contains(events, "event: finished") || !strings.Contains(events, `"state":"succeeded"`) {
		t.Fatalf("events:\n%s", events)
	}
	page := sh(`curl -sS http://127.0.0.1:5123/`)
	if !strings.Contains(page, "<title>winch console</title>") {
		t.Fatalf("console page: %s", page)
	}
	if out := sh(`curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:5123/v1/jobs`); out != "401" {
		t.Fatalf("without a token: %s", out)
	}
	if err := dev.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if err := dev.Wait(); err != nil {
		t.Fatalf("winch dev exited with %v after Ctrl-C", err)
	}
}
