package jobs_test

import (
	"testing"

	"github.com/winchhq/winch/jobs"
	"github.com/winchhq/winch/schema"
)

func TestFinishFanout(t *testing.T) {
	t.Parallel()
	parent := jobs.Queued(testRequest())
	parent.State, parent.Session, parent.Attempt = schema.StateRunning, holderSession, 1
	cancelled := parent
	cancelled.CancelRequested, cancelled.CancelledBy = true, "alice"
	for _, tt := range []struct {
		name      string
		cur       schema.JobState
		p         schema.FanoutProgress
		wantState schema.State
		wantError string
	}{
		{"all succeeded", parent, schema.FanoutProgress{Total: 4, Launched: 4, Succeeded: 4}, schema.StateSucceeded, ""},
		{"one failed", parent, schema.FanoutProgress{Total: 4, Launched: 4, Succeeded: 3, Failed: 1}, schema.StateFailed, "1 of 4 children failed, 3 succeeded"},
		{"fail fast skipped the rest", parent, schema.FanoutProgress{Total: 40, Launched: 7, Succeeded: 5, Failed: 1, Cancelled: 1, FailFast: true},
			schema.StateFailed, "1 of 40 children failed, 1 cancelled, 5 succeeded, 33 skipped"},
		{"cancelled", cancelled, schema.FanoutProgress{Total: 10, Launched: 3, Succeeded: 1, Cancelled: 2}, schema.StateCancelled,
			"cancelled by alice: 0 of 10 children failed, 2 cancelled, 1 succeeded, 7 skipped"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			st, err := jobs.FinishFanout(tt.cur, holderSession, 1, tt.p, 9, tNow)
			if err != nil {
				t.Fatal(err)
			}
			if st.State != tt.wantState || st.Error != tt.wantError || st.FinalSeq != 9 || st.Fanout == nil || st.Fanout.Skipped != tt.p.Total-tt.p.Launched {
				t.Fatalf("state %s error %q seq %d fanout %+v", st.State, st.Error, st.FinalSeq, st.Fanout)
			}
		})
	}
	if _, err := jobs.FinishFanout(parent, holderSession, 1, schema.FanoutProgress{Total: 2, Launched: 2, Succeeded: 1}, 9, tNow); err == nil {
		t.Fatal("a fan-out ended while a child ran")
	}
	if _, err := jobs.FinishFanout(parent, otherSession, 1, schema.FanoutProgress{Total: 1, Launched: 1, Succeeded: 1}, 9, tNow); err != jobs.ErrNotHolder {
		t.Fatalf("a worker that does not hold the parent ended it: %v", err)
	}
}

func TestFanoutStoppingAndCounts(t *testing.T) {
	t.Parallel()
	parent := jobs.Queued(testRequest())
	p := schema.FanoutProgress{Total: 5, Launched: 3}
	for _, s := range []schema.State{schema.StateSucceeded, schema.StateTimedOut, schema.StateCancelled} {
		p = jobs.CountChild(p, s)
	}
	if p.Succeeded != 1 || p.Failed != 1 || p.Cancelled != 1 || p.Running() != 0 || p.String() != "3/5 done, 0 running, 1 failed, 1 cancelled" {
		t.Fatalf("counts %+v %q", p, p.String())
	}
	if jobs.Stopping(parent, p) {
		t.Fatal("stops without fail-fast or a cancel")
	}
	p.FailFast = true
	if !jobs.Stopping(parent, p) {
		t.Fatal("fail-fast goes on after a failure")
	}
	parent.CancelRequested = true
	if !jobs.Stopping(parent, schema.FanoutProgress{}) {
		t.Fatal("a cancelled fan-out goes on")
	}
}
