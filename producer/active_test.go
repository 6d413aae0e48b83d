package producer_test

import (
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/winchhq/winch/broker"
	"github.com/winchhq/winch/jobs"
	"github.com/winchhq/winch/schema"
)

// winch ps (List of the states a job has not ended in) answers from the
// requests in the queue and their own states: a running job and a queued
// one are listed, an ended one is not, whether its request is still in the
// queue (ended, not yet acknowledged) or gone (acknowledged); winch ps -a
// lists every state.
func TestListAnswersFromTheQueue(t *testing.T) {
	c := client(t)
	nc := connect(t)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	kv, err := js.KeyValue(ctx, broker.StateBucket)
	if err != nil {
		t.Fatal(err)
	}
	store := jobs.NewStore(kv)
	submit := func() schema.Request {
		sub, err := c.Submit(ctx, schema.Request{Command: "core.echo", Params: map[string]any{"text": "x"}, Principal: "alice"})
		if err != nil {
			t.Fatal(err)
		}
		return sub.Request
	}
	claimant := jobs.Claimant{Worker: "w1", Session: "w1-s", Executor: "process", Retry: true}
	write := func(req schema.Request, decide func(schema.JobState) schema.JobState) {
		t.Helper()
		if _, err := store.Update(ctx, req.ID, nil, func(e jobs.Entry) (schema.JobState, bool, error) {
			return decide(e.StateOr(jobs.Queued(req))), true, nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	claim := func(cur schema.JobState) schema.JobState { return jobs.Claim(cur, false, claimant, time.Now()).State }
	finish := func(cur schema.JobState) schema.JobState {
		next, err := jobs.Finish(cur, claimant.Session, cur.Attempt, jobs.Ending{ExitCode: 0, StartedAt: time.Now()}, 3, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return next
	}

	queued, running, ended, acked := submit(), submit(), submit(), submit()
	write(running, claim)
	write(ended, claim)
	write(ended, finish) // its request stays in the queue: no worker acknowledged it
	write(acked, claim)
	write(acked, finish)
	requests, err := js.Stream(ctx, broker.JobsStream)
	if err != nil {
		t.Fatal(err)
	}
	// As the worker's acknowledgement does: the request leaves the queue.
	if err := requests.Purge(ctx, jetstream.WithPurgeSubject(broker.JobSubject(acked.Queue, acked.ID, acked.Principal))); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name   string
		states []schema.State
		want   map[string]schema.State
	}{
		{"ps", []schema.State{schema.StateQueued, schema.StateRunning},
			map[string]schema.State{queued.ID: schema.StateQueued, running.ID: schema.StateRunning}},
		{"ps, running only", []schema.State{schema.StateRunning},
			map[string]schema.State{running.ID: schema.StateRunning}},
		{"ps -a", nil,
			map[string]schema.State{queued.ID: schema.StateQueued, running.ID: schema.StateRunning, ended.ID: schema.StateSucceeded, acked.ID: schema.StateSucceeded}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			list, err := c.List(ctx, tc.states...)
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]schema.State{}
			for _, st := range list {
				if slices.Contains([]string{queued.ID, running.ID, ended.ID, acked.ID}, st.JobID) {
					got[st.JobID] = st.State
				}
			}
			if len(got) != len(tc.want) {
				t.Fatalf("listed %v, want %v", got, tc.want)
			}
			for id, want := range tc.want {
				if got[id] != want {
					t.Errorf("job %s listed as %q, want %q", id, got[id], want)
				}
			}
		})
	}
}
