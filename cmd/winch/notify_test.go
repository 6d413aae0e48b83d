package main

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/winchhq/winch/notify"
)

// `winch dev` runs a notifier: `winch run --notify URL` gets a signed
// webhook when the job ends.
func TestDevNotifiesWhenARunEnds(t *testing.T) {
	t.Parallel()
	got := make(chan *http.Request, 4)
	bodies := make(chan []byte, 4)
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- r
		bodies <- b
	}))
	defer recv.Close()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "nats://" + l.Addr().String()
	l.Close()
	env := []string{"WINCH_NATS_URL=" + url, "WINCH_DATA_DIR=" + t.TempDir(), "WINCH_EXECUTOR=process", "WINCH_NOTIFY_SECRET=s3cret"}
	dev, lines := startWinch(t, env, "dev")
	waitLog(t, lines, "notifier running")
	go func() {
		for lines.Scan() { // keep the pipe drained
		}
	}()
	out, code := runWinch(t, env, "--as", "carol", "run", "--notify", recv.URL+"/hook", "core.exit", "--code", "2")
	if code != 2 || strings.Contains(out, "no notifier is running") {
		t.Fatalf("winch run: exit %d\n%s", code, out)
	}
	select {
	case r := <-got:
		b := <-bodies
		if !notify.Verify([]byte("s3cret"), b, r.Header.Get(notify.HeaderSignature)) || r.URL.Path != "/hook" {
			t.Fatalf("unsigned or misrouted: %s %v", r.URL, r.Header)
		}
		var n notify.Notification
		if err := json.Unmarshal(b, &n); err != nil || n.Command != "core.exit" || n.Principal != "carol" || n.State != "failed" || *n.ExitCode != 2 {
			t.Fatalf("body %s (%v)", b, err)
		}
		if !strings.HasPrefix(r.Header.Get(notify.HeaderDelivery), n.Job+".") {
			t.Fatalf("delivery id %q", r.Header.Get(notify.HeaderDelivery))
		}
	case <-time.After(15 * time.Second):
		t.Fatal("no notification within 15s")
	}
	if err := dev.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if err := dev.Wait(); err != nil {
		t.Fatalf("winch dev exited with %v after Ctrl-C", err)
	}
}
