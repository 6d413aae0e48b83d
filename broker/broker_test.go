package broker_test

import (
	"context"
	"errors"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/winchhq/winch/broker"
	"github.com/winchhq/winch/internal/testenv"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func connect(t *testing.T, url string) jetstream.JetStream {
	t.Helper()
	nc, err := broker.Connect(t.Context(), broker.ConnectConfig{URL: url})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

func TestEnsureIsIdempotentAndSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	srv, err := testenv.StartNATS(dir)
	if err != nil {
		t.Fatal(err)
	}
	url := srv.ClientURL()
	js := connect(t, url)
	ctx := t.Context()
	topo := broker.Topology{AckWait: 2 * time.Second}
	for range 2 {
		got, err := broker.Ensure(ctx, js, topo)
		if err != nil {
			t.Fatalf("Ensure: %v", err)
		}
		if got != topo.WithDefaults() {
			t.Fatalf("Ensure returned %+v, want %+v", got, topo.WithDefaults())
		}
		if _, err := broker.EnsureQueue(ctx, js, "default", got); err != nil {
			t.Fatalf("EnsureQueue: %v", err)
		}
	}
	// An unchanged topology changes nothing: no stream is updated (an
	// update is not free, and every worker ensures at start).
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	updates, err := nc.SubscribeSync("$JS.EVENT.ADVISORY.STREAM.UPDATED.>")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := broker.Ensure(ctx, js, topo); err != nil {
		t.Fatal(err)
	}
	// Zero settings take the fleet's.
	if got, err := broker.Ensure(ctx, js, broker.Topology{}); err != nil || got.AckWait != 2*time.Second {
		t.Fatalf("Ensure with no settings: %+v, %v; want the fleet's ack wait of 2s", got, err)
	}
	if m, err := updates.NextMsg(300 * time.Millisecond); err == nil {
		t.Fatalf("Ensure of an unchanged topology updated a stream: %s", m.Subject)
	}
	// A process that asks for other settings is refused, and changes
	// nothing: only Apply (winch init) changes the fleet's settings.
	var conflict *broker.ConflictError
	_, err = broker.Ensure(ctx, js, broker.Topology{AckWait: 3 * time.Second, EventsMaxAge: time.Hour})
	if !errors.As(err, &conflict) || len(conflict.Diffs) != 2 ||
		conflict.Diffs[0] != "ack_wait: the fleet has 2s, this process asks for 3s" || !strings.Contains(err.Error(), "winch init") {
		t.Fatalf("Ensure with other settings: %v", err)
	}
	if _, err := broker.Check(ctx, js, broker.Topology{MaxDeliver: 9}); !errors.As(err, &conflict) {
		t.Fatalf("Check with another max deliver: %v", err)
	}
	if ev, err := js.Stream(ctx, broker.EventsStream); err != nil || ev.CachedInfo().Config.MaxAge == time.Hour {
		t.Fatalf("a refused Ensure changed the events stream: %v", err)
	}
	applied, err := broker.Apply(ctx, js, broker.Topology{AckWait: 3 * time.Second, EventsMaxAge: time.Hour})
	if err != nil || applied.AckWait != 3*time.Second || applied.MaxDeliver != 5 {
		t.Fatalf("Apply: %+v, %v", applied, err)
	}
	if ev, err := js.Stream(ctx, broker.EventsStream); err != nil || ev.CachedInfo().Config.MaxAge != time.Hour {
		t.Fatalf("events stream after Apply: %v", err)
	}
	if loaded, err := broker.Load(ctx, js); err != nil || loaded != applied {
		t.Fatalf("Load after Apply: %+v, %v; want %+v", loaded, err, applied)
	}
	info, err := js.Stream(ctx, broker.JobsStream)
	if err != nil {
		t.Fatal(err)
	}
	if cfg := info.CachedInfo().Config; cfg.Retention != jetstream.WorkQueuePolicy || cfg.Storage != jetstream.FileStorage {
		t.Fatalf("jobs stream is %v/%v, want work queue on file", cfg.Retention, cfg.Storage)
	}
	cons, err := js.Consumer(ctx, broker.JobsStream, broker.ConsumerName("default"))
	if err != nil {
		t.Fatal(err)
	}
	ci := cons.CachedInfo().Config
	// Apply brought the existing queue consumer to the new lease.
	if ci.AckWait != 3*time.Second || ci.MaxDeliver != 5 || len(ci.BackOff) != 5 || ci.AckPolicy != jetstream.AckExplicitPolicy {
		t.Fatalf("consumer config %+v", ci)
	}

	// A request acknowledged by the server is still there after a restart
	// on the same directory.
	if _, err := js.Publish(ctx, broker.JobSubject("default", "j1", "alice"), []byte("x"), jetstream.WithMsgID("m1")); err != nil {
		t.Fatal(err)
	}
	ack, err := js.Publish(ctx, broker.JobSubject("default", "j1", "alice"), []byte("x"), jetstream.WithMsgID("m1"))
	if err != nil || !ack.Duplicate {
		t.Fatalf("second publish with the same id: duplicate=%v err=%v", ack != nil && ack.Duplicate, err)
	}
	srv.Stop()
	srv2, err := broker.NewServer(broker.ServerConfig{ListenURL: url, DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv2.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer srv2.Stop()
	js2 := connect(t, srv2.ClientURL())
	s, err := js2.Stream(ctx, broker.JobsStream)
	if err != nil {
		t.Fatal(err)
	}
	if n := s.CachedInfo().State.Msgs; n != 1 {
		t.Fatalf("after restart the jobs stream holds %d requests, want 1", n)
	}
}

// Each priority's subjects match its own consumer's filter only: a work
// queue stream refuses consumers whose filters overlap.
func TestPriorityFiltersDoNotOverlap(t *testing.T) {
	t.Parallel()
	for _, prio := range broker.Priorities {
		subject := broker.PriorityJobSubject("q", prio, "j1", "alice")
		for _, other := range broker.Priorities {
			if matches(broker.PriorityFilter("q", other), subject) != (other == prio) {
				t.Errorf("filter %s and subject %s", broker.PriorityFilter("q", other), subject)
			}
		}
		if !matches(broker.QueueFilter("q"), subject) {
			t.Errorf("QueueFilter does not match %s", subject)
		}
	}
}

// matches reports whether a NATS subject filter matches subject.
func matches(filter, subject string) bool {
	f, s := strings.Split(filter, "."), strings.Split(subject, ".")
	for i, tok := range f {
		if tok == ">" {
			return len(s) > i
		}
		if i >= len(s) || tok != "*" && tok != s[i] {
			return false
		}
	}
	return len(f) == len(s)
}

func TestSubjects(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		subject string
		want    broker.JobSubjectParts
		ok      bool
	}{
		{broker.JobSubject("default", "j1", "alice"), broker.JobSubjectParts{Queue: "default", Job: "j1", Principal: "alice"}, true},
		{"winch.jobs.default.alice", broker.JobSubjectParts{}, false},
		{"winch.jobs.default.j1.a.b", broker.JobSubjectParts{}, false},
		{broker.PriorityJobSubject("default", broker.PriorityHigh, "j1", "alice"), broker.JobSubjectParts{Queue: "default", Priority: "high", Job: "j1", Principal: "alice"}, true},
		{broker.PriorityJobSubject("default", broker.PriorityLow, "j1", "alice"), broker.JobSubjectParts{Queue: "default", Priority: "low", Job: "j1", Principal: "alice"}, true},
		// normal has no token: the same subject as a request without priority.
		{broker.PriorityJobSubject("default", "normal", "j1", "alice"), broker.JobSubjectParts{Queue: "default", Job: "j1", Principal: "alice"}, true},
		// a job may be named "high": three tokens are queue, job, principal.
		{"winch.jobs.default.high.alice", broker.JobSubjectParts{Queue: "default", Job: "high", Principal: "alice"}, true},
		{"winch.jobs.default.urgent.j1.alice", broker.JobSubjectParts{}, false},
		{"winch.jobs.default..alice", broker.JobSubjectParts{}, false},
		{"winch.events.j.log", broker.JobSubjectParts{}, false},
	} {
		got, ok := broker.ParseJobSubject(tt.subject)
		if got != tt.want || ok != tt.ok {
			t.Errorf("ParseJobSubject(%q) = %+v, %v", tt.subject, got, ok)
		}
	}
	for _, tt := range []struct {
		subject string
		want    broker.ControlSubjectParts
		ok      bool
	}{
		{broker.ControlSubject("cancel", "j1", "bob"), broker.ControlSubjectParts{Action: "cancel", Job: "j1", Principal: "bob"}, true},
		{"winch.control.cancel.j1", broker.ControlSubjectParts{}, false},
		{"winch.jobs.default.j1.bob", broker.ControlSubjectParts{}, false},
	} {
		got, ok := broker.ParseControlSubject(tt.subject)
		if got != tt.want || ok != tt.ok {
			t.Errorf("ParseControlSubject(%q) = %+v, %v", tt.subject, got, ok)
		}
	}
}

func TestConnectFailsFastWithAHint(t *testing.T) {
	t.Parallel()
	_, err := broker.Connect(context.Background(), broker.ConnectConfig{URL: "nats://127.0.0.1:1"})
	if !errors.Is(err, broker.ErrUnreachable) {
		t.Fatalf("Connect to a closed port: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err = broker.Connect(ctx, broker.ConnectConfig{URL: "nats://127.0.0.1:1", Wait: true})
	if !errors.Is(err, broker.ErrUnreachable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("waiting Connect after its deadline: %v", err)
	}
}

func TestServerNeedsADataDir(t *testing.T) {
	t.Parallel()
	if _, err := broker.NewServer(broker.ServerConfig{}); err == nil {
		t.Fatal("a server without a data dir was accepted")
	}
	if _, err := broker.NewServer(broker.ServerConfig{ListenURL: "http://x", DataDir: os.TempDir()}); err == nil {
		t.Fatal("a non-nats listen URL was accepted")
	}
}

// TestServerSync: how often JetStream syncs is chosen, not left to chance:
// "always", a duration, or the config file's (else the server's default).
func TestServerSync(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	conf := dir + "/nats.conf"
	if err := os.WriteFile(conf, []byte("jetstream { sync_interval: always }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, sync, file string
		want             bool
		wantErr          string
	}{
		{name: "server default", want: false},
		{name: "always", sync: "always", want: true},
		{name: "interval", sync: "1s", want: false},
		{name: "the file's", file: conf, want: true},
		{name: "not a setting", sync: "often", wantErr: `want "always" or a duration`},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv, err := broker.NewServer(broker.ServerConfig{ConfigFile: tt.file, ListenURL: "nats://127.0.0.1:0",
				DataDir: t.TempDir(), Sync: tt.sync, Name: "sync-" + strconv.Itoa(i)})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("sync %q: error %v, want one saying %q", tt.sync, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if err := srv.Start(t.Context()); err != nil {
				t.Fatal(err)
			}
			defer srv.Stop()
			if got := srv.SyncAlways(); got != tt.want {
				t.Fatalf("sync always: %v, want %v", got, tt.want)
			}
		})
	}
}
