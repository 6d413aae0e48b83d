package producer_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/winchhq/winch/broker"
	"github.com/winchhq/winch/producer"
	"github.com/winchhq/winch/schema"
)

// archive is an EventArchive of the events it was given, by job.
type archive struct {
	events map[string][]schema.Event
	err    error
	asked  int
}

func (a *archive) Events(_ context.Context, job string) ([]schema.Event, error) {
	a.asked++
	return a.events[job], a.err
}

var jobSeq int

// publishRun publishes the events of one run of job on the events stream,
// as a worker does: accepted, a line of output, finished.
func publishRun(t *testing.T, js jetstream.JetStream, job string) {
	t.Helper()
	code := 0
	now := time.Now().UTC()
	for i, ev := range []schema.Event{
		{Kind: schema.KindAccepted, State: schema.StateRunning, Command: "core.echo", Principal: "alice", Queue: "default", Worker: "w1"},
		{Kind: schema.KindLog, Stream: schema.Stdout, Data: "hello\n"},
		{Kind: schema.KindFinished, State: schema.StateSucceeded, ExitCode: &code, Command: "core.echo", Principal: "alice", Queue: "default"},
	} {
		ev.JobID, ev.Attempt, ev.Seq, ev.Time = job, 1, i+1, now.Add(time.Duration(i)*time.Millisecond)
		data, err := json.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := js.Publish(t.Context(), broker.EventSubject(job, string(ev.Kind)), data, jetstream.WithMsgID(ev.MsgID())); err != nil {
			t.Fatal(err)
		}
	}
}

func collect(events *[]schema.Event) func(schema.Event) error {
	return func(ev schema.Event) error { *events = append(*events, ev); return nil }
}

func kinds(events []schema.Event) string {
	s := ""
	for _, ev := range events {
		s += string(ev.Kind) + " "
	}
	return s
}

// A job the events stream still has comes from there; one it has let go
// comes from the archive, replayed or followed.
func TestLogsFallBackToTheArchive(t *testing.T) {
	c := client(t)
	js, err := jetstream.New(connect(t))
	if err != nil {
		t.Fatal(err)
	}
	jobSeq++
	job := fmt.Sprintf("logs-old-%d-%d", time.Now().UnixNano(), jobSeq)
	publishRun(t, js, job)

	var fromStream []schema.Event
	a := &archive{}
	if err := c.Logs(t.Context(), job, false, a, collect(&fromStream)); err != nil {
		t.Fatal(err)
	}
	if kinds(fromStream) != "accepted log finished " || fromStream[1].Data != "hello\n" || a.asked != 0 {
		t.Fatalf("from the stream: %s (archive asked %d times)", kinds(fromStream), a.asked)
	}

	// Age the job out of the stream; the archive has what the stream had.
	stream, err := js.Stream(t.Context(), broker.EventsStream)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Purge(t.Context(), jetstream.WithPurgeSubject(broker.JobEventsFilter(job))); err != nil {
		t.Fatal(err)
	}
	a.events = map[string][]schema.Event{job: fromStream}
	for _, follow := range []bool{false, true} {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second) // following must not wait for a job that is over
		var got []schema.Event
		err := c.Logs(ctx, job, follow, a, collect(&got))
		cancel()
		if err != nil {
			t.Fatalf("follow %v: %v", follow, err)
		}
		if !reflect.DeepEqual(got, fromStream) {
			t.Fatalf("follow %v: from the archive %s, want %s", follow, kinds(got), kinds(fromStream))
		}
	}

	tests := []struct {
		name    string
		job     string
		archive producer.EventArchive
		fn      func(schema.Event) error
		want    error
		msg     string
	}{
		{name: "no archive", job: job, want: producer.ErrNoEvents,
			msg: "no events for this job in the events stream: " + job + ", and there is no archive of older jobs to look in"},
		{name: "not in the archive either", job: job, archive: &archive{}, want: producer.ErrNoEvents,
			msg: "no events for this job in the events stream: " + job + ", nor in the archive"},
		{name: "the archive fails", job: job, archive: &archive{err: context.DeadlineExceeded}, want: context.DeadlineExceeded,
			msg: "events of " + job + " from the archive: context deadline exceeded"},
		{name: "fn fails", job: job, archive: a, fn: func(schema.Event) error { return errors.ErrUnsupported }, want: errors.ErrUnsupported,
			msg: errors.ErrUnsupported.Error()},
		{name: "not a job id", job: "../etc", archive: a, want: producer.ErrNotFound},
	}
	for _, tt := range tests {
		for _, follow := range []bool{false, true} {
			fn := tt.fn
			if fn == nil {
				fn = func(schema.Event) error { return nil }
			}
			err := c.Logs(t.Context(), tt.job, follow, tt.archive, fn)
			if !errors.Is(err, tt.want) || (tt.msg != "" && err.Error() != tt.msg) {
				t.Errorf("%s, follow %v: %v", tt.name, follow, err)
			}
		}
	}
}

// Following a job that is not over waits for its end in the stream.
func TestLogsFollowsALiveJob(t *testing.T) {
	c := client(t)
	js, err := jetstream.New(connect(t))
	if err != nil {
		t.Fatal(err)
	}
	sub, err := c.Submit(t.Context(), schema.Request{Command: "core.echo", Params: map[string]any{"text": "hello"}, Principal: "alice", Queue: "nobody-serves-this"})
	if err != nil {
		t.Fatal(err)
	}
	job := sub.Request.ID
	a := &archive{}
	done := make(chan error, 1)
	var got []schema.Event
	go func() { done <- c.Logs(t.Context(), job, true, a, collect(&got)) }()
	select {
	case err := <-done:
		t.Fatalf("Logs returned before the job ended: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	publishRun(t, js, job)
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Logs did not return after the job's end")
	}
	if kinds(got) != "accepted log finished " || a.asked != 0 {
		t.Fatalf("followed %s (archive asked %d times)", kinds(got), a.asked)
	}
}
