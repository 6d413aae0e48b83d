package producer_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/winchhq/winch/producer"
	"github.com/winchhq/winch/schema"
)

// FollowAfter resumes after any event's stream sequence with the next one,
// none missed and none repeated; after the last event of a finished job it
// ends at once.
func TestFollowAfterResumesExactly(t *testing.T) {
	c := client(t)
	js, _ := jetstream.New(connect(t))
	job := "follow-after-1"
	publishRun(t, js, job)
	type got struct {
		seq  uint64
		kind schema.Kind
	}
	var all []got
	if _, err := c.FollowAfter(t.Context(), job, 0, producer.UntilDone, func(ev schema.Event, seq uint64) error {
		all = append(all, got{seq, ev.Kind})
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(all) != 3 || all[0].seq >= all[1].seq || all[1].seq >= all[2].seq {
		t.Fatalf("events: %+v", all)
	}
	for i, from := range all {
		var rest []got
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		_, err := c.FollowAfter(ctx, job, from.seq, producer.UntilDone, func(ev schema.Event, seq uint64) error {
			rest = append(rest, got{seq, ev.Kind})
			return nil
		})
		cancel()
		if err != nil {
			t.Fatalf("after %d: %v", from.seq, err)
		}
		if len(rest) != len(all)-i-1 || (len(rest) > 0 && rest[0] != all[i+1]) {
			t.Fatalf("after %d: %+v, want %+v", from.seq, rest, all[i+1:])
		}
	}
}

// AwaitAdmission gives the worker's decision, or says none came in time.
func TestAwaitAdmission(t *testing.T) {
	c := client(t)
	js, _ := jetstream.New(connect(t))
	publishRun(t, js, "admitted-1")
	ev, err := c.AwaitAdmission(t.Context(), "admitted-1")
	if err != nil || ev.Kind != schema.KindAccepted {
		t.Fatalf("decision: %+v %v", ev, err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	if _, err := c.AwaitAdmission(ctx, "never-taken-1"); !errors.Is(err, producer.ErrUndecidedAdmission) {
		t.Fatalf("no decision: %v", err)
	}
}
