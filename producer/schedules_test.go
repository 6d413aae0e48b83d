package producer_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/winchhq/winch/broker"
	"github.com/winchhq/winch/modules"
	"github.com/winchhq/winch/producer"
	"github.com/winchhq/winch/schedule"
)

// registerModule puts entry in the module registry for the test's length.
func registerModule(t *testing.T, js jetstream.JetStream, entry modules.Entry) {
	t.Helper()
	kv, err := js.KeyValue(t.Context(), broker.ModulesBucket)
	if err != nil {
		t.Fatal(err)
	}
	data, err := json.Marshal(entry)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(t.Context(), entry.Name, data); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = kv.Delete(t.Context(), entry.Name) })
}

// Parameters are checked when a schedule is added: nothing is stored for
// bad or missing values, and the error names the parameter; a module's
// command is pinned at the commit it was checked against.
func TestAddScheduleValidatesParameters(t *testing.T) {
	c := client(t)
	cat, err := modules.CatalogOf([]modules.Entry{{Name: "core", Manifest: modules.Core()}, dbModule(t, "db")})
	if err != nil {
		t.Fatal(err)
	}
	every := schedule.Spec{Every: time.Hour}
	for _, tc := range []struct {
		name, param string
		params      map[string]any
	}{
		{"sched-missing", "name", map[string]any{}},
		{"sched-bad", "name", map[string]any{"name": "Not A Name"}},
		{"sched-typed", "tables", map[string]any{"name": "main", "tables": 3}},
	} {
		_, err := c.AddScheduleIn(t.Context(), cat, producer.ScheduleRequest{Name: tc.name, Spec: every,
			Run: producer.RunRequest{Command: "db.backup", Params: tc.params, Principal: "alice"}})
		var pe *producer.ParamError
		if !producer.IsInvalid(err) || !errors.As(err, &pe) || pe.Param != tc.param || !strings.Contains(err.Error(), tc.param+": ") {
			t.Errorf("%s: %v, want an invalid parameter %q", tc.name, err, tc.param)
		}
		if _, _, err := c.Schedule(t.Context(), tc.name); !errors.Is(err, schedule.ErrNotFound) {
			t.Errorf("%s was stored: %v", tc.name, err)
		}
	}
	if _, err := c.AddScheduleIn(t.Context(), cat, producer.ScheduleRequest{Name: "sched-unknown", Spec: every,
		Run: producer.RunRequest{Command: "db.restore", Principal: "alice"}}); !errors.Is(err, producer.ErrUnknownCommand) {
		t.Errorf("an unknown command: %v", err)
	}

	d, err := c.AddScheduleIn(t.Context(), cat, producer.ScheduleRequest{Name: "sched-pinned", Spec: every,
		Run: producer.RunRequest{Command: "db.backup", Params: map[string]any{"name": "main"}, Principal: "alice"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.RemoveSchedule(t.Context(), d.Name, "alice") })
	info, _, err := c.Schedule(t.Context(), "sched-pinned")
	if err != nil {
		t.Fatal(err)
	}
	if info.Request.ModuleCommit != dbCommit || d.Request.ModuleCommit != dbCommit || info.Owner != "alice" {
		t.Fatalf("stored %+v, want db.backup pinned at %s", info.Definition, dbCommit)
	}
}

// A schedule is checked again when it is resumed, against the module as
// the registry has it then: one whose parameters the module no longer
// takes stays paused, and the error names the parameter.
func TestResumeChecksTheScheduleAgain(t *testing.T) {
	c := client(t)
	js, err := jetstream.New(connect(t))
	if err != nil {
		t.Fatal(err)
	}
	entry := dbModule(t, "resumedb")
	registerModule(t, js, entry)
	if _, err := c.AddSchedule(t.Context(), producer.ScheduleRequest{Name: "resume-recheck", Spec: schedule.Spec{Every: time.Hour},
		Run: producer.RunRequest{Command: "resumedb.backup", Params: map[string]any{"name": "main"}, Queue: "nobody-serves-this", Principal: "alice"}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.RemoveSchedule(t.Context(), "resume-recheck", "alice") })
	if err := c.PauseSchedule(t.Context(), "resume-recheck", "alice"); err != nil {
		t.Fatal(err)
	}
	if err := c.ResumeSchedule(t.Context(), "resume-recheck", "bob"); !errors.Is(err, producer.ErrNotOwner) {
		t.Fatalf("bob resumed alice's schedule: %v", err)
	}

	// The module's next commit wants a name of two letters at most.
	m, err := modules.ParseManifest("winch.yaml", []byte(`module: resumedb
commands:
  backup:
    params:
      name: {type: string, required: true, pattern: '^[a-z]{1,2}$'}
    run: ["sh", "backup.sh"]
`))
	if err != nil {
		t.Fatal(err)
	}
	entry.Manifest, entry.Commit = m, strings.Repeat("b", 40)
	registerModule(t, js, entry)
	err = c.ResumeSchedule(t.Context(), "resume-recheck", "alice")
	var pe *producer.ParamError
	if !errors.As(err, &pe) || pe.Param != "name" || !strings.Contains(err.Error(), "resume resume-recheck") {
		t.Fatalf("resume against the new commit: %v, want the parameter name refused", err)
	}
	info, _, err := c.Schedule(t.Context(), "resume-recheck")
	if err != nil || !info.Paused || info.Request.ModuleCommit != dbCommit {
		t.Fatalf("after a refused resume: %+v, %v", info.Entry, err)
	}
}

// Alice's schedule can put a copy of a definition on bob's schedule
// subject (its Nats-Schedule-Target may be any subject of the stream).
// The copy is not bob's schedule: bob cannot be led to resume it, and it
// never runs as him.
func TestAPlantedScheduleCannotBeResumed(t *testing.T) {
	c := client(t)
	nc := connect(t)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	forged := `{"version":1,"name":"planted","owner":"bob","every":"1h","catch_up":"run-once","request":{"command":"core.echo","params":{"text":"alice's"},"queue":"default"}}`
	msg := nats.NewMsg(broker.ScheduleSubject("planter", "alice"))
	msg.Data = []byte(forged)
	msg.Header.Set(schedule.HeaderSchedule, "@at "+time.Now().Add(time.Second).UTC().Format(time.RFC3339))
	msg.Header.Set(schedule.HeaderScheduleTarget, broker.ScheduleSubject("planted", "bob"))
	if _, err := js.PublishMsg(t.Context(), msg); err != nil {
		t.Fatal(err)
	}
	s, err := js.Stream(t.Context(), broker.SchedulesStream)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := s.GetLastMsgForSubject(t.Context(), broker.ScheduleSubject("planted", "bob")); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the server did not fire alice's schedule onto bob's subject")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := c.ResumeSchedule(t.Context(), "planted", "bob"); !errors.Is(err, schedule.ErrNotFound) {
		t.Fatalf("bob resumed alice's copy: %v", err)
	}
	list, err := c.Schedules(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range list {
		if s.Name == "planted" {
			t.Fatalf("listed: %+v", s)
		}
	}
}
