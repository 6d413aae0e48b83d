package jobs_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/winchhq/winch/broker"
	"github.com/winchhq/winch/internal/testenv"
	"github.com/winchhq/winch/jobs"
	"github.com/winchhq/winch/schema"
)

var discard = slog.New(slog.DiscardHandler)

// storedEvents reads back every event of job in the events stream, in
// stream order.
func storedEvents(t *testing.T, js jetstream.JetStream, job string) []schema.Event {
	t.Helper()
	ctx := testContext(t)
	s, err := js.Stream(ctx, broker.EventsStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(broker.JobEventsFilter(job)))
	if err != nil {
		t.Fatal(err)
	}
	var n uint64
	for _, c := range info.State.Subjects {
		n += c
	}
	var out []schema.Event
	if n == 0 {
		return out
	}
	c, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{broker.JobEventsFilter(job)}})
	if err != nil {
		t.Fatal(err)
	}
	for uint64(len(out)) < n {
		batch, err := c.Fetch(int(n)-len(out), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		before := len(out)
		for msg := range batch.Messages() {
			ev, err := schema.DecodeEvent(msg.Data())
			if err != nil {
				t.Fatal(err)
			}
			if id := msg.Headers().Get(jetstream.MsgIDHeader); id != ev.MsgID() {
				t.Errorf("event %s stored with Nats-Msg-Id %q", ev.MsgID(), id)
			}
			if want := broker.EventSubject(job, string(ev.Kind)); msg.Subject() != want {
				t.Errorf("event %s on %s, want %s", ev.MsgID(), msg.Subject(), want)
			}
			out = append(out, ev)
		}
		if err := batch.Error(); err != nil {
			t.Fatalf("read events %d to %d: %v", len(out)+1, n, err)
		}
		if len(out) == before {
			t.Fatalf("read %d of %d events, then nothing", len(out), n)
		}
	}
	return out
}

func TestAttemptEmitFlush(t *testing.T) {
	t.Parallel()
	js := connect(t, natsURL)
	job := schema.NewJobID()
	a := jobs.NewPublisher(js, discard).Attempt(job, 2, "w1")
	a.Emit(schema.Event{Kind: schema.KindAccepted, Command: "core.echo", Principal: "alice"})
	a.Emit(schema.Event{Kind: schema.KindStarted, Executor: "process"})
	a.Emit(schema.Event{Kind: schema.KindLog, Stream: schema.Stdout, Data: "hello\n"})
	final := a.NextSeq() // 4, reserved for the final event
	a.Emit(schema.Event{Kind: schema.KindLog, Stream: schema.Stderr, Data: "bye\n"})
	// Whatever the caller sets, the attempt names the job, attempt and worker.
	a.Emit(schema.Event{Kind: schema.KindFinished, Seq: final, State: schema.StateSucceeded, ExitCode: intp(0),
		JobID: "someone-else", Attempt: 9, Worker: "w9"})
	if final != 4 {
		t.Errorf("NextSeq = %d, want 4", final)
	}
	if got := a.NextSeq(); got != 6 {
		t.Errorf("NextSeq after 5 numbers = %d, want 6", got)
	}
	if err := a.Flush(testContext(t)); err != nil {
		t.Fatal(err)
	}
	got := storedEvents(t, js, job)
	want := []struct {
		kind schema.Kind
		seq  int
	}{{schema.KindAccepted, 1}, {schema.KindStarted, 2}, {schema.KindLog, 3}, {schema.KindLog, 5}, {schema.KindFinished, 4}}
	if len(got) != len(want) {
		t.Fatalf("stored %d events, want %d: %+v", len(got), len(want), got)
	}
	for i, ev := range got {
		if ev.Kind != want[i].kind || ev.Seq != want[i].seq || ev.JobID != job || ev.Attempt != 2 || ev.Worker != "w1" || ev.Time.IsZero() {
			t.Errorf("event %d = %s seq %d of %s attempt %d by %q at %v; want %s seq %d of %s attempt 2 by w1, timed",
				i, ev.Kind, ev.Seq, ev.JobID, ev.Attempt, ev.Worker, ev.Time, want[i].kind, want[i].seq, job)
		}
	}
	if last := got[len(got)-1]; last.State != schema.StateSucceeded || last.ExitCode == nil || *last.ExitCode != 0 {
		t.Errorf("final event %+v lost its content", last)
	}
	// Nothing left to wait for.
	if err := a.Flush(testContext(t)); err != nil {
		t.Errorf("second Flush: %v", err)
	}
}

func TestAttemptFlushNothing(t *testing.T) {
	t.Parallel()
	a := jobs.NewPublisher(connect(t, natsURL), discard).Attempt(schema.NewJobID(), 1, "w1")
	if err := a.Flush(testContext(t)); err != nil {
		t.Fatal(err)
	}
}

func TestAttemptManyEvents(t *testing.T) {
	t.Parallel()
	js := connect(t, natsURL)
	job := schema.NewJobID()
	a := jobs.NewPublisher(js, discard).Attempt(job, 1, "w1")
	const n = 300
	for range n {
		a.Emit(schema.Event{Kind: schema.KindLog, Stream: schema.Stdout, Data: "x\n"})
	}
	if err := a.Flush(testContext(t)); err != nil {
		t.Fatal(err)
	}
	got := storedEvents(t, js, job)
	if len(got) != n {
		t.Fatalf("stored %d events, want %d", len(got), n)
	}
	for i, ev := range got {
		if ev.Seq != i+1 {
			t.Fatalf("event %d has seq %d", i, ev.Seq)
		}
	}
}

func TestEventStoredOnce(t *testing.T) {
	t.Parallel()
	js := connect(t, natsURL)
	p := jobs.NewPublisher(js, discard)
	t.Run("emitted twice", func(t *testing.T) {
		job := schema.NewJobID()
		a := p.Attempt(job, 1, "w1")
		ev := schema.Event{Kind: schema.KindFinished, Seq: 1, State: schema.StateFailed, Time: tNow}
		a.Emit(ev)
		a.Emit(ev)
		if err := a.Flush(testContext(t)); err != nil {
			t.Fatal(err)
		}
		// A second attempt object of the same attempt (a worker that
		// publishes the end again) is dropped too.
		again := p.Attempt(job, 1, "w1")
		again.Emit(ev)
		if err := again.Flush(testContext(t)); err != nil {
			t.Fatal(err)
		}
		if got := storedEvents(t, js, job); len(got) != 1 {
			t.Errorf("stored %d events, want 1", len(got))
		}
	})
	t.Run("published twice", func(t *testing.T) {
		st := ended(schema.StateFailed)
		st.JobID = schema.NewJobID()
		for range 2 {
			if err := p.Publish(testContext(t), st.FinalEvent()); err != nil {
				t.Fatal(err)
			}
		}
		if got := storedEvents(t, js, st.JobID); len(got) != 1 {
			t.Errorf("stored %d events, want 1", len(got))
		}
	})
}

func TestPublish(t *testing.T) {
	t.Parallel()
	js := connect(t, natsURL)
	st := ended(schema.StateSucceeded)
	st.JobID = schema.NewJobID()
	want := st.FinalEvent()
	if err := jobs.NewPublisher(js, discard).Publish(testContext(t), want); err != nil {
		t.Fatal(err)
	}
	s, err := js.Stream(testContext(t), broker.EventsStream)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := s.GetLastMsgForSubject(testContext(t), broker.EventSubject(st.JobID, string(schema.KindFinished)))
	if err != nil {
		t.Fatal(err)
	}
	if id := msg.Header.Get(jetstream.MsgIDHeader); id != want.MsgID() || id != st.JobID+".1.7" {
		t.Errorf("Nats-Msg-Id %q, want %q", id, want.MsgID())
	}
	got, err := schema.DecodeEvent(msg.Data)
	if err != nil {
		t.Fatal(err)
	}
	if got.Kind != schema.KindFinished || got.State != schema.StateSucceeded || got.Seq != 7 || !got.Time.Equal(tEnded) ||
		got.ExitCode == nil || *got.ExitCode != 0 || got.Principal != "alice" || got.Command != "core.echo" {
		t.Errorf("stored %+v, want %+v", got, want)
	}
	// Without a time, the publisher stamps one.
	ev := schema.Event{JobID: st.JobID, Attempt: 1, Seq: 8, Kind: schema.KindReaped}
	if err := jobs.NewPublisher(js, discard).Publish(testContext(t), ev); err != nil {
		t.Fatal(err)
	}
	msg, err = s.GetLastMsgForSubject(testContext(t), broker.EventSubject(st.JobID, string(schema.KindReaped)))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := schema.DecodeEvent(msg.Data); err != nil || got.Time.IsZero() {
		t.Errorf("event without a time stored as %+v, %v", got, err)
	}
}

func TestPublishGivesUpWithItsContext(t *testing.T) {
	t.Parallel()
	js := connect(t, natsURL)
	ctx, cancel := context.WithCancel(testContext(t))
	cancel()
	ev := schema.Event{JobID: schema.NewJobID(), Attempt: 1, Seq: 1, Kind: schema.KindAccepted}
	start := time.Now()
	if err := jobs.NewPublisher(js, discard).Publish(ctx, ev); err == nil {
		t.Error("Publish with a cancelled context: no error")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Publish with a cancelled context took %v", d)
	}
}

// An event whose asynchronous publish failed (no stream answered) is
// published again by Flush at once, once the stream is back: one failure
// followed by other events neither hangs Flush nor loses the event.
func TestAttemptFlushRepublishesAFailedEvent(t *testing.T) {
	t.Parallel()
	// A server of this test's own, without the events stream at first, so
	// that publishing fails (no responders) without touching other tests.
	srv := testenv.OwnNATS(t)
	js := connect(t, srv.ClientURL())
	job := schema.NewJobID()
	a := jobs.NewPublisher(js, discard).Attempt(job, 1, "w1")
	a.Emit(schema.Event{Kind: schema.KindAccepted})
	select {
	case <-js.PublishAsyncComplete(): // the publish failed: no stream
	case <-time.After(10 * time.Second):
		t.Fatal("the publish without a stream did not settle")
	}
	a.Emit(schema.Event{Kind: schema.KindStarted}) // prunes: sees the first one failed
	if _, err := broker.Ensure(testContext(t), js, testTopology); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(testContext(t), 5*time.Second)
	defer cancel()
	start := time.Now()
	err := a.Flush(ctx)
	if took := time.Since(start); err != nil || took > 4*time.Second {
		t.Errorf("Flush after a failed publish: %v after %v; want both events published again", err, took.Round(time.Millisecond))
	}
	if got := storedEvents(t, js, job); len(got) != 2 {
		t.Errorf("stored %d events, want 2", len(got))
	}
}
