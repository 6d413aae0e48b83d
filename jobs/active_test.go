package jobs_test

import (
	"errors"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/winchhq/winch/broker"
	"github.com/winchhq/winch/jobs"
	"github.com/winchhq/winch/schema"
)

// The index of active jobs follows every job through its transitions: in
// it from the claim until the state that ends it, and then gone from the
// stream altogether once its purge marker expired (no delete marker left
// for readers to walk past). A job that ends before any worker recorded it
// is never in it.
func TestActiveIndexFollowsTheLifecycle(t *testing.T) {
	t.Parallel()
	claim := func(cur schema.JobState) (schema.JobState, error) {
		d := jobs.Claim(cur, false, claimant(false), tNow)
		return d.State, nil
	}
	start := func(cur schema.JobState) (schema.JobState, error) {
		return jobs.Start(cur, otherSession, cur.Attempt, tNow)
	}
	release := func(cur schema.JobState) (schema.JobState, error) {
		next, _, err := jobs.Release(cur, otherSession, cur.Attempt, "drain", 9, tNow)
		return next, err
	}
	finish := func(cur schema.JobState) (schema.JobState, error) {
		return jobs.Finish(cur, otherSession, cur.Attempt, jobs.Ending{ExitCode: 0, StartedAt: tNow}, 5, tNow)
	}
	cancel := func(cur schema.JobState) (schema.JobState, error) {
		next, _, _ := jobs.Cancel(cur, cur.Principal, false, tNow)
		return next, nil
	}
	reject := func(cur schema.JobState) (schema.JobState, error) {
		req := testRequest()
		req.ID = cur.JobID
		return jobs.Reject(cur, req, "alice", "w2", errors.New("no such command"), tNow).State, nil
	}
	type step struct {
		name   string
		apply  func(schema.JobState) (schema.JobState, error)
		active bool
	}
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"claimed, started, finished", []step{{"claim", claim, true}, {"start", start, true}, {"finish", finish, false}}},
		{"released back to the queue and claimed again", []step{{"claim", claim, true}, {"release", release, true}, {"claim again", claim, true}, {"finish", finish, false}}},
		{"cancelled while released", []step{{"claim", claim, true}, {"release", release, true}, {"cancel", cancel, false}}},
		{"rejected before any claim", []step{{"reject", reject, false}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			js := connect(t, natsURL)
			ctx := testContext(t)
			s, err := jobs.OpenStore(ctx, js, slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			kv := bucket(t, js, broker.StateBucket)
			stream, err := js.Stream(ctx, "KV_"+broker.StateBucket)
			if err != nil {
				t.Fatal(err)
			}
			cur := queuedJob()
			id := cur.JobID
			for _, st := range tc.steps {
				e, err := s.Update(ctx, id, nil, func(e jobs.Entry) (schema.JobState, bool, error) {
					next, err := st.apply(e.StateOr(cur))
					return next, err == nil, err
				})
				if err != nil {
					t.Fatalf("%s: %v", st.name, err)
				}
				active, err := jobs.ActiveJobs(ctx, kv)
				if err != nil {
					t.Fatal(err)
				}
				if got := slices.Contains(active, id); got != st.active {
					t.Fatalf("after %s (state %s): in the index = %v, want %v", st.name, e.State.State, got, st.active)
				}
			}
			// The purge marker expires (a per-message TTL of a second), and
			// leaves nothing on the key.
			subject := "$KV." + broker.StateBucket + ".active." + id
			var left uint64
			for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
				info, err := stream.Info(ctx, jetstream.WithSubjectFilter(subject))
				if err != nil {
					t.Fatal(err)
				}
				if left = info.State.Subjects[subject]; left == 0 {
					break
				}
			}
			if left != 0 {
				t.Errorf("%d messages left on the ended job's index key after 10 s, want none (not even a delete marker)", left)
			}
		})
	}
}
