package jobs_test

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/winchhq/winch/broker"
	"github.com/winchhq/winch/jobs"
)

func newSessions(t *testing.T, lease time.Duration) *jobs.Sessions {
	t.Helper()
	return jobs.NewSessions(bucket(t, connect(t, natsURL), broker.WorkersBucket), lease)
}

func checkAlive(t *testing.T, s *jobs.Sessions, session string, lease time.Duration, want bool) {
	t.Helper()
	alive, left, err := s.Alive(testContext(t), session)
	if err != nil {
		t.Fatal(err)
	}
	if alive != want {
		t.Fatalf("Alive(%q) = %v, want %v", session, alive, want)
	}
	if alive && (left <= 0 || left > lease) {
		t.Errorf("Alive(%q) leaves %v, want within (0, %v]", session, left, lease)
	}
	if !alive && left != 0 {
		t.Errorf("a dead session has %v left", left)
	}
}

func TestSessionsBeatAndEnd(t *testing.T) {
	t.Parallel()
	const lease = 10 * time.Second
	s := newSessions(t, lease)
	session := jobs.NewSession("w-beat")
	checkAlive(t, s, session, lease, false)
	if err := s.Beat(testContext(t), session, jobs.SessionInfo{Worker: "w-beat", Queues: []string{"default"}, StartedAt: tCreated}); err != nil {
		t.Fatal(err)
	}
	checkAlive(t, s, session, lease, true)
	if err := s.End(testContext(t), session); err != nil {
		t.Fatal(err)
	}
	checkAlive(t, s, session, lease, false)
	// A session that beats again after End is alive again.
	if err := s.Beat(testContext(t), session, jobs.SessionInfo{Worker: "w-beat"}); err != nil {
		t.Fatal(err)
	}
	checkAlive(t, s, session, lease, true)
}

func TestSessionsUnknown(t *testing.T) {
	t.Parallel()
	s := newSessions(t, time.Minute)
	checkAlive(t, s, jobs.NewSession("nobody"), time.Minute, false)
	checkAlive(t, s, "", time.Minute, false)
}

func TestSessionsLeaseExpires(t *testing.T) {
	t.Parallel()
	const lease = 300 * time.Millisecond
	s := newSessions(t, lease)
	session := jobs.NewSession("w-lease")
	if err := s.Beat(testContext(t), session, jobs.SessionInfo{Worker: "w-lease"}); err != nil {
		t.Fatal(err)
	}
	checkAlive(t, s, session, lease, true)
	time.Sleep(lease + 100*time.Millisecond)
	checkAlive(t, s, session, lease, false)
	// Another beat renews it.
	if err := s.Beat(testContext(t), session, jobs.SessionInfo{Worker: "w-lease"}); err != nil {
		t.Fatal(err)
	}
	checkAlive(t, s, session, lease, true)
}

func TestSessionsInfo(t *testing.T) {
	t.Parallel()
	js := connect(t, natsURL)
	kv := bucket(t, js, broker.WorkersBucket)
	s := jobs.NewSessions(kv, time.Minute)
	session := jobs.NewSession("w-info")
	info := jobs.SessionInfo{Worker: "w-info", Queues: []string{"default", "gpu"}, StartedAt: tCreated}
	if err := s.Beat(testContext(t), session, info); err != nil {
		t.Fatal(err)
	}
	e, err := kv.Get(testContext(t), session)
	if err != nil {
		t.Fatal(err)
	}
	var got jobs.SessionInfo
	if err := json.Unmarshal(e.Value(), &got); err != nil {
		t.Fatal(err)
	}
	if got.Worker != info.Worker || strings.Join(got.Queues, ",") != "default,gpu" || !got.StartedAt.Equal(info.StartedAt) {
		t.Errorf("stored %+v, want %+v", got, info)
	}
}

func TestNewSession(t *testing.T) {
	t.Parallel()
	safe := regexp.MustCompile(`^[A-Za-z0-9_-]+-[0-9a-f]{12}$`)
	tests := []struct{ worker, prefix string }{
		{"w1", "w1-"},
		{"host.example.com:4222", "host_example_com_4222-"},
		{"../weird name/", "weird_name-"},
		{strings.Repeat("a", 60), strings.Repeat("a", 40) + "-"},
	}
	for _, tt := range tests {
		a, b := jobs.NewSession(tt.worker), jobs.NewSession(tt.worker)
		if a == b {
			t.Errorf("NewSession(%q) gave %q twice", tt.worker, a)
		}
		if !strings.HasPrefix(a, tt.prefix) || !safe.MatchString(a) {
			t.Errorf("NewSession(%q) = %q, want %q and a random suffix, only [A-Za-z0-9_-]", tt.worker, a, tt.prefix)
		}
	}
	// A session name is a key of the workers bucket.
	s := newSessions(t, time.Minute)
	session := jobs.NewSession("host.example.com:4222")
	if err := s.Beat(testContext(t), session, jobs.SessionInfo{}); err != nil {
		t.Fatal(err)
	}
	checkAlive(t, s, session, time.Minute, true)
}
