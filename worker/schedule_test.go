package worker_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/winchhq/winch/broker"
	"github.com/winchhq/winch/internal/jobtest"
	"github.com/winchhq/winch/internal/testenv"
	"github.com/winchhq/winch/producer"
	"github.com/winchhq/winch/schedule"
	"github.com/winchhq/winch/schema"
	"github.com/winchhq/winch/worker"
)

// addSchedule adds a schedule on the test's queue, as owner.
func addSchedule(t *testing.T, e *jobtest.Env, name, owner string, spec schedule.Spec, catchUp schedule.CatchUp, command string, params map[string]any) schedule.Definition {
	t.Helper()
	d, err := e.Client.AddScheduleIn(t.Context(), testCatalog(), producer.ScheduleRequest{
		Name: name, Spec: spec, CatchUp: catchUp,
		Run: producer.RunRequest{Command: command, Params: params, Queue: e.Queue, Principal: owner},
	})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// scheduleRuns are the schedule's fire records with their jobs' states.
func scheduleRuns(t *testing.T, e *jobtest.Env, name string) []producer.ScheduleRun {
	t.Helper()
	_, runs, err := e.Client.Schedule(t.Context(), name)
	if err != nil {
		t.Fatal(err)
	}
	return runs
}

func waitRuns(t *testing.T, e *jobtest.Env, name string, n int, d time.Duration) []producer.ScheduleRun {
	t.Helper()
	var runs []producer.ScheduleRun
	var err error
	if !jobtest.Eventually(d, func() bool {
		// Just after a broker restart, reads may fail until the client
		// has reconnected: ask again.
		_, runs, err = e.Client.Schedule(t.Context(), name)
		return err == nil && len(runs) >= n
	}) {
		t.Fatalf("schedule %s: %d fires recorded after %v, want %d (last error: %v)", name, len(runs), d, n, err)
	}
	return runs
}

// uniqueName is a schedule name of the test's own on the shared server.
func uniqueName(e *jobtest.Env) string { return strings.ReplaceAll(e.Queue, "_", "-") }

func TestScheduleIntervalFiresRepeatedlyAsOrdinaryJobs(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.StartWorker(worker.Config{})
	name := uniqueName(e)
	addSchedule(t, e, name, "alice", schedule.Spec{Every: time.Second}, "", "core.echo", map[string]any{"text": "tick"})
	runs := waitRuns(t, e, name, 3, 10*time.Second)
	if err := e.Client.RemoveSchedule(t.Context(), name, "alice"); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, r := range runs[:3] {
		if seen[r.Job] || !strings.HasPrefix(r.Job, name+"-") {
			t.Fatalf("fire job %q (seen before: %v)", r.Job, seen[r.Job])
		}
		seen[r.Job] = true
		events := e.Follow(r.Job)
		accepted := events[0]
		if accepted.Kind != schema.KindAccepted || accepted.Schedule != name || accepted.Principal != "alice" || accepted.Priority.Or() != schema.PriorityNormal {
			t.Fatalf("first event %+v: want accepted, of schedule %s, by alice, normal priority", accepted, name)
		}
		if last := jobtest.Last(events); last.State != schema.StateSucceeded || last.Schedule != name {
			t.Fatalf("last event %+v", last)
		}
	}
	if !runs[1].Fire.After(runs[0].Fire) {
		t.Fatalf("fires due %v then %v", runs[0].Fire, runs[1].Fire)
	}
	// Removed: it never fires again.
	n := len(scheduleRuns(t, e, name))
	time.Sleep(2500 * time.Millisecond)
	if m := len(scheduleRuns(t, e, name)); m > n+1 {
		t.Fatalf("removed, it fired %d more times", m-n)
	}
}

func TestRunAtFiresOnceAtItsTime(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.StartWorker(worker.Config{})
	cat, err := e.Client.Catalog(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	at := time.Now().Add(2 * time.Second)
	id, d, err := e.Client.RunAt(t.Context(), cat, producer.RunRequest{Command: "core.echo", Params: map[string]any{"text": "later"}, Queue: e.Queue, Principal: "alice"}, at, "")
	if err != nil {
		t.Fatal(err)
	}
	if st, err := e.Client.Status(t.Context(), id); err == nil {
		t.Fatalf("before its time, the job exists: %+v", st)
	}
	last := jobtest.Last(e.Follow(id))
	if last.State != schema.StateSucceeded || last.Schedule != d.Name {
		t.Fatalf("last event %+v", last)
	}
	started := e.Status(id).StartedAt
	if started.Before(at.Truncate(time.Second)) || started.Sub(at) > 5*time.Second {
		t.Fatalf("started %v, due %v", started, at)
	}
	time.Sleep(1500 * time.Millisecond)
	if runs := scheduleRuns(t, e, d.Name); len(runs) != 1 {
		t.Fatalf("%d fires, want 1", len(runs))
	}
	if _, _, err := e.Client.RunAt(t.Context(), cat, producer.RunRequest{Command: "core.echo", Queue: e.Queue, Principal: "alice"}, time.Now().Add(-time.Minute), ""); err == nil || !strings.Contains(err.Error(), "is not in the future") {
		t.Fatalf("--at in the past: %v", err)
	}
}

// A cron in a time zone runs at that zone's time. Six fields (seconds
// first) let the test ask for a time seconds away rather than wait for a
// minute to turn.
func TestScheduleCronRunsAtItsTimeInItsZone(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.StartWorker(worker.Config{})
	tokyo, err := time.LoadLocation("Asia/Tokyo")
	if err != nil {
		t.Fatal(err)
	}
	due := time.Now().Add(2 * time.Second).Truncate(time.Second).In(tokyo)
	name := uniqueName(e)
	d := addSchedule(t, e, name, "alice", schedule.Spec{Cron: fmt.Sprintf("%d %d %d * * *", due.Second(), due.Minute(), due.Hour()), TimeZone: "Asia/Tokyo"},
		"", "core.echo", map[string]any{"text": "konnichiwa"})
	runs := waitRuns(t, e, name, 1, 8*time.Second)
	if !runs[0].Fire.Equal(due) || runs[0].Job != schedule.JobID(name, "alice", due) {
		t.Fatalf("fire %+v, want due %v", runs[0], due)
	}
	last := jobtest.Last(e.Follow(runs[0].Job))
	st := e.Status(runs[0].Job)
	if last.State != schema.StateSucceeded || st.StartedAt.Before(due) || st.StartedAt.Sub(due) > 5*time.Second {
		t.Fatalf("job %+v started %v, due %v", last, st.StartedAt, due)
	}
	info, _, err := e.Client.Schedule(t.Context(), name)
	if err != nil {
		t.Fatal(err)
	}
	if want := due.AddDate(0, 0, 1); !info.Next.Equal(want) || info.TimeZone != "Asia/Tokyo" || d.Cron == "" {
		t.Fatalf("next fire %v, want %v (zone %q)", info.Next, want, info.TimeZone)
	}
	if err := e.Client.RemoveSchedule(t.Context(), name, "alice"); err != nil {
		t.Fatal(err)
	}
}

func TestSchedulePausedDoesNotFireAndResumes(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.StartWorker(worker.Config{})
	name := uniqueName(e)
	addSchedule(t, e, name, "alice", schedule.Spec{Every: time.Second}, "", "core.echo", map[string]any{"text": "tick"})
	waitRuns(t, e, name, 1, 5*time.Second)
	if err := e.Client.PauseSchedule(t.Context(), name, "bob"); err == nil {
		t.Fatal("bob paused alice's schedule")
	}
	if err := e.Client.PauseSchedule(t.Context(), name, "alice"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond) // a fire on its way when it was paused
	n := len(scheduleRuns(t, e, name))
	time.Sleep(2500 * time.Millisecond)
	if m := len(scheduleRuns(t, e, name)); m != n {
		t.Fatalf("paused, it fired %d times", m-n)
	}
	info, _, _ := e.Client.Schedule(t.Context(), name)
	if !info.Paused || !info.Next.IsZero() {
		t.Fatalf("paused schedule: %+v", info)
	}
	if err := e.Client.ResumeSchedule(t.Context(), name, "alice"); err != nil {
		t.Fatal(err)
	}
	waitRuns(t, e, name, n+1, 5*time.Second)
	if err := e.Client.RemoveSchedule(t.Context(), name, "alice"); err != nil {
		t.Fatal(err)
	}
}

// The owner's roles are checked at each fire, as for any request: a fire
// after the owner lost the role is rejected, and the rejection names the
// schedule and the owner.
func TestScheduleFireOfAnOwnerWhoLostTheRoleIsRejectedAndAudited(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	granted := e.StartWorker(worker.Config{Roles: worker.Roles{"carol": {"dba"}}})
	name := uniqueName(e)
	addSchedule(t, e, name, "carol", schedule.Spec{Every: time.Second}, "", "test.privileged", nil)
	first := waitRuns(t, e, name, 1, 5*time.Second)[0]
	if last := jobtest.Last(e.Follow(first.Job)); last.State != schema.StateSucceeded {
		t.Fatalf("with the role: %+v", last)
	}
	_ = granted.Stop(t.Context())
	e.StartWorker(worker.Config{Roles: worker.Roles{"carol": {"dev"}}}) // the roles file changed
	n := len(scheduleRuns(t, e, name))
	runs := waitRuns(t, e, name, n+2, 8*time.Second)
	if err := e.Client.RemoveSchedule(t.Context(), name, "carol"); err != nil {
		t.Fatal(err)
	}
	last := jobtest.Last(e.Follow(runs[len(runs)-1].Job))
	if last.Kind != schema.KindRejected || last.Principal != "carol" || last.Schedule != name || !strings.Contains(last.Error, "needs one of the roles") {
		t.Fatalf("after the role was taken: %+v", last)
	}
}

// A schedule published on alice's subject cannot make fires on bob's: the
// fire is refused, and the refusal is recorded against alice.
func TestScheduleOfSomeoneElsesFiresIsRefusedAndAudited(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.StartWorker(worker.Config{})
	name := uniqueName(e)
	rejected := make(chan schema.Event, 10)
	sub, err := e.NC.Subscribe("winch.events.*.rejected", func(m *nats.Msg) {
		if ev, err := schema.DecodeEvent(m.Data); err == nil && ev.Schedule == name {
			rejected <- ev
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	d := schedule.Definition{Version: schedule.Version, Name: name, Owner: "bob", Every: schema.Duration(time.Second),
		CatchUp: schedule.CatchUpRunOnce, Request: schema.Request{Command: "core.echo", Queue: e.Queue}, CreatedAt: time.Now()}
	msg := nats.NewMsg(broker.ScheduleSubject(name, "alice"))
	msg.Data = d.Encode()
	msg.Header.Set(schedule.HeaderSchedule, "@every 1s")
	msg.Header.Set(schedule.HeaderScheduleTarget, broker.FireSubject(name, "bob"))
	if _, err := e.JS.PublishMsg(t.Context(), msg); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if s, err := e.JS.Stream(context.Background(), broker.SchedulesStream); err == nil {
			_ = s.Purge(context.Background(), jetstream.WithPurgeSubject(broker.ScheduleSubject(name, "alice")))
		}
	}()
	select {
	case ev := <-rejected:
		if ev.Principal != "alice" || !strings.Contains(ev.Error, "fire refused") {
			t.Fatalf("rejection %+v: want one of alice's", ev)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no rejection of the forged fire")
	}
	// Neither a schedule (alice's subject holds one that says it is bob's)
	// nor a fire record.
	if info, runs, err := e.Client.Schedule(t.Context(), name); !errors.Is(err, schedule.ErrNotFound) {
		t.Fatalf("the forged schedule reads as %+v with fires %+v (%v)", info, runs, err)
	}
}

// recordLog reads a test.record log: one "<job> <attempt>" line per start.
func recordLog(t *testing.T, path string) []string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return strings.Fields(string(data))
}

// However many workers see a fire, and across broker restarts, each fire
// runs once.
func TestScheduleFiresRunOnceAcrossWorkersAndBrokerRestarts(t *testing.T) {
	t.Parallel()
	srv := testenv.RestartableNATS(t)
	e := jobtest.NewWithTopology(t, srv.URL, jobtest.Topology, withDefaults)
	e.StartWorker(worker.Config{ID: "w1"})
	e.StartWorker(worker.Config{ID: "w2"})
	log := filepath.Join(t.TempDir(), "starts")
	name := "twice"
	addSchedule(t, e, name, "alice", schedule.Spec{Every: time.Second}, "", "test.record", map[string]any{"log": log, "seconds": 0})
	waitRuns(t, e, name, 2, 10*time.Second)
	srv.Restart(500 * time.Millisecond)
	time.Sleep(2 * time.Second)
	srv.Restart(1500 * time.Millisecond)
	n := len(scheduleRuns(t, e, name))
	waitRuns(t, e, name, n+2, 15*time.Second)
	if err := e.Client.RemoveSchedule(t.Context(), name, "alice"); err != nil {
		t.Fatal(err)
	}
	runs := scheduleRuns(t, e, name)
	for _, r := range runs {
		jobtest.Last(e.Follow(r.Job))
	}
	var starts []string
	for i, f := range recordLog(t, log) {
		if i%2 == 0 {
			starts = append(starts, f)
		}
	}
	jobsSeen := map[string]int{}
	for _, j := range starts {
		jobsSeen[j]++
	}
	for _, r := range runs {
		if r.Skipped != "" {
			continue
		}
		if jobsSeen[r.Job] != 1 {
			t.Errorf("fire %s due %v started %d times", r.Job, r.Fire, jobsSeen[r.Job])
		}
	}
	for j, k := range jobsSeen {
		if k != 1 {
			t.Errorf("job %s started %d times", j, k)
		}
	}
	fires := map[time.Time]int{}
	for _, r := range runs {
		fires[r.Fire]++
	}
	for due, k := range fires {
		if k != 1 {
			t.Errorf("the fire due %v was recorded %d times", due, k)
		}
	}
	t.Logf("%d fires, %d starts, over two broker restarts", len(runs), len(starts))
}

// A fire due while the broker was down runs once when it is back, or is
// skipped, by the schedule's catch-up choice.
func TestScheduleCatchUpAfterTheBrokerWasDown(t *testing.T) {
	t.Parallel()
	srv := testenv.RestartableNATS(t)
	e := jobtest.NewWithTopology(t, srv.URL, jobtest.Topology, withDefaults)
	e.StartWorker(worker.Config{ScheduleGrace: time.Second})
	due := time.Now().Add(5 * time.Second).Truncate(time.Second).UTC() // the cron has no zone: UTC
	cron := schedule.Spec{Cron: fmt.Sprintf("%d %d %d * * *", due.Second(), due.Minute(), due.Hour())}
	addSchedule(t, e, "run-once", "alice", cron, schedule.CatchUpRunOnce, "core.echo", map[string]any{"text": "caught up"})
	addSchedule(t, e, "skip", "alice", cron, schedule.CatchUpSkip, "core.echo", map[string]any{"text": "skipped"})
	addSchedule(t, e, "at-skip", "alice", schedule.Spec{At: due}, schedule.CatchUpSkip, "core.echo", map[string]any{"text": "skipped"})
	if time.Until(due) < time.Second {
		t.Fatalf("adding the schedules took until %v before they were due; the broker must be down at that time", time.Until(due))
	}
	srv.Restart(time.Until(due) + 3*time.Second)
	for _, name := range []string{"run-once", "skip", "at-skip"} {
		waitRuns(t, e, name, 1, 15*time.Second)
	}
	time.Sleep(time.Second)
	once := scheduleRuns(t, e, "run-once")
	if len(once) != 1 || once[0].Skipped != "" || !once[0].Fire.Equal(due) {
		t.Fatalf("run-once: %+v; want one fire due %v, run", once, due)
	}
	if last := jobtest.Last(e.Follow(once[0].Job)); last.State != schema.StateSucceeded {
		t.Fatalf("the caught-up fire: %+v", last)
	}
	for _, name := range []string{"skip", "at-skip"} {
		runs := scheduleRuns(t, e, name)
		if len(runs) != 1 || !strings.Contains(runs[0].Skipped, "catch-up is skip") || runs[0].State != "skipped" {
			t.Fatalf("%s: %+v; want one fire, skipped", name, runs)
		}
		if st, err := e.Client.Status(t.Context(), runs[0].Job); err == nil {
			t.Fatalf("%s: the skipped fire has a job: %+v", name, st)
		}
	}
}

// An interval's fire that was due while the broker was down is skipped
// under --catch-up skip; one after a pause is not missed, and runs.
func TestScheduleIntervalCatchUpSkipAndResume(t *testing.T) {
	t.Parallel()
	srv := testenv.RestartableNATS(t)
	e := jobtest.NewWithTopology(t, srv.URL, jobtest.Topology, withDefaults)
	e.StartWorker(worker.Config{ScheduleGrace: time.Second})
	name := "every-skip"
	addSchedule(t, e, name, "alice", schedule.Spec{Every: 2 * time.Second}, schedule.CatchUpSkip, "core.echo", map[string]any{"text": "tick"})
	before := len(waitRuns(t, e, name, 1, 10*time.Second))
	srv.Restart(5 * time.Second)
	back := time.Now()
	// The fires due while the broker was down are skipped (the server
	// may hand over one or, when it stopped at a fire's time, two); the
	// first fire due after it came back runs.
	var runs []producer.ScheduleRun
	if !jobtest.Eventually(20*time.Second, func() bool {
		var err error // reads may fail while the client reconnects: ask again
		_, runs, err = e.Client.Schedule(t.Context(), name)
		return err == nil && len(runs) > before && runs[len(runs)-1].Skipped == "" && runs[len(runs)-1].Fire.After(back)
	}) {
		t.Fatalf("no fire ran on time after the broker came back: %+v", runs)
	}
	// The missed fires arrive as the server comes back (their due times,
	// counted from the server's next-fire stamps, may fall just after
	// that): each is skipped, as late, and there are no more of them than
	// the outage held.
	skipped := 0
	for _, r := range runs[before : len(runs)-1] {
		switch {
		case strings.Contains(r.Skipped, "catch-up is skip"):
			skipped++
		case r.Skipped == "":
		default:
			t.Fatalf("after the broker was down: %+v", r)
		}
	}
	if skipped == 0 || skipped > 3 {
		t.Fatalf("%d fires skipped for a 5 s outage of a 2 s interval: %+v", skipped, runs[before:])
	}
	if err := e.Client.PauseSchedule(t.Context(), name, "alice"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Second)
	n := len(scheduleRuns(t, e, name))
	if err := e.Client.ResumeSchedule(t.Context(), name, "alice"); err != nil {
		t.Fatal(err)
	}
	runs = waitRuns(t, e, name, n+1, 10*time.Second)
	if runs[n].Skipped != "" {
		t.Fatalf("the first fire after resuming: %+v", runs[n])
	}
	if err := e.Client.RemoveSchedule(t.Context(), name, "alice"); err != nil {
		t.Fatal(err)
	}
}

// Parameters are validated again at each run: a schedule written straight
// on NATS, past `winch schedule add`'s checks, with a parameter its command
// does not take, makes a fire that is rejected, naming the schedule and the
// parameter, and never runs.
func TestScheduleFireWithInvalidParametersIsRejected(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.StartWorker(worker.Config{})
	name := uniqueName(e)
	st, err := schedule.Open(t.Context(), e.JS)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Now().Add(time.Second).Truncate(time.Second).UTC()
	d := schedule.Definition{Version: schedule.Version, Name: name, Owner: "alice", At: at, CatchUp: schedule.CatchUpRunOnce,
		Request: schema.Request{Command: "core.echo", Params: map[string]any{"text": []any{"not", "a", "string"}}, Queue: e.Queue}, CreatedAt: time.Now().UTC()}
	if err := st.Put(t.Context(), d); err != nil {
		t.Fatal(err)
	}
	runs := waitRuns(t, e, name, 1, 10*time.Second)
	if runs[0].Job != schedule.JobID(name, "alice", at) || runs[0].Skipped != "" {
		t.Fatalf("fire %+v", runs[0])
	}
	events := e.Follow(runs[0].Job)
	last := jobtest.Last(events)
	if last.Kind != schema.KindRejected || last.Schedule != name || last.Principal != "alice" ||
		!strings.Contains(last.Error, "invalid parameters for core.echo") || !strings.Contains(last.Error, "text") {
		t.Fatalf("the fire with a bad parameter: %+v", last)
	}
	for _, ev := range events {
		if ev.Kind == schema.KindStarted {
			t.Fatalf("it started: %+v", ev)
		}
	}
	if r := scheduleRuns(t, e, name); r[0].State != schema.StateRejected {
		t.Fatalf("schedule show says %q", r[0].State)
	}
}

// firesStored counts the fires of schedule name of alice the server has
// stored (the stream keeps the last broker.RunsKept).
func firesStored(t *testing.T, e *jobtest.Env, name string) int {
	t.Helper()
	s, err := e.JS.Stream(t.Context(), broker.SchedulesStream)
	if err != nil {
		t.Fatal(err)
	}
	subject := broker.FireSubject(name, "alice")
	info, err := s.Info(t.Context(), jetstream.WithSubjectFilter(subject))
	if err != nil {
		t.Fatal(err)
	}
	return int(info.State.Subjects[subject])
}

// While every worker is stopped the server keeps firing, and the fires
// wait in the stream. When a worker is back, they are late: under
// run-once only the latest of them runs, once, and the others are recorded
// as skipped, for a cron and for an interval alike.
func TestScheduleCatchUpAfterEveryWorkerWasStopped(t *testing.T) {
	t.Parallel()
	srv := testenv.OwnNATS(t) // the fires consumer is shared by every worker of a server
	e := jobtest.New(t, srv.ClientURL(), withDefaults)
	grace := time.Second
	workers := []*worker.Worker{
		e.StartWorker(worker.Config{ID: "w1", ScheduleGrace: grace}),
		e.StartWorker(worker.Config{ID: "w2", ScheduleGrace: grace}),
	}
	names := []string{"cron-missed", "every-missed"}
	addSchedule(t, e, names[0], "alice", schedule.Spec{Cron: "*/2 * * * * *"}, schedule.CatchUpRunOnce, "core.echo", map[string]any{"text": "cron"})
	addSchedule(t, e, names[1], "alice", schedule.Spec{Every: 2 * time.Second}, schedule.CatchUpRunOnce, "core.echo", map[string]any{"text": "every"})
	for _, name := range names {
		waitRuns(t, e, name, 1, 10*time.Second)
	}
	for _, w := range workers {
		if err := w.Stop(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	recorded := map[string]int{}
	for _, name := range names {
		recorded[name] = len(scheduleRuns(t, e, name))
	}
	// At least three fire times pass with no worker.
	if !jobtest.Eventually(20*time.Second, func() bool {
		return firesStored(t, e, names[0])-recorded[names[0]] >= 3 && firesStored(t, e, names[1])-recorded[names[1]] >= 3
	}) {
		t.Fatalf("fires stored while no worker ran: %d and %d", firesStored(t, e, names[0])-recorded[names[0]], firesStored(t, e, names[1])-recorded[names[1]])
	}
	for _, name := range names {
		if err := e.Client.RemoveSchedule(t.Context(), name, "alice"); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(2 * grace) // every stored fire is now more than the grace late
	e.StartWorker(worker.Config{ID: "w3", ScheduleGrace: grace})
	for _, name := range names {
		stored := firesStored(t, e, name)
		runs := waitRuns(t, e, name, stored, 15*time.Second)
		// Relayed at once, the fires are recorded in any order.
		missed := runs[recorded[name]:]
		slices.SortFunc(missed, func(a, b producer.ScheduleRun) int { return a.Fire.Compare(b.Fire) })
		ran := 0
		for i, r := range missed {
			switch {
			case r.Skipped == "":
				ran++
				if i != len(missed)-1 {
					t.Errorf("%s: fire %d of %d missed ran, not the latest: %+v", name, i+1, len(missed), missed)
				}
				if last := jobtest.Last(e.Follow(r.Job)); last.State != schema.StateSucceeded || last.Schedule != name {
					t.Errorf("%s: the caught-up fire: %+v", name, last)
				}
			case !strings.Contains(r.Skipped, "a later missed fire of the schedule runs instead"):
				t.Errorf("%s: %+v", name, r)
			default:
				if _, err := e.Client.Status(t.Context(), r.Job); err == nil {
					t.Errorf("%s: the skipped fire %s has a job", name, r.Job)
				}
			}
		}
		if ran != 1 {
			t.Fatalf("%s: %d of the %d missed fires ran, want 1: %+v", name, ran, len(missed), missed)
		}
		for i := 1; i < len(missed); i++ {
			if missed[i].Fire.Equal(missed[i-1].Fire) {
				t.Fatalf("%s: the fire due %v recorded twice", name, missed[i].Fire)
			}
		}
	}
}
