package notify_test

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/winchhq/winch/broker"
	"github.com/winchhq/winch/internal/jobtest"
	"github.com/winchhq/winch/internal/testenv"
	"github.com/winchhq/winch/modules"
	"github.com/winchhq/winch/notify"
	"github.com/winchhq/winch/schema"
	"github.com/winchhq/winch/worker"
	"github.com/winchhq/winch/worker/process"
)

var secret = []byte("the-notify-secret")

// delivery is one POST the receiver took.
type delivery struct {
	ID, Attempt, Event string
	Status             int
	Body               []byte
	SignatureOK        bool
}

// receiver is a real HTTP server that records every POST and answers with
// what answer says (200 when nil).
type receiver struct {
	t      *testing.T
	srv    *httptest.Server
	mu     sync.Mutex
	got    []delivery
	answer func(id string, try int) int
	tries  map[string]int
}

// newReceiver listens on a free port; start false leaves it down (the
// port closed) until Start.
func newReceiver(t *testing.T, start bool, answer func(id string, try int) int) *receiver {
	t.Helper()
	r := &receiver{t: t, answer: answer, tries: map[string]int{}}
	r.srv = httptest.NewUnstartedServer(http.HandlerFunc(r.serve))
	if start {
		r.srv.Start()
	} else {
		addr := r.srv.Listener.Addr().String()
		r.srv.Listener.Close() // down: connections are refused
		r.srv.Listener = nil
		r.srv.Config.Addr = addr
	}
	t.Cleanup(func() {
		if r.srv.Listener != nil {
			r.srv.Close()
		}
	})
	return r
}

// URL is the receiver's address, up or down.
func (r *receiver) URL() string {
	if r.srv.URL != "" {
		return r.srv.URL
	}
	return "http://" + r.srv.Config.Addr
}

// Start brings a receiver that was down up, on the same port.
func (r *receiver) Start() {
	r.t.Helper()
	l, err := net.Listen("tcp", r.srv.Config.Addr)
	if err != nil {
		r.t.Fatal(err)
	}
	r.srv.Listener = l
	r.srv.Start()
}

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	data, _ := io.ReadAll(req.Body)
	id := req.Header.Get(notify.HeaderDelivery)
	r.mu.Lock()
	r.tries[id]++
	status := http.StatusOK
	if r.answer != nil {
		status = r.answer(id, r.tries[id])
	}
	r.got = append(r.got, delivery{ID: id, Attempt: req.Header.Get(notify.HeaderAttempt), Event: req.Header.Get(notify.HeaderEvent),
		Status: status, Body: data, SignatureOK: notify.Verify(secret, data, req.Header.Get(notify.HeaderSignature))})
	r.mu.Unlock()
	w.WriteHeader(status)
}

// delivered are the deliveries answered 2xx, by id.
func (r *receiver) delivered() map[string][]delivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string][]delivery{}
	for _, d := range r.got {
		if d.Status/100 == 2 {
			out[d.ID] = append(out[d.ID], d)
		}
	}
	return out
}

func (r *receiver) all() []delivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]delivery(nil), r.got...)
}

// env is a server of the test's own, with a worker running core and a
// module whose command's manifest asks for notifications.
func env(t *testing.T, manifestNotify string) *jobtest.Env {
	t.Helper()
	e, catalog := bareEnv(t, manifestNotify)
	e.StartWorker(worker.Config{Catalog: catalog, Executor: &process.Executor{KillGrace: 200 * time.Millisecond}, Concurrency: 4})
	return e
}

// bareEnv is env without its worker.
func bareEnv(t *testing.T, manifestNotify string) (*jobtest.Env, *modules.Catalog) {
	t.Helper()
	srv := testenv.OwnNATS(t)
	var extra *modules.Manifest
	if manifestNotify != "" {
		m, err := modules.ParseManifest("winch.yaml", []byte("module: nightly\ncommands:\n  fail:\n    run: [sh, -c, 'exit 4']\n    notify: "+manifestNotify+"\n"))
		if err != nil {
			t.Fatal(err)
		}
		extra = m
	}
	catalog := testCatalog(extra)
	return jobtest.NewWithTopology(t, srv.ClientURL(), jobtest.Topology, nil), catalog
}

// startNotifier runs a notifier on consumer, with short waits.
func startNotifier(t *testing.T, e *jobtest.Env, consumer string, edit ...func(*notify.Config)) *notify.Notifier {
	t.Helper()
	cfg := notify.Config{Consumer: consumer, Secret: secret, RetryFor: time.Minute, MinBackoff: 100 * time.Millisecond,
		MaxBackoff: 500 * time.Millisecond, AckWait: 2 * time.Second, Timeout: 2 * time.Second, ConsoleURL: "https://winch.example:5123/",
		Logger: e.Logger()}
	for _, f := range edit {
		f(&cfg)
	}
	n, err := notify.New(e.NC, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Stop(context.Background()) })
	return n
}

func withNotify(targets ...schema.NotifyTarget) func(*schema.Request) {
	return func(r *schema.Request) { r.Notify = targets }
}

// A job's end reaches the targets that ask for it, signed, with what a
// receiver needs and no secret; the manifest's target is called too.
func TestNotifiesWhenAJobEnds(t *testing.T) {
	t.Parallel()
	r := newReceiver(t, true, nil)
	e := env(t, fmt.Sprintf("{on: [failed, timed_out], url: '%s/manifest'}", r.URL()))
	n := startNotifier(t, e, "notifier")

	failed := e.Submit("core.exit", map[string]any{"code": 3}, withNotify(
		schema.NotifyTarget{URL: r.URL() + "/json", On: []schema.State{schema.StateFailed}},
		schema.NotifyTarget{URL: r.URL() + "/slack", Format: schema.NotifySlack},
		schema.NotifyTarget{URL: r.URL() + "/only-success", On: []schema.State{schema.StateSucceeded}},
	))
	secretJob := e.Submit("core.env", map[string]any{"token": "hunter2-secret"}, withNotify(schema.NotifyTarget{URL: r.URL() + "/secret"}))
	manifest := e.Submit("nightly.fail", nil)
	quiet := e.Submit("core.true", nil) // no targets: no notification
	for _, id := range []string{failed, secretJob, manifest, quiet} {
		e.Follow(id)
	}
	if !jobtest.Eventually(10*time.Second, func() bool { return len(r.delivered()) == 4 }) {
		t.Fatalf("deliveries %+v, want 4", r.all())
	}
	got := r.delivered()
	want := map[string]string{
		notify.DeliveryID(jobtest.Last(e.Follow(failed)), 0):    "json",
		notify.DeliveryID(jobtest.Last(e.Follow(failed)), 1):    "slack",
		notify.DeliveryID(jobtest.Last(e.Follow(secretJob)), 0): "secret",
		notify.DeliveryID(jobtest.Last(e.Follow(manifest)), 0):  "manifest",
	}
	for id, kind := range want {
		ds := got[id]
		if len(ds) != 1 {
			t.Fatalf("delivery %s (%s) arrived %d times", id, kind, len(ds))
		}
		d := ds[0]
		if !d.SignatureOK {
			t.Errorf("%s: the signature does not verify", kind)
		}
		if strings.Contains(string(d.Body), "hunter2") {
			t.Errorf("%s: a secret parameter reached the receiver: %s", kind, d.Body)
		}
		if kind == "slack" {
			var s struct{ Text string }
			if err := json.Unmarshal(d.Body, &s); err != nil || !strings.Contains(s.Text, "*core.exit* by tester failed (exit 3)") ||
				!strings.Contains(s.Text, "<https://winch.example:5123/jobs/"+failed+"|"+failed+">") {
				t.Errorf("slack body %s (%v)", d.Body, err)
			}
			continue
		}
		var b notify.Notification
		if err := json.Unmarshal(d.Body, &b); err != nil {
			t.Fatal(err)
		}
		if b.DeliveryID != id || b.Principal != "tester" || b.FinishedAt.IsZero() || b.Logs != "winch logs "+b.Job ||
			b.Link != "https://winch.example:5123/jobs/"+b.Job || d.Event != "job."+string(b.State) {
			t.Errorf("%s: %s (event header %s)", kind, d.Body, d.Event)
		}
		switch kind {
		case "json":
			if b.Job != failed || b.Command != "core.exit" || b.State != schema.StateFailed || b.ExitCode == nil || *b.ExitCode != 3 {
				t.Errorf("json: %s", d.Body)
			}
			// The duration is the command's run, from its start to its end.
			ran, err := time.ParseDuration(b.Duration)
			if want := b.FinishedAt.Sub(b.StartedAt).Round(time.Millisecond); err != nil || b.StartedAt.IsZero() || ran != want || b.DurationMS != want.Milliseconds() {
				t.Errorf("json: duration %q (%d ms), want %v from started_at to finished_at (%v)", b.Duration, b.DurationMS, want, err)
			}
		case "secret":
			if b.State != schema.StateSucceeded || b.Params["token"] != "***" {
				t.Errorf("secret: %s", d.Body)
			}
		case "manifest":
			if b.Command != "nightly.fail" || b.State != schema.StateFailed || *b.ExitCode != 4 {
				t.Errorf("manifest: %s", d.Body)
			}
		}
	}
	if s := n.Stats(); s.Delivered != 4 || s.Failed != 0 {
		t.Errorf("stats %+v", s)
	}
}

// The topology keeps jobs' ends for the notifiers from its start: a run
// with targets that ended before any notifier ever ran is delivered once
// the first one starts.
func TestARunEndedBeforeAnyNotifierIsDelivered(t *testing.T) {
	t.Parallel()
	r := newReceiver(t, true, nil)
	e := env(t, "")
	id := e.Submit("core.exit", map[string]any{"code": 5}, withNotify(schema.NotifyTarget{URL: r.URL()}))
	final := jobtest.Last(e.Follow(id))
	n := startNotifier(t, e, broker.NotifierConsumer)
	if !jobtest.Eventually(10*time.Second, func() bool { return n.Stats().Delivered == 1 }) {
		t.Fatalf("the run that ended before the notifier started was not delivered: %+v, receiver got %+v", n.Stats(), r.all())
	}
	ds := r.delivered()[notify.DeliveryID(final, 0)]
	if len(ds) != 1 || !ds[0].SignatureOK {
		t.Fatalf("deliveries %+v", r.all())
	}
}

// A receiver that answers 500, or is down, gets the notification again
// with backoff, with the same delivery id, until it takes it; once taken,
// it is not sent again.
func TestRetriesUntilTheReceiverTakesIt(t *testing.T) {
	t.Parallel()
	failing := newReceiver(t, true, func(_ string, try int) int {
		if try <= 2 {
			return http.StatusInternalServerError
		}
		return http.StatusNoContent
	})
	down := newReceiver(t, false, nil)
	e := env(t, "")
	n := startNotifier(t, e, "notifier")
	id := e.Submit("core.true", nil, withNotify(schema.NotifyTarget{URL: failing.URL()}, schema.NotifyTarget{URL: down.URL()}))
	final := jobtest.Last(e.Follow(id))
	if !jobtest.Eventually(10*time.Second, func() bool { return n.Stats().Retried >= 3 }) {
		t.Fatalf("no retries: %+v", n.Stats())
	}
	down.Start()
	if !jobtest.Eventually(10*time.Second, func() bool { return n.Stats().Delivered == 2 }) {
		t.Fatalf("stats %+v; failing got %+v", n.Stats(), failing.all())
	}
	time.Sleep(time.Second) // anything sent again would arrive by now
	tries := failing.all()
	if len(tries) != 3 || tries[0].Attempt != "1" || tries[2].Attempt != "3" {
		t.Fatalf("the failing receiver got %+v, want 2 refusals and 1 delivery", tries)
	}
	for _, d := range tries {
		if d.ID != notify.DeliveryID(final, 0) || !d.SignatureOK {
			t.Fatalf("try %+v: another delivery id, or unsigned", d)
		}
	}
	if got := down.all(); len(got) != 1 || got[0].ID != notify.DeliveryID(final, 1) {
		t.Fatalf("the receiver that was down got %+v, want one delivery", got)
	}
	if st := e.Status(id); st.State != schema.StateSucceeded {
		t.Fatalf("the job is %s: notifications must not touch it", st.State)
	}
}

// A notifier stopped while it retries loses nothing: the next one on the
// same consumer delivers everything, once.
func TestANotifierRestartLosesNone(t *testing.T) {
	t.Parallel()
	r := newReceiver(t, false, nil)
	e := env(t, "")
	cfg := notify.Config{Consumer: "notifier", Secret: secret, MinBackoff: 100 * time.Millisecond, MaxBackoff: 200 * time.Millisecond,
		AckWait: 2 * time.Second, Logger: e.Logger()}
	first, err := notify.New(e.NC, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := first.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{}
	for i := range 6 {
		id := e.Submit("core.echo", map[string]any{"text": fmt.Sprint(i)}, withNotify(schema.NotifyTarget{URL: r.URL()}))
		want[notify.DeliveryID(jobtest.Last(e.Follow(id)), 0)] = true
	}
	if !jobtest.Eventually(10*time.Second, func() bool { return first.Stats().Retried >= 6 }) {
		t.Fatalf("the first notifier did not try them all: %+v", first.Stats())
	}
	if err := first.Stop(t.Context()); err != nil {
		t.Fatal(err)
	}
	r.Start()
	second := startNotifier(t, e, "notifier")
	if !jobtest.Eventually(15*time.Second, func() bool { return len(r.delivered()) == len(want) }) {
		t.Fatalf("after the restart %d of %d were delivered: %+v", len(r.delivered()), len(want), second.Stats())
	}
	time.Sleep(time.Second)
	for id, ds := range r.delivered() {
		if !want[id] || len(ds) != 1 {
			t.Errorf("delivery %s arrived %d times (expected: %v)", id, len(ds), want[id])
		}
	}
}

// A worker killed while the job runs loses no notification: the job's end,
// recorded by the next worker, carries the targets the first one claimed
// it with.
func TestAWorkerCrashLosesNone(t *testing.T) {
	t.Parallel()
	r := newReceiver(t, true, nil)
	e, catalog := bareEnv(t, "")
	n := startNotifier(t, e, "notifier")
	doomed := e.StartChild("doomed")
	id := e.Submit("nightly.once", nil, withNotify(schema.NotifyTarget{URL: r.URL(), On: []schema.State{schema.StateFailed}}))
	e.WaitFor(id, schema.KindStarted)
	doomed.Kill()
	e.StartWorker(worker.Config{Catalog: catalog, Executor: &process.Executor{KillGrace: 200 * time.Millisecond}})
	final := jobtest.Last(e.Follow(id))
	if final.Reason != schema.ReasonWorkerLost {
		t.Fatalf("the job ended %s (%s), want failed, worker_lost", final.State, final.Reason)
	}
	if !jobtest.Eventually(10*time.Second, func() bool { return n.Stats().Delivered == 1 }) {
		t.Fatalf("stats %+v", n.Stats())
	}
	ds := r.delivered()[notify.DeliveryID(final, 0)]
	var b notify.Notification
	if len(ds) != 1 || json.Unmarshal(ds[0].Body, &b) != nil || b.Reason != schema.ReasonWorkerLost || b.Job != id {
		t.Fatalf("deliveries %+v", r.all())
	}
}

// A receiver that refuses for good (4xx), or stays down past RetryFor, is
// given up on: logged and counted, the event acknowledged, the job as it
// ended.
func TestGivesUpAndCounts(t *testing.T) {
	t.Parallel()
	refusing := newReceiver(t, true, func(string, int) int { return http.StatusGone })
	down := newReceiver(t, false, nil)
	e := env(t, "")
	n := startNotifier(t, e, "notifier", func(c *notify.Config) {
		c.RetryFor = 1500 * time.Millisecond
		c.Allow = []string{refusing.URL(), down.URL()}
	})
	id := e.Submit("core.exit", map[string]any{"code": 1}, withNotify(
		schema.NotifyTarget{URL: refusing.URL()}, schema.NotifyTarget{URL: down.URL()},
		schema.NotifyTarget{URL: "http://169.254.169.254/latest/meta-data"}, // not allowed
	))
	e.Follow(id)
	if !jobtest.Eventually(10*time.Second, func() bool { return n.Stats().Failed == 3 }) {
		t.Fatalf("stats %+v", n.Stats())
	}
	if got := refusing.all(); len(got) != 1 {
		t.Fatalf("a 410 was tried %d times, want once", len(got))
	}
	if s := n.Stats(); s.Delivered != 0 || s.Retried == 0 {
		t.Fatalf("stats %+v", s)
	}
	cons, err := e.JS.Consumer(t.Context(), "WINCH_EVENTS", "notifier")
	if err != nil {
		t.Fatal(err)
	}
	if !jobtest.Eventually(5*time.Second, func() bool {
		info, err := cons.Info(t.Context())
		return err == nil && info.NumAckPending == 0 && info.NumPending == 0
	}) {
		t.Fatal("the event given up on is still pending on the notifier's consumer")
	}
	if st := e.Status(id); st.State != schema.StateFailed || st.ExitCode == nil || *st.ExitCode != 1 {
		t.Fatalf("job %+v", st)
	}
}

var update = flag.Bool("update", false, "rewrite the golden files")

// The bodies, rendered for one fixed end: golden files.
func TestBodiesGolden(t *testing.T) {
	t.Parallel()
	code := 3
	ev := schema.Event{JobID: "06h28epmilf65fc1q5igsc3mkc", Attempt: 1, Seq: 5, Kind: schema.KindFinished, State: schema.StateFailed,
		ExitCode: &code, Error: "exit status 3", Command: "db.backup", Principal: "alice", Queue: "default",
		Params:    map[string]any{"name": "main", "password": "***"},
		CreatedAt: time.Date(2026, 11, 28, 3, 0, 0, 0, time.UTC), StartedAt: time.Date(2026, 11, 28, 3, 0, 1, 0, time.UTC),
		Time: time.Date(2026, 11, 28, 3, 4, 31, 500_000_000, time.UTC)}
	for _, format := range []string{schema.NotifyJSON, schema.NotifySlack} {
		got, err := notify.Render(ev, 0, "https://winch.example:5123", format)
		if err != nil {
			t.Fatal(err)
		}
		file := filepath.Join("testdata", format+".golden")
		if *update {
			if err := os.WriteFile(file, got, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		want, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != string(want) {
			t.Errorf("%s body:\n%s\nwant:\n%s", format, got, want)
		}
	}
	if !notify.Verify(secret, []byte("x"), notify.Sign(secret, []byte("x"))) || notify.Verify(secret, []byte("y"), notify.Sign(secret, []byte("x"))) {
		t.Fatal("Sign and Verify disagree")
	}
}
