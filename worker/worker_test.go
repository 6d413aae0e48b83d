package worker_test

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/winchhq/winch/broker"
	"github.com/winchhq/winch/internal/jobtest"
	"github.com/winchhq/winch/internal/testenv"
	"github.com/winchhq/winch/producer"
	"github.com/winchhq/winch/schema"
	"github.com/winchhq/winch/worker"
)

func TestRunSucceedsWithOutput(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := e.StartWorker(worker.Config{})
	id := e.Submit("core.echo", map[string]any{"text": "hello"})
	events := e.Follow(id)

	if got := jobtest.Kinds(events); got != "accepted(running) started log finished(succeeded)" {
		t.Fatalf("events: %s", got)
	}
	for i, ev := range events {
		if ev.Seq != i+1 || ev.Attempt != 1 || ev.Worker != w.ID() || ev.JobID != id {
			t.Errorf("event %d: seq %d attempt %d worker %q job %q", i, ev.Seq, ev.Attempt, ev.Worker, ev.JobID)
		}
	}
	acc := events[0]
	if acc.Command != "core.echo" || acc.Principal != "tester" || acc.Queue != e.Queue || acc.Params["text"] != "hello" {
		t.Errorf("accepted event does not describe the request: %+v", acc)
	}
	if events[1].Executor != "process" {
		t.Errorf("started event executor %q", events[1].Executor)
	}
	if out := jobtest.Output(events, schema.Stdout); out != "hello\n" {
		t.Errorf("stdout %q", out)
	}
	end := jobtest.Last(events)
	if end.ExitCode == nil || *end.ExitCode != 0 {
		t.Errorf("exit code %v", end.ExitCode)
	}
	st := e.Status(id)
	if st.State != schema.StateSucceeded || st.Worker != w.ID() || st.Attempt != 1 ||
		st.StartedAt.IsZero() || st.FinishedAt.Before(st.StartedAt) || st.ExitCode == nil || *st.ExitCode != 0 {
		t.Errorf("state %+v", st)
	}
	if n := e.Drained(); n != 0 {
		t.Errorf("%d requests left in the stream after the job ended", n)
	}
}

func TestExitCodePropagates(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.StartWorker(worker.Config{Concurrency: 4})
	for _, code := range []int64{0, 1, 3, 255} {
		id := e.Submit("core.exit", map[string]any{"code": code})
		end := jobtest.Last(e.Follow(id))
		want := schema.StateFailed
		if code == 0 {
			want = schema.StateSucceeded
		}
		if end.State != want || end.ExitCode == nil || int64(*end.ExitCode) != code {
			t.Errorf("exit %d: ended %s with code %v", code, end.State, end.ExitCode)
		}
	}
}

func TestStdoutAndStderrKeptApart(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.StartWorker(worker.Config{})
	events := e.Follow(e.Submit("test.interleave", nil))
	if out, errOut := jobtest.Output(events, schema.Stdout), jobtest.Output(events, schema.Stderr); out != "a\nc\n" || errOut != "b\nd\n" {
		t.Fatalf("stdout %q, stderr %q", out, errOut)
	}
	events = e.Follow(e.Submit("core.echo", map[string]any{"text": "to out", "stderr": "to err"}))
	if out, errOut := jobtest.Output(events, schema.Stdout), jobtest.Output(events, schema.Stderr); out != "to out\n" || errOut != "to err\n" {
		t.Fatalf("stdout %q, stderr %q", out, errOut)
	}
}

func TestChattyOutputIsBatchedAndComplete(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.StartWorker(worker.Config{})
	const lines = 50000
	events := e.Follow(e.Submit("core.seq", map[string]any{"count": lines}))
	var want strings.Builder
	for i := 1; i <= lines; i++ {
		want.WriteString(strconv.Itoa(i) + "\n")
	}
	if got := jobtest.Output(events, schema.Stdout); got != want.String() {
		t.Fatalf("output differs: got %d bytes, want %d", len(got), want.Len())
	}
	logEvents := 0
	for _, ev := range events {
		if ev.Kind == schema.KindLog {
			logEvents++
			if !strings.HasSuffix(ev.Data, "\n") {
				t.Errorf("log event %d splits a line: ends %q", ev.Seq, ev.Data[max(0, len(ev.Data)-10):])
			}
		}
	}
	if logEvents > lines/100 {
		t.Fatalf("%d lines became %d log events: not batched", lines, logEvents)
	}
	t.Logf("%d lines in %d log events", lines, logEvents)
}

func jsonString(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func TestSecretParamsNeverReachEvents(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.StartWorker(worker.Config{})
	const secret = "s3cret-Value-42"
	id := e.Submit("core.env", map[string]any{"token": secret, "name": "bob"})
	events := e.Follow(id)
	if jobtest.Last(events).State != schema.StateSucceeded {
		t.Fatalf("job ended %s", jobtest.Last(events).State)
	}
	out := jobtest.Output(events, schema.Stdout)
	if !strings.Contains(out, "WINCH_PARAM_NAME=bob") || !strings.Contains(out, "WINCH_PARAM_TOKEN=***") {
		t.Fatalf("output does not show the masked environment:\n%s", out)
	}
	if events[0].Params["token"] != schema.Masked {
		t.Fatalf("accepted event params %v", events[0].Params)
	}
	// Look at the raw bytes in the stream, not just the decoded events.
	s, err := e.JS.Stream(t.Context(), broker.EventsStream)
	if err != nil {
		t.Fatal(err)
	}
	cons, err := s.OrderedConsumer(t.Context(), jetstream.OrderedConsumerConfig{FilterSubjects: []string{broker.JobEventsFilter(id)}})
	if err != nil {
		t.Fatal(err)
	}
	batch, err := cons.FetchNoWait(1000)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for m := range batch.Messages() {
		n++
		if strings.Contains(string(m.Data()), secret) {
			t.Fatalf("the secret is in event %s: %s", m.Subject(), m.Data())
		}
	}
	if n != len(events) {
		t.Fatalf("read %d raw events, followed %d", n, len(events))
	}
	if st := e.Status(id); strings.Contains(string(st.Encode()), secret) {
		t.Fatal("the secret is in the job state")
	}
}

func TestCancelBeforeStart(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	// A worker of another queue decides the cancel: a queued job's cancel
	// holds even when no worker serves its queue yet.
	e.StartWorker(worker.Config{Queues: []string{"other-" + e.Queue}})
	id := e.Submit("core.echo", map[string]any{"text": "must never print"})
	if st := e.Status(id); st.State != schema.StateQueued || st.Command != "core.echo" || st.Principal != "tester" {
		t.Fatalf("status of a queued job: %+v", st)
	}
	reply, err := e.Client.Cancel(t.Context(), id, "tester")
	if err != nil {
		t.Fatal(err)
	}
	if reply.Outcome != schema.OutcomeCancelled || reply.State != schema.StateCancelled {
		t.Fatalf("queued job cancelled into %+v", reply)
	}
	// A worker of its queue arrives afterwards: it must not run it.
	e.StartWorker(worker.Config{})
	after := e.Submit("core.echo", map[string]any{"text": "after"})
	e.Follow(after)

	events := e.Follow(id)
	if got := jobtest.Kinds(events); got != "finished(cancelled)" {
		t.Fatalf("events of the cancelled job: %s", got)
	}
	if !strings.Contains(events[0].Error, "cancelled by tester before it started") {
		t.Fatalf("cancel event error %q", events[0].Error)
	}
	if st := e.Status(id); st.State != schema.StateCancelled || st.StartedAt != (time.Time{}) {
		t.Fatalf("state after a worker saw it: %+v", st)
	}
	if n := e.Drained(); n != 0 {
		t.Fatalf("%d requests left in the stream", n)
	}
	if _, err := e.Client.Cancel(t.Context(), id, "tester"); !errors.Is(err, producer.ErrFinished) {
		t.Fatalf("cancelling a finished job again: %v, want ErrFinished", err)
	}
}

func TestCancelWhileRunning(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.StartWorker(worker.Config{})
	id := e.Submit("core.sleep", map[string]any{"seconds": 30})
	e.WaitFor(id, schema.KindStarted)
	began := time.Now()
	if reply, err := e.Client.Cancel(t.Context(), id, "tester"); err != nil || reply.Outcome != schema.OutcomeStopping {
		t.Fatalf("cancel: %+v, %v", reply, err)
	}
	end := jobtest.Last(e.Follow(id))
	t.Logf("cancel took %v", time.Since(began))
	if end.State != schema.StateCancelled || end.Error != "cancelled by tester" {
		t.Fatalf("ended %s: %q", end.State, end.Error)
	}
	if st := e.Status(id); st.State != schema.StateCancelled || st.CancelledBy != "tester" {
		t.Fatalf("state %+v", st)
	}
}

// Only a job's own principal, or an admin, may cancel it; anyone else is
// refused, and the refusal is in the job's events for the audit.
func TestCancelOfSomeoneElsesJobIsRefusedAndAudited(t *testing.T) {
	t.Parallel()
	// Every worker of a fleet decides control requests, with the same roles:
	// this test's fleet is alone on a server of its own.
	srv := testenv.OwnNATS(t)
	e := jobtest.New(t, srv.ClientURL(), withDefaults)
	e.StartWorker(worker.Config{Roles: worker.Roles{"root": {"admin"}}})
	id := e.Submit("core.sleep", map[string]any{"seconds": 30})
	e.WaitFor(id, schema.KindStarted)
	_, err := e.Client.Cancel(t.Context(), id, "mallory")
	if !errors.Is(err, producer.ErrRefused) || !strings.Contains(err.Error(), "mallory may not cancel job "+id+" of tester") {
		t.Fatalf("mallory's cancel: %v", err)
	}
	if st := e.Status(id); st.State != schema.StateRunning || st.CancelRequested {
		t.Fatalf("after a refused cancel the job is %+v", st)
	}
	if _, err := e.Client.Cancel(t.Context(), id, "root"); err != nil {
		t.Fatalf("an admin's cancel: %v", err)
	}
	events := e.Follow(id)
	end := jobtest.Last(events)
	if end.State != schema.StateCancelled || end.Error != "cancelled by root" {
		t.Fatalf("ended %s: %q", end.State, end.Error)
	}
	refused := slices.IndexFunc(events, func(ev schema.Event) bool { return ev.Kind == schema.KindCancelRefused })
	if refused < 0 || events[refused].Principal != "mallory" || !strings.Contains(events[refused].Error, "may not cancel") {
		t.Fatalf("no audited refusal in %s", jobtest.Kinds(events))
	}
}

// Events come only from workers: one published by anyone else (possible
// only where authorization is off) changes nothing of the job.
func TestForgedEventChangesNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.StartWorker(worker.Config{})
	id := e.Submit("core.sleep", map[string]any{"seconds": 1})
	e.WaitFor(id, schema.KindStarted)
	forged := schema.Event{JobID: id, Attempt: 1, Seq: 99, Kind: schema.KindFinished, State: schema.StateFailed, Error: "forged"}
	if _, err := e.JS.Publish(t.Context(), broker.EventSubject(id, "finished"), []byte(jsonString(forged))); err != nil {
		t.Fatal(err)
	}
	if st := e.Status(id); st.State != schema.StateRunning {
		t.Fatalf("after a forged event the job is %s", st.State)
	}
	final, err := e.Client.Wait(t.Context(), id)
	if err != nil || final.State != schema.StateSucceeded {
		t.Fatalf("the job ended %s (%v), want succeeded", final.State, err)
	}
}

func TestStubbornCommandIsKilled(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.StartWorker(worker.Config{})
	id := e.Submit("test.stubborn", nil, func(r *schema.Request) { r.Timeout = schema.Duration(500 * time.Millisecond) })
	if end := jobtest.Last(e.Follow(id)); end.State != schema.StateTimedOut {
		t.Fatalf("a command that ignores SIGTERM ended %s", end.State)
	}
}

func TestTimeouts(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.StartWorker(worker.Config{})
	// The request's timeout.
	id := e.Submit("core.sleep", map[string]any{"seconds": 30}, func(r *schema.Request) { r.Timeout = schema.Duration(500 * time.Millisecond) })
	end := jobtest.Last(e.Follow(id))
	if end.State != schema.StateTimedOut || end.Error != "timed out after 500ms" {
		t.Fatalf("request timeout: ended %s: %q", end.State, end.Error)
	}
	// The command's own timeout (1s), shorter than the request's.
	id = e.Submit("test.slow", nil, func(r *schema.Request) { r.Timeout = schema.Duration(time.Minute) })
	end = jobtest.Last(e.Follow(id))
	if end.State != schema.StateTimedOut || end.Error != "timed out after 1s" {
		t.Fatalf("command timeout: ended %s: %q", end.State, end.Error)
	}
}

func TestCommandThatCannotStartFails(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.StartWorker(worker.Config{})
	end := jobtest.Last(e.Follow(e.Submit("test.missing", nil)))
	if end.State != schema.StateFailed || end.ExitCode != nil || !strings.Contains(end.Error, `cannot run "winch-no-such-program"`) {
		t.Fatalf("ended %s, exit %v: %q", end.State, end.ExitCode, end.Error)
	}
}

func TestBadRequestsAreRejected(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.StartWorker(worker.Config{})
	request := func(id, command string, params map[string]any, principal string) []byte {
		return []byte(jsonString(schema.Request{Version: 1, ID: id, Command: command, Params: params,
			Queue: e.Queue, Principal: principal, CreatedAt: time.Now()}))
	}
	tests := []struct {
		name, id string
		data     []byte
		reason   string
	}{
		{"unknown command", "rej-unknown", request("rej-unknown", "core.ecko", nil, "tester"), `unknown command "core.ecko": did you mean "core.echo"?`},
		{"missing parameter", "rej-missing", request("rej-missing", "core.echo", nil, "tester"), "invalid parameters for core.echo: text: required"},
		{"wrong type", "rej-type", request("rej-type", "core.exit", map[string]any{"code": "x"}, "tester"), `code: want a whole number, got "x"`},
		{"not json", "rej-bytes", []byte("\x00this is not json"), "not a valid JSON request document"},
		// Who published is the subject's principal: the audit names tester,
		// never root, who did not act.
		{"forged principal", "rej-forged", request("rej-forged", "core.echo", map[string]any{"text": "x"}, "root"), `from principal "root", but was published on`},
		// The subject decides the queue and the priority; a request that
		// says otherwise would be audited as what it did not go through.
		{"another queue", "rej-queue", []byte(strings.Replace(string(request("rej-queue", "core.echo", map[string]any{"text": "x"}, "tester")),
			`"queue":"`+e.Queue+`"`, `"queue":"elsewhere"`, 1)), `the request says queue "elsewhere", priority "normal", but was published on`},
		{"another priority", "rej-prio", []byte(strings.Replace(string(request("rej-prio", "core.echo", map[string]any{"text": "x"}, "tester")),
			`"queue":`, `"priority":"high","queue":`, 1)), `priority "high", but was published on`},
	}
	for _, tt := range tests {
		id := tt.id + "-" + e.Queue
		data := []byte(strings.ReplaceAll(string(tt.data), `"`+tt.id+`"`, `"`+id+`"`))
		msg := &nats.Msg{Subject: broker.JobSubject(e.Queue, id, "tester"), Data: data, Header: nats.Header{}}
		msg.Header.Set(jetstream.MsgIDHeader, id)
		if _, err := e.JS.PublishMsg(t.Context(), msg); err != nil {
			t.Fatal(err)
		}
		events := e.Follow(id)
		ev := jobtest.Last(events)
		if len(events) != 1 || ev.Kind != schema.KindRejected || ev.State != schema.StateRejected {
			t.Errorf("%s: events %s", tt.name, jobtest.Kinds(events))
			continue
		}
		if !strings.Contains(ev.Error, tt.reason) {
			t.Errorf("%s: reason %q does not say %q", tt.name, ev.Error, tt.reason)
		}
		if st := e.Status(id); st.State != schema.StateRejected || st.Principal != "tester" || ev.Principal != "tester" {
			t.Errorf("%s: state %s of %q, event of %q; want rejected, of tester (the subject's principal)", tt.name, st.State, st.Principal, ev.Principal)
		}
	}
	// The worker is still serving.
	if end := jobtest.Last(e.Follow(e.Submit("core.echo", map[string]any{"text": "still here"}))); end.State != schema.StateSucceeded {
		t.Fatalf("after the rejections a good job ended %s", end.State)
	}
	if n := e.Drained(); n != 0 {
		t.Fatalf("%d rejected requests left in the stream: they would be retried", n)
	}
}

func TestSameRequestIDRunsOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	req := schema.Request{ID: "once-" + e.Queue, Command: "core.echo", Params: map[string]any{"text": "x"}, Queue: e.Queue, Principal: "tester"}
	first, err := e.Client.Submit(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	second, err := e.Client.Submit(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	if first.Duplicate || !second.Duplicate {
		t.Fatalf("duplicate flags: first %v, second %v", first.Duplicate, second.Duplicate)
	}
	e.StartWorker(worker.Config{})
	e.Follow(req.ID)
	// Past the broker's duplicate window (a publish without the header
	// stands for that), the state bucket still knows the job is over.
	if _, err := e.JS.Publish(t.Context(), broker.JobSubject(e.Queue, req.ID, "tester"), []byte(jsonString(first.Request))); err != nil {
		t.Fatal(err)
	}
	e.Follow(e.Submit("core.echo", map[string]any{"text": "after"}))
	// Every request, the republished one too, has been handled before the
	// job's events are counted.
	if n := e.Drained(); n != 0 {
		t.Fatalf("%d requests left in the stream", n)
	}
	accepted := 0
	_, err = e.Client.Follow(t.Context(), req.ID, producer.Replay, func(ev schema.Event) error {
		if ev.Kind == schema.KindAccepted {
			accepted++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if accepted != 1 {
		t.Fatalf("the job was accepted %d times", accepted)
	}
}

// window is when a job ran, from its events.
type window struct{ start, end time.Time }

func runWindows(t *testing.T, e *jobtest.Env, ids []string) []window {
	var out []window
	for _, id := range ids {
		var w window
		for _, ev := range e.Follow(id) {
			switch ev.Kind {
			case schema.KindStarted:
				w.start = ev.Time
			case schema.KindFinished:
				w.end = ev.Time
				if ev.State != schema.StateSucceeded {
					t.Fatalf("job %s ended %s", id, ev.State)
				}
			}
		}
		out = append(out, w)
	}
	return out
}

func maxOverlap(ws []window) int {
	type edge struct {
		at    time.Time
		delta int
	}
	var edges []edge
	for _, w := range ws {
		edges = append(edges, edge{w.start, 1}, edge{w.end, -1})
	}
	sort.Slice(edges, func(i, j int) bool {
		if edges[i].at.Equal(edges[j].at) {
			return edges[i].delta < edges[j].delta // an end before a start at the same instant
		}
		return edges[i].at.Before(edges[j].at)
	})
	cur, peak := 0, 0
	for _, e := range edges {
		cur += e.delta
		peak = max(peak, cur)
	}
	return peak
}

func TestConcurrencyLimitRespected(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	var ids []string
	for range 6 {
		ids = append(ids, e.Submit("core.sleep", map[string]any{"seconds": 0.3}))
	}
	e.StartWorker(worker.Config{Concurrency: 2})
	if peak := maxOverlap(runWindows(t, e, ids)); peak != 2 {
		t.Fatalf("a worker with concurrency 2 ran %d jobs at once", peak)
	}
}

func TestTwoWorkersShareAQueue(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	var ids []string
	for range 6 {
		ids = append(ids, e.Submit("core.sleep", map[string]any{"seconds": 0.3}))
	}
	w1 := e.StartWorker(worker.Config{ID: "share-1-" + e.Queue, Concurrency: 1})
	w2 := e.StartWorker(worker.Config{ID: "share-2-" + e.Queue, Concurrency: 1})
	count := map[string]int{}
	for _, id := range ids {
		e.Follow(id)
		count[e.Status(id).Worker]++
	}
	if count[w1.ID()] == 0 || count[w2.ID()] == 0 || count[w1.ID()]+count[w2.ID()] != 6 {
		t.Fatalf("jobs per worker: %v", count)
	}
	if peak := maxOverlap(runWindows(t, e, ids)); peak != 2 {
		t.Fatalf("two workers of concurrency 1 ran %d jobs at once", peak)
	}
}

func TestStopDrainsRunningJobs(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := e.StartWorker(worker.Config{DrainTimeout: 20 * time.Second})
	id := e.Submit("core.sleep", map[string]any{"seconds": 1})
	e.WaitFor(id, schema.KindStarted)
	if err := w.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Stop returned: the job must be over, and over well.
	if st := e.Status(id); st.State != schema.StateSucceeded {
		t.Fatalf("after a drain the job is %s", st.State)
	}
	// And the stopped worker takes nothing new.
	late := e.Submit("core.echo", map[string]any{"text": "late"})
	time.Sleep(500 * time.Millisecond)
	if st := e.Status(late); st.State != schema.StateQueued {
		t.Fatalf("a drained worker took a new job: %s", st.State)
	}
}

func TestDrainDeadlineHandsJobsBack(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w1 := e.StartWorker(worker.Config{ID: "drain-1-" + e.Queue, DrainTimeout: 300 * time.Millisecond})
	id := e.Submit("core.sleep", map[string]any{"seconds": 2})
	e.WaitFor(id, schema.KindStarted)
	if err := w1.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if st := e.Status(id); st.State != schema.StateQueued || st.Worker != "" {
		t.Fatalf("after the drain deadline the job is %s on %q", st.State, st.Worker)
	}
	w2 := e.StartWorker(worker.Config{ID: "drain-2-" + e.Queue})
	events := e.Follow(id)
	if !slices.ContainsFunc(events, func(ev schema.Event) bool { return ev.Kind == schema.KindReleased && ev.Worker == w1.ID() }) {
		t.Fatalf("no released event from the first worker: %s", jobtest.Kinds(events))
	}
	end := jobtest.Last(events)
	if end.State != schema.StateSucceeded || end.Worker != w2.ID() || end.Attempt != 2 {
		t.Fatalf("ended %s on %s, attempt %d", end.State, end.Worker, end.Attempt)
	}
}

// A command that started and may not run twice is never handed back when
// the drain deadline passes: it is stopped and ends interrupted, and no
// other worker starts it again.
func TestDrainDeadlineInterruptsANonRetryableCommand(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w1 := e.StartWorker(worker.Config{ID: "drain-1-" + e.Queue, DrainTimeout: 300 * time.Millisecond})
	id := e.Submit("test.once", map[string]any{"seconds": 30})
	e.WaitFor(id, schema.KindStarted)
	began := time.Now()
	if err := w1.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Logf("stop took %v", time.Since(began))
	st := e.Status(id)
	if st.State != schema.StateFailed || st.Reason != schema.ReasonInterrupted || !strings.Contains(st.Error, "may not run twice") {
		t.Fatalf("after the drain deadline the job is %s (%s): %q", st.State, st.Reason, st.Error)
	}
	e.StartWorker(worker.Config{ID: "drain-2-" + e.Queue})
	e.Follow(e.Submit("core.echo", map[string]any{"text": "after"}))
	if n := e.Drained(); n != 0 {
		t.Fatalf("%d requests left in the stream", n)
	}
	events := e.Follow(id)
	starts := 0
	for _, ev := range events {
		if ev.Kind == schema.KindStarted {
			starts++
		}
	}
	if starts != 1 || jobtest.Last(events).Reason != schema.ReasonInterrupted {
		t.Fatalf("events: %s", jobtest.Kinds(events))
	}
}

// A command that declares roles runs only for a principal that has one.
func TestRolesAreCheckedBeforeTheCommandRuns(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.StartWorker(worker.Config{Roles: worker.Roles{"alice": {"dba"}, "bob": {"dev"}}})
	as := func(p string) func(*schema.Request) { return func(r *schema.Request) { r.Principal = p } }
	if events := e.Follow(e.Submit("test.privileged", nil, as("alice"))); jobtest.Last(events).State != schema.StateSucceeded {
		t.Fatalf("alice (dba): %s", jobtest.Kinds(events))
	}
	for _, who := range []string{"bob", "tester"} {
		events := e.Follow(e.Submit("test.privileged", nil, as(who)))
		end := jobtest.Last(events)
		if len(events) != 1 || end.State != schema.StateRejected || end.Reason != schema.ReasonForbidden || !strings.Contains(end.Error, "principal "+who+" may not run test.privileged: it needs one of the roles dba, admin") {
			t.Fatalf("%s: %s %q", who, jobtest.Kinds(events), end.Error)
		}
	}
	// Commands without roles run for everyone.
	if end := jobtest.Last(e.Follow(e.Submit("core.echo", map[string]any{"text": "hi"}, as("bob")))); end.State != schema.StateSucceeded {
		t.Fatalf("bob, core.echo: %s", end.State)
	}
}
