package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/winchhq/winch/internal/testenv"
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

// `winch notifier`, first started after runs with --notify had ended,
// delivers them (the topology kept them), retries a receiver that failed,
// gives up on one that refuses, and counts all three on its metrics server,
// which is ready once it takes events.
func TestNotifierDeliversWhatEndedBeforeItStartedAndCounts(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	tries := map[string]int{}
	ids := map[string][]string{}
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		tries[r.URL.Path]++
		ids[r.URL.Path] = append(ids[r.URL.Path], r.Header.Get(notify.HeaderDelivery))
		n := tries[r.URL.Path]
		mu.Unlock()
		switch {
		case r.URL.Path == "/gone":
			w.WriteHeader(http.StatusGone)
		case r.URL.Path == "/flaky" && n == 1:
			w.WriteHeader(http.StatusInternalServerError)
		}
	}))
	defer recv.Close()
	env := []string{"WINCH_NATS_URL=" + testenv.OwnNATS(t).ClientURL(), "WINCH_EXECUTOR=process", "WINCH_NOTIFY_SECRET=s3cret"}
	_, worker := startWinch(t, env, "worker")
	waitLog(t, worker, "worker serving")
	go func() {
		for worker.Scan() {
		}
	}()
	for _, path := range []string{"/ok", "/flaky", "/gone"} {
		out, code := runWinch(t, env, "--as", "carol", "run", "--notify", recv.URL+path, "core.exit", "--code", "3")
		if code != 3 || !strings.Contains(out, "no notifier is running") {
			t.Fatalf("winch run --notify %s: exit %d\n%s", path, code, out)
		}
	}
	addr := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	notifier, lines := startWinch(t, append(env, "WINCH_METRICS_ADDR="+addr), "notifier")
	waitLog(t, lines, "notifier running")
	go func() {
		for lines.Scan() {
		}
	}()
	// Ready once it takes events, which is just after it says it runs.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		code, body := httpGet(t, "http://"+addr+"/readyz", "")
		if code == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz of a running notifier: %d %s", code, body)
		}
	}
	body, wrong := awaitMetrics(t, addr, 20*time.Second, []metricWant{
		{"winch_notifications_delivered_total", nil, is(2)},
		{"winch_notifications_retried_total", nil, is(1)},
		{"winch_notifications_failed_total", []string{`reason="refused"`}, is(1)},
		{"winch_notifications_failed_total", []string{`reason="expired"`}, is(0)},
		{"winch_notifications_failed_total", []string{`reason="not_allowed"`}, is(0)},
	})
	if len(wrong) > 0 {
		t.Fatalf("%s\n/metrics:\n%s", strings.Join(wrong, "\n"), body)
	}
	mu.Lock()
	if len(ids["/ok"]) != 1 || len(ids["/flaky"]) != 2 || ids["/flaky"][0] != ids["/flaky"][1] || len(ids["/gone"]) != 1 {
		t.Errorf("the receiver got %v", ids)
	}
	mu.Unlock()
	if err := notifier.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := notifier.Wait(); err != nil {
		t.Fatalf("winch notifier exited with %v after SIGTERM", err)
	}
}

// A schedule's --notify reaches a real receiver for each run it fires,
// with the schedule's owner as the principal.
func TestScheduleRunsNotify(t *testing.T) {
	t.Parallel()
	got := make(chan notify.Notification, 8)
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var n notify.Notification
		if !notify.Verify([]byte("s3cret"), b, r.Header.Get(notify.HeaderSignature)) || json.Unmarshal(b, &n) != nil {
			t.Errorf("an unsigned or undecodable notification: %s", b)
		}
		select { // never block: the schedule fires every second
		case got <- n:
		default:
		}
	}))
	defer recv.Close()
	env := []string{"WINCH_NATS_URL=" + testenv.OwnNATS(t).ClientURL(), "WINCH_EXECUTOR=process", "WINCH_NOTIFY_SECRET=s3cret"}
	for _, args := range [][]string{{"worker"}, {"notifier"}} {
		_, lines := startWinch(t, env, args...)
		waitLog(t, lines, map[string]string{"worker": "worker serving", "notifier": "notifier running"}[args[0]])
		go func() {
			for lines.Scan() {
			}
		}()
	}
	if out, code := runWinch(t, env, "--as", "dora", "schedule", "add", "beat", "--every", "1s", "--notify", recv.URL+"/beat", "core.echo", "--text", "alive"); code != 0 {
		t.Fatalf("winch schedule add: exit %d\n%s", code, out)
	}
	select {
	case n := <-got:
		if n.Command != "core.echo" || n.Principal != "dora" || n.State != "succeeded" || n.Params["text"] != "alive" {
			t.Fatalf("notification %+v", n)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no notification of a scheduled run within 20s")
	}
	if out, code := runWinch(t, env, "--as", "dora", "schedule", "remove", "beat"); code != 0 {
		t.Fatalf("winch schedule remove: exit %d\n%s", code, out)
	}
}

// A notifier killed (SIGKILL) while it delivers loses no notification:
// what it held goes, after the ack wait, to the next one, which sends it
// again with the same delivery id, so the receiver, which had taken each
// once already, drops the repeats by that id.
func TestANotifierKilledLosesNone(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	var mu sync.Mutex
	seen := map[string]int{} // delivery id -> POSTs
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var n notify.Notification
		id := r.Header.Get(notify.HeaderDelivery)
		if json.Unmarshal(b, &n) != nil || n.DeliveryID != id || !notify.Verify([]byte("s3cret"), b, r.Header.Get(notify.HeaderSignature)) {
			t.Errorf("delivery %q: body %s", id, b)
		}
		mu.Lock()
		seen[id]++
		first := seen[id] == 1
		mu.Unlock()
		if first {
			<-release // the first notifier dies before it hears back
		}
	}))
	var releaseOnce sync.Once
	free := func() { releaseOnce.Do(func() { close(release) }) }
	defer recv.Close()
	defer free()
	env := []string{"WINCH_NATS_URL=" + testenv.OwnNATS(t).ClientURL(), "WINCH_EXECUTOR=process", "WINCH_NOTIFY_SECRET=s3cret", "WINCH_NOTIFY_ACK_WAIT=2s"}
	_, worker := startWinch(t, env, "worker")
	waitLog(t, worker, "worker serving")
	go func() {
		for worker.Scan() {
		}
	}()
	first, lines := startWinch(t, env, "notifier")
	waitLog(t, lines, "notifier running")
	go func() {
		for lines.Scan() {
		}
	}()
	const jobs = 3
	for i := range jobs {
		if out, code := runWinch(t, env, "run", "--notify", recv.URL, "core.echo", "--text", fmt.Sprint(i)); code != 0 {
			t.Fatalf("winch run: exit %d\n%s", code, out)
		}
	}
	count := func() (ids, posts int) {
		mu.Lock()
		defer mu.Unlock()
		for _, n := range seen {
			ids, posts = ids+1, posts+n
		}
		return ids, posts
	}
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(20 * time.Second); !ok(); time.Sleep(50 * time.Millisecond) {
			if time.Now().After(deadline) {
				mu.Lock()
				defer mu.Unlock()
				t.Fatalf("%s: the receiver saw %v", what, seen)
			}
		}
	}
	waitFor("the first notifier posts every notification", func() bool { ids, _ := count(); return ids == jobs })
	if err := first.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = first.Wait()
	free()
	ids, posts := count()
	if ids != jobs || posts != jobs {
		t.Fatalf("before the kill: %d ids in %d posts, want %d each", ids, posts, jobs)
	}
	_, lines = startWinch(t, env, "notifier")
	waitLog(t, lines, "notifier running")
	go func() {
		for lines.Scan() {
		}
	}()
	// The receiver answers repeats at once: the next notifier must send
	// each again, not some.
	waitFor("the next notifier sends each again", func() bool {
		mu.Lock()
		defer mu.Unlock()
		for _, n := range seen {
			if n < 2 {
				return false
			}
		}
		return true
	})
	if ids, _ := count(); ids != jobs {
		t.Fatalf("%d distinct delivery ids, want %d: a retry changed its id", ids, jobs)
	}
}
