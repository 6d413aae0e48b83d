package jobs_test

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/winchhq/winch/jobs"
	"github.com/winchhq/winch/schema"
)

// The lifecycle is plain functions of values: these tests need no server.

var (
	tCreated = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	tStarted = tCreated.Add(10 * time.Second)
	tEnded   = tCreated.Add(20 * time.Second) // when an earlier attempt ended
	tNow     = tCreated.Add(time.Minute)      // when the transition happens
)

const (
	holderSession = "w1-0a0b0c0d0e0f"
	otherSession  = "w2-0f0e0d0c0b0a"
)

func testRequest() schema.Request {
	return schema.Request{
		Version: schema.Version, ID: "job-1", Command: "core.echo", Queue: "default", Principal: "alice",
		Params: map[string]any{"text": "hi"}, CreatedAt: tCreated,
	}
}

// claimant is the worker that a delivered request reaches in the tests.
func claimant(retry bool) jobs.Claimant {
	return jobs.Claimant{Worker: "w2", Session: otherSession, Executor: "docker", Retry: retry,
		Commit: "0123456789abcdef0123456789abcdef01234567", Params: map[string]any{"text": "masked"}}
}

// queued is a job whose request waits in the queue; with no state entry, it
// is what Queued says.
func queued() schema.JobState { return jobs.Queued(testRequest()) }

// running is attempt 1 of the job, held by session holderSession of w1,
// its command not started yet.
func running() schema.JobState {
	st := queued()
	st.State, st.Attempt = schema.StateRunning, 1
	st.Worker, st.Session, st.Executor = "w1", holderSession, "process"
	st.Commit, st.Params = "fedcba9876543210fedcba9876543210fedcba98", map[string]any{"text": "hi"}
	return st
}

func started(st schema.JobState) schema.JobState { st.StartedAt = tStarted; return st }
func retry(st schema.JobState) schema.JobState   { st.Retry = true; return st }

func cancelAsked(st schema.JobState) schema.JobState {
	st.CancelRequested, st.CancelledBy = true, "bob"
	return st
}

func with(st schema.JobState, edit func(*schema.JobState)) schema.JobState {
	edit(&st)
	return st
}

var terminalStates = []schema.State{schema.StateSucceeded, schema.StateFailed, schema.StateCancelled,
	schema.StateTimedOut, schema.StateRejected, schema.StateDead}

// ended is a job that ended in s. Its holder fields are those of running,
// so that a transition that checked only the session and attempt would
// take it for held.
func ended(s schema.State) schema.JobState {
	st := started(running())
	st.State, st.FinishedAt, st.FinalSeq = s, tEnded, 7
	switch s {
	case schema.StateSucceeded, schema.StateFailed:
		code := map[schema.State]int{schema.StateSucceeded: 0, schema.StateFailed: 1}[s]
		st.ExitCode = &code
	case schema.StateCancelled:
		st = cancelAsked(st)
		st.Error = "cancelled by bob"
	case schema.StateTimedOut:
		st.Error = "timed out after 1s"
	case schema.StateRejected:
		st.Error = "no such command"
	case schema.StateDead:
		st.Reason, st.Error = schema.ReasonDead, "ran out of deliveries"
	}
	return st
}

var allStates = []schema.State{schema.StateQueued, schema.StateRunning, schema.StateSucceeded, schema.StateFailed,
	schema.StateCancelled, schema.StateTimedOut, schema.StateRejected, schema.StateDead}

// diffState names each field in which got and want differ.
func diffState(got, want schema.JobState) string {
	if reflect.DeepEqual(got, want) {
		return ""
	}
	var b strings.Builder
	gv, wv := reflect.ValueOf(got), reflect.ValueOf(want)
	for i := range gv.NumField() {
		g, w := gv.Field(i).Interface(), wv.Field(i).Interface()
		if reflect.DeepEqual(g, w) {
			continue
		}
		fmt.Fprintf(&b, "\n\t%s: got %s, want %s", gv.Type().Field(i).Name, show(g), show(w))
	}
	return b.String()
}

func show(v any) string {
	if p, ok := v.(*int); ok {
		if p == nil {
			return "nil"
		}
		return fmt.Sprintf("&%d", *p)
	}
	return fmt.Sprintf("%#v", v)
}

func checkState(t *testing.T, what string, got, want schema.JobState) {
	t.Helper()
	if d := diffState(got, want); d != "" {
		t.Errorf("%s: state differs:%s", what, d)
	}
}

func intp(n int) *int { return &n }

func TestTerminalStatesNeverChange(t *testing.T) {
	t.Parallel()
	for _, s := range terminalStates {
		t.Run(string(s), func(t *testing.T) {
			t.Parallel()
			cur := ended(s)
			if !cur.State.Terminal() {
				t.Fatalf("%s is not terminal", s)
			}
			for _, alive := range []bool{false, true} {
				for _, r := range []bool{false, true} {
					d := jobs.Claim(ended(s), alive, claimant(r), tNow)
					if d.Verdict != jobs.Over || d.Write {
						t.Errorf("Claim(alive=%v, retry=%v) = %s, write %v; want over, no write", alive, r, d.Verdict, d.Write)
					}
					checkState(t, "Claim", d.State, cur)
				}
				d := jobs.Dead(ended(s), alive, "ran out", tNow)
				if d.Verdict != jobs.Over || d.Write {
					t.Errorf("Dead(alive=%v) = %s, write %v; want over, no write", alive, d.Verdict, d.Write)
				}
				checkState(t, "Dead", d.State, cur)
			}

			next, err := jobs.Start(ended(s), holderSession, 1, tNow)
			if !errors.Is(err, jobs.ErrNotHolder) {
				t.Errorf("Start: err %v, want ErrNotHolder", err)
			}
			checkState(t, "Start", next, cur)

			for _, e := range []jobs.Ending{{}, {ExitCode: 3}, {Cancelled: true}, {TimedOut: time.Second}, {Err: errors.New("boom")}} {
				next, err := jobs.Finish(ended(s), holderSession, 1, e, 9, tNow)
				if !errors.Is(err, jobs.ErrNotHolder) {
					t.Errorf("Finish(%+v): err %v, want ErrNotHolder", e, err)
				}
				checkState(t, "Finish", next, cur)
			}

			next, back, err := jobs.Release(ended(s), holderSession, 1, "draining", 9, tNow)
			if !errors.Is(err, jobs.ErrNotHolder) || back {
				t.Errorf("Release: handed back %v, err %v; want false, ErrNotHolder", back, err)
			}
			checkState(t, "Release", next, cur)

			d := jobs.Reject(ended(s), testRequest(), "mallory", "w2", errors.New("nope"), tNow)
			if d.Verdict != jobs.Over || d.Write {
				t.Errorf("Reject = %s, write %v; want over, no write", d.Verdict, d.Write)
			}
			checkState(t, "Reject", d.State, cur)

			for _, by := range []struct {
				who   string
				admin bool
			}{{"alice", false}, {"root", true}, {"mallory", false}} {
				next, outcome, write := jobs.Cancel(ended(s), by.who, by.admin, tNow)
				if outcome != schema.OutcomeFinished || write {
					t.Errorf("Cancel by %s (admin %v) = %s, write %v; want %s, no write", by.who, by.admin, outcome, write, schema.OutcomeFinished)
				}
				checkState(t, "Cancel", next, cur)
			}

			if jobs.Holds(ended(s), holderSession, 1) {
				t.Errorf("Holds is true for a %s job", s)
			}
		})
	}
}

// Lose, like every transition, leaves a job that is over as it is.
func TestLoseNeverChangesATerminalState(t *testing.T) {
	t.Parallel()
	for _, s := range terminalStates {
		checkState(t, "Lose("+string(s)+")", jobs.Lose(ended(s), tNow), ended(s))
	}
}

func TestLose(t *testing.T) {
	t.Parallel()
	cur := started(running())
	want := with(cur, func(st *schema.JobState) {
		st.State, st.Reason, st.FinishedAt, st.FinalSeq = schema.StateFailed, schema.ReasonWorkerLost, tNow, jobs.ObserverSeq
		st.Error = "worker lost: w1 stopped answering while the command ran"
	})
	checkState(t, "Lose", jobs.Lose(cur, tNow), want)
}

func TestQueued(t *testing.T) {
	t.Parallel()
	req := testRequest()
	req.ModuleCommit, req.IdempotencyKey, req.Timeout = "0123456789abcdef0123456789abcdef01234567", "k", schema.Duration(time.Second)
	want := schema.JobState{JobID: "job-1", State: schema.StateQueued, Command: "core.echo", Principal: "alice",
		Queue: "default", CreatedAt: tCreated}
	checkState(t, "Queued", jobs.Queued(req), want)
}

func TestClaim(t *testing.T) {
	t.Parallel()
	// claimedBy is cur taken by claimant(r) in attempt cur.Attempt+1.
	claimedBy := func(cur schema.JobState, r bool) schema.JobState {
		c := claimant(r)
		return with(cur, func(st *schema.JobState) {
			st.State, st.Attempt = schema.StateRunning, cur.Attempt+1
			st.Worker, st.Session, st.Executor = c.Worker, c.Session, c.Executor
			st.Retry, st.Commit, st.Params = c.Retry, c.Commit, c.Params
			st.StartedAt = time.Time{}
		})
	}
	cancelledNow := func(cur schema.JobState) schema.JobState {
		return with(cur, func(st *schema.JobState) {
			st.State, st.FinishedAt, st.FinalSeq = schema.StateCancelled, tNow, jobs.ObserverSeq
			st.Error = "cancelled by bob"
		})
	}
	lostNow := func(cur schema.JobState) schema.JobState {
		return with(cur, func(st *schema.JobState) {
			st.State, st.Reason, st.FinishedAt, st.FinalSeq = schema.StateFailed, schema.ReasonWorkerLost, tNow, jobs.ObserverSeq
			st.Error = "worker lost: w1 stopped answering while the command ran"
		})
	}
	// released is the job handed back to its queue after attempt 1.
	released := with(running(), func(st *schema.JobState) {
		st.State, st.Worker, st.Session = schema.StateQueued, "", ""
	})

	tests := []struct {
		name        string
		cur         schema.JobState
		holderAlive bool
		retry       bool // the claimant's command's
		want        schema.JobState
		verdict     jobs.Verdict
		write       bool
	}{
		{"queued: claimed, attempt 1", queued(), false, false, claimedBy(queued(), false), jobs.Run, true},
		{"queued, claimant retry: claimed with its retry", queued(), false, true, claimedBy(queued(), true), jobs.Run, true},
		{"no state entry: claimed", schema.JobState{JobID: "job-1"}, false, false,
			claimedBy(schema.JobState{JobID: "job-1"}, false), jobs.Run, true},
		{"released after attempt 1: attempt 2", released, false, false, claimedBy(released, false), jobs.Run, true},
		{"released after a cancel was asked: cancelled", cancelAsked(released), false, false,
			cancelledNow(cancelAsked(released)), jobs.Over, true},

		{"running, holder alive, not started: busy", running(), true, false, running(), jobs.Busy, false},
		{"running, holder alive, started: busy", started(running()), true, false, started(running()), jobs.Busy, false},
		{"running, holder alive, retry: busy", retry(started(running())), true, true, retry(started(running())), jobs.Busy, false},
		{"running, holder alive, cancel asked: busy (its holder stops it)", cancelAsked(started(running())), true, false,
			cancelAsked(started(running())), jobs.Busy, false},

		{"holder dead, not started, retry false: claimed again", running(), false, false,
			claimedBy(running(), false), jobs.Run, true},
		{"holder dead, not started, retry true: claimed again", retry(running()), false, true,
			claimedBy(retry(running()), true), jobs.Run, true},
		{"holder dead, started, retry true: claimed again, StartedAt cleared", retry(started(running())), false, true,
			claimedBy(retry(started(running())), true), jobs.Run, true},
		{"holder dead, started, retry false: failed, worker lost", started(running()), false, false,
			lostNow(started(running())), jobs.Over, true},
		// What decides is the retry of the attempt that ran, not the
		// claimant's (a newer module that allows it).
		{"holder dead, started, retry false, claimant retry true: still lost", started(running()), false, true,
			lostNow(started(running())), jobs.Over, true},
		{"holder dead, cancel asked, started: cancelled", cancelAsked(started(running())), false, false,
			cancelledNow(cancelAsked(started(running()))), jobs.Over, true},
		{"holder dead, cancel asked, not started: cancelled", cancelAsked(running()), false, false,
			cancelledNow(cancelAsked(running())), jobs.Over, true},
		{"holder dead, cancel asked, started, retry true: cancelled", cancelAsked(retry(started(running()))), false, true,
			cancelledNow(cancelAsked(retry(started(running())))), jobs.Over, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d := jobs.Claim(tt.cur, tt.holderAlive, claimant(tt.retry), tNow)
			if d.Verdict != tt.verdict || d.Write != tt.write {
				t.Errorf("verdict %s, write %v; want %s, write %v", d.Verdict, d.Write, tt.verdict, tt.write)
			}
			checkState(t, "Claim", d.State, tt.want)
		})
	}
}

func TestVerdictString(t *testing.T) {
	t.Parallel()
	for v, want := range map[jobs.Verdict]string{jobs.Run: "run", jobs.Over: "over", jobs.Busy: "busy"} {
		if v.String() != want {
			t.Errorf("%d.String() = %q, want %q", v, v.String(), want)
		}
	}
}

func TestHolds(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		cur     schema.JobState
		session string
		attempt int
		want    bool
	}{
		{"holder", running(), holderSession, 1, true},
		{"holder, started", started(running()), holderSession, 1, true},
		{"holder, cancel asked", cancelAsked(running()), holderSession, 1, true},
		{"other session", running(), otherSession, 1, false},
		{"earlier attempt", with(running(), func(st *schema.JobState) { st.Attempt = 2 }), holderSession, 1, false},
		{"later attempt", running(), holderSession, 2, false},
		{"empty session", running(), "", 1, false},
		{"queued with the same session", with(running(), func(st *schema.JobState) { st.State = schema.StateQueued }), holderSession, 1, false},
		{"no state", schema.JobState{}, "", 0, false},
	}
	for _, s := range terminalStates {
		tests = append(tests, struct {
			name    string
			cur     schema.JobState
			session string
			attempt int
			want    bool
		}{string(s), ended(s), holderSession, 1, false})
	}
	for _, tt := range tests {
		if got := jobs.Holds(tt.cur, tt.session, tt.attempt); got != tt.want {
			t.Errorf("%s: Holds(%q, %d) = %v, want %v", tt.name, tt.session, tt.attempt, got, tt.want)
		}
	}
}

// notHeld are states in which session holderSession, attempt 1, does not
// hold the job, other than the terminal ones (TestTerminalStatesNeverChange).
func notHeld() map[string]schema.JobState {
	return map[string]schema.JobState{
		"queued":               queued(),
		"no state":             {JobID: "job-1"},
		"other session":        with(started(running()), func(st *schema.JobState) { st.Session = otherSession }),
		"later attempt":        with(started(running()), func(st *schema.JobState) { st.Attempt = 2 }),
		"released":             with(running(), func(st *schema.JobState) { st.State, st.Session = schema.StateQueued, "" }),
		"queued, same session": with(running(), func(st *schema.JobState) { st.State = schema.StateQueued }),
	}
}

func TestStart(t *testing.T) {
	t.Parallel()
	t.Run("holder", func(t *testing.T) {
		t.Parallel()
		for _, cur := range []schema.JobState{running(), retry(running()), cancelAsked(running())} {
			got, err := jobs.Start(cur, holderSession, 1, tNow)
			if err != nil {
				t.Fatal(err)
			}
			checkState(t, "Start", got, with(cur, func(st *schema.JobState) { st.StartedAt = tNow }))
		}
	})
	for name, cur := range notHeld() {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			got, err := jobs.Start(cur, holderSession, 1, tNow)
			if !errors.Is(err, jobs.ErrNotHolder) {
				t.Errorf("err %v, want ErrNotHolder", err)
			}
			checkState(t, "Start", got, cur)
		})
	}
}

func TestFinish(t *testing.T) {
	t.Parallel()
	const seq = 5
	// over is cur ended now with final event seq.
	over := func(cur schema.JobState, edit func(*schema.JobState)) schema.JobState {
		return with(cur, func(st *schema.JobState) {
			st.FinishedAt, st.FinalSeq = tNow, seq
			edit(st)
		})
	}
	run := started(running())
	tests := []struct {
		name   string
		cur    schema.JobState
		ending jobs.Ending
		want   schema.JobState
	}{
		{"exit 0: succeeded", run, jobs.Ending{},
			over(run, func(st *schema.JobState) { st.State, st.ExitCode = schema.StateSucceeded, intp(0) })},
		{"exit 3: failed with its code", run, jobs.Ending{ExitCode: 3},
			over(run, func(st *schema.JobState) { st.State, st.ExitCode = schema.StateFailed, intp(3) })},
		{"exit 0 with a cancel asked that came too late: succeeded", cancelAsked(run), jobs.Ending{},
			over(cancelAsked(run), func(st *schema.JobState) { st.State, st.ExitCode = schema.StateSucceeded, intp(0) })},
		{"out of memory", run, jobs.Ending{ExitCode: 137, Reason: schema.ReasonOOMKilled},
			over(run, func(st *schema.JobState) {
				st.State, st.ExitCode, st.Reason, st.Error = schema.StateFailed, intp(137), schema.ReasonOOMKilled, "killed: out of memory"
			})},
		{"cancelled", cancelAsked(run), jobs.Ending{Cancelled: true, ExitCode: 143},
			over(cancelAsked(run), func(st *schema.JobState) { st.State, st.Error = schema.StateCancelled, "cancelled by bob" })},
		{"cancelled wins over a timeout", cancelAsked(run), jobs.Ending{Cancelled: true, TimedOut: 2 * time.Second},
			over(cancelAsked(run), func(st *schema.JobState) { st.State, st.Error = schema.StateCancelled, "cancelled by bob" })},
		{"timed out", run, jobs.Ending{TimedOut: 2 * time.Second, ExitCode: 137},
			over(run, func(st *schema.JobState) { st.State, st.Error = schema.StateTimedOut, "timed out after 2s" })},
		{"timed out wins over an error", run, jobs.Ending{TimedOut: 1500 * time.Millisecond, Err: errors.New("boom")},
			over(run, func(st *schema.JobState) { st.State, st.Error = schema.StateTimedOut, "timed out after 1.5s" })},
		{"error after start: failed", run, jobs.Ending{Err: errors.New("container vanished")},
			over(run, func(st *schema.JobState) { st.State, st.Error = schema.StateFailed, "container vanished" })},
		{"error before start: failed, not started", running(), jobs.Ending{Err: errors.New("image did not build")},
			over(running(), func(st *schema.JobState) {
				st.State, st.Error, st.Reason = schema.StateFailed, "image did not build", schema.ReasonNotStarted
			})},
		{"error before start overrides the executor's reason", running(), jobs.Ending{Err: errors.New("no engine"), Reason: schema.ReasonOOMKilled},
			over(running(), func(st *schema.JobState) {
				st.State, st.Error, st.Reason = schema.StateFailed, "no engine", schema.ReasonNotStarted
			})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := jobs.Finish(tt.cur, holderSession, 1, tt.ending, seq, tNow)
			if err != nil {
				t.Fatal(err)
			}
			checkState(t, "Finish", got, tt.want)
			if !got.State.Terminal() {
				t.Errorf("Finish left the job %s", got.State)
			}
		})
	}
	for name, cur := range notHeld() {
		t.Run("not holder: "+name, func(t *testing.T) {
			t.Parallel()
			got, err := jobs.Finish(cur, holderSession, 1, jobs.Ending{}, seq, tNow)
			if !errors.Is(err, jobs.ErrNotHolder) {
				t.Errorf("err %v, want ErrNotHolder", err)
			}
			checkState(t, "Finish", got, cur)
		})
	}
}

// A holder whose end was stored but whose answer was lost reads it back as
// its own; anyone else's end is not.
func TestFinishedBy(t *testing.T) {
	t.Parallel()
	const seq = 5
	mine, err := jobs.Finish(started(running()), holderSession, 1, jobs.Ending{}, seq, tNow)
	if err != nil {
		t.Fatal(err)
	}
	lost := jobs.Lose(started(running()), tNow)
	tests := []struct {
		name    string
		cur     schema.JobState
		session string
		attempt int
		seq     int
		want    bool
	}{
		{"the holder's own end", mine, holderSession, 1, seq, true},
		{"still running", started(running()), holderSession, 1, seq, false},
		{"another session's", mine, "w3-000000000000", 1, seq, false},
		{"another attempt's", mine, holderSession, 2, seq, false},
		{"another final event", mine, holderSession, 1, seq + 1, false},
		{"lost by an observer", lost, holderSession, 1, seq, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := jobs.FinishedBy(tt.cur, tt.session, tt.attempt, tt.seq); got != tt.want {
				t.Errorf("FinishedBy = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestRelease(t *testing.T) {
	t.Parallel()
	const seq = 4
	handBack := func(cur schema.JobState) schema.JobState {
		return with(cur, func(st *schema.JobState) {
			st.State, st.Worker, st.Session, st.StartedAt = schema.StateQueued, "", "", time.Time{}
		})
	}
	tests := []struct {
		name       string
		cur        schema.JobState
		want       schema.JobState
		handedBack bool
	}{
		{"not started, retry false: handed back", running(), handBack(running()), true},
		{"not started, retry true: handed back", retry(running()), handBack(retry(running())), true},
		{"started, retry true: handed back, StartedAt cleared", retry(started(running())), handBack(retry(started(running()))), true},
		{"started, retry false: failed, interrupted, not handed back", started(running()),
			with(started(running()), func(st *schema.JobState) {
				st.State, st.Reason, st.FinishedAt, st.FinalSeq = schema.StateFailed, schema.ReasonInterrupted, tNow, seq
				st.Error = "interrupted: the worker is draining while the command ran; it may not run twice (retry: false), so it was stopped and not handed back"
			}), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, back, err := jobs.Release(tt.cur, holderSession, 1, "the worker is draining", seq, tNow)
			if err != nil {
				t.Fatal(err)
			}
			if back != tt.handedBack {
				t.Errorf("handed back %v, want %v", back, tt.handedBack)
			}
			checkState(t, "Release", got, tt.want)
			if back && jobs.Holds(got, holderSession, 1) {
				t.Error("the releasing session still holds the job it handed back")
			}
		})
	}
	for name, cur := range notHeld() {
		t.Run("not holder: "+name, func(t *testing.T) {
			t.Parallel()
			got, back, err := jobs.Release(cur, holderSession, 1, "draining", seq, tNow)
			if !errors.Is(err, jobs.ErrNotHolder) || back {
				t.Errorf("handed back %v, err %v; want false, ErrNotHolder", back, err)
			}
			checkState(t, "Release", got, cur)
		})
	}
}

func TestReject(t *testing.T) {
	t.Parallel()
	req := testRequest()
	reason := errors.New(`unknown command "core.echo"`)
	// rejected is the state Reject writes for a job whose state (or
	// Queued(req)) is cur, of createdAt.
	rejected := func(jobID string, createdAt time.Time) schema.JobState {
		return schema.JobState{JobID: jobID, State: schema.StateRejected, Command: req.Command, Principal: "mallory",
			Queue: req.Queue, Params: req.Params, CreatedAt: createdAt, Attempt: 1, Worker: "w2",
			FinishedAt: tNow, Error: reason.Error(), FinalSeq: 1}
	}
	earlier := tCreated.Add(-time.Hour)
	tests := []struct {
		name string
		cur  schema.JobState
		want schema.JobState
	}{
		{"queued: the subject's principal, not the payload's", queued(), rejected("job-1", tCreated)},
		{"no state entry: the request's CreatedAt", schema.JobState{JobID: "job-1"}, rejected("job-1", tCreated)},
		{"a state's CreatedAt wins over the request's", with(queued(), func(st *schema.JobState) { st.CreatedAt = earlier }),
			rejected("job-1", earlier)},
		// The state names the job: a request that could not be decoded
		// names none, and the worker passes the ID it found elsewhere.
		{"the state's JobID", schema.JobState{JobID: "job-from-subject"}, rejected("job-from-subject", tCreated)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d := jobs.Reject(tt.cur, req, "mallory", "w2", reason, tNow)
			if d.Verdict != jobs.Over || !d.Write {
				t.Errorf("verdict %s, write %v; want over, write", d.Verdict, d.Write)
			}
			checkState(t, "Reject", d.State, tt.want)
			if ev := d.State.FinalEvent(); ev.Kind != schema.KindRejected || ev.Principal != "mallory" {
				t.Errorf("final event is %s by %q, want rejected by mallory", ev.Kind, ev.Principal)
			}
		})
	}
}

// A request is rejected on a later delivery too (on its last delivery when
// its module cannot be fetched, or by a worker whose roles or catalog
// differ) after an earlier attempt was claimed and released. The rejection's
// event must not take an identity that attempt's events have (the stream
// would drop it as a duplicate), and a running job is left to its holder.
func TestRejectDoesNotReuseAnEarlierAttemptsEvent(t *testing.T) {
	t.Parallel()
	released := with(running(), func(st *schema.JobState) { st.State, st.Worker, st.Session = schema.StateQueued, "", "" })
	if d := jobs.Reject(with(running(), func(st *schema.JobState) { st.Attempt = 2 }), testRequest(), "alice", "w2", errors.New("x"), tNow); d.Verdict != jobs.Busy || d.Write {
		t.Errorf("reject of a running job: %v, write %v; want busy, no write", d.Verdict, d.Write)
	}
	for name, cur := range map[string]schema.JobState{
		"released after attempt 1": released,
	} {
		d := jobs.Reject(cur, testRequest(), "alice", "w2", errors.New("module unavailable"), tNow)
		ev := d.State.FinalEvent()
		if ev.Attempt < cur.Attempt || (ev.Attempt == cur.Attempt && ev.Seq < jobs.ObserverSeq) {
			t.Errorf("%s (attempt %d): the rejected event is %s, an identity attempt %d's own events may have",
				name, cur.Attempt, ev.MsgID(), ev.Attempt)
		}
	}
}

func TestDead(t *testing.T) {
	t.Parallel()
	const why = "ran out of its 5 deliveries"
	dead := func(cur schema.JobState) schema.JobState {
		return with(cur, func(st *schema.JobState) {
			st.State, st.Reason, st.Error, st.FinishedAt, st.FinalSeq = schema.StateDead, schema.ReasonDead, why, tNow, jobs.ObserverSeq
		})
	}
	tests := []struct {
		name        string
		cur         schema.JobState
		holderAlive bool
		want        schema.JobState
		write       bool
	}{
		{"queued: dead", queued(), false, dead(queued()), true},
		{"no state entry: dead", schema.JobState{JobID: "job-1"}, false, dead(schema.JobState{JobID: "job-1"}), true},
		{"running, holder dead: dead", running(), false, dead(running()), true},
		{"running, holder dead, started: dead", started(running()), false, dead(started(running())), true},
		{"running, holder alive: left to it", started(running()), true, started(running()), false},
		{"running, holder alive, cancel asked: left to it", cancelAsked(running()), true, cancelAsked(running()), false},
		// alive only counts for a running job: a queued one is not held.
		{"queued, 'holder alive': dead", queued(), true, dead(queued()), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d := jobs.Dead(tt.cur, tt.holderAlive, why, tNow)
			if d.Verdict != jobs.Over || d.Write != tt.write {
				t.Errorf("verdict %s, write %v; want over, write %v", d.Verdict, d.Write, tt.write)
			}
			checkState(t, "Dead", d.State, tt.want)
		})
	}
}

func TestCancel(t *testing.T) {
	t.Parallel()
	cancelledBy := func(cur schema.JobState, by string) schema.JobState {
		return with(cur, func(st *schema.JobState) {
			st.State, st.FinishedAt, st.FinalSeq = schema.StateCancelled, tNow, jobs.ObserverSeq
			st.Error = "cancelled by " + by + " before it started"
			st.CancelRequested, st.CancelledBy = true, by
		})
	}
	stopping := func(cur schema.JobState, by string) schema.JobState {
		return with(cur, func(st *schema.JobState) { st.CancelRequested, st.CancelledBy = true, by })
	}
	tests := []struct {
		name    string
		cur     schema.JobState
		by      string
		admin   bool
		want    schema.JobState
		outcome schema.ControlOutcome
		write   bool
	}{
		{"queued, by its principal: cancelled", queued(), "alice", false, cancelledBy(queued(), "alice"), schema.OutcomeCancelled, true},
		{"queued, by an admin: cancelled", queued(), "root", true, cancelledBy(queued(), "root"), schema.OutcomeCancelled, true},
		{"queued, by its principal who is admin", queued(), "alice", true, cancelledBy(queued(), "alice"), schema.OutcomeCancelled, true},
		{"queued, by another: refused", queued(), "mallory", false, queued(), schema.OutcomeRefused, false},
		{"released, by its principal: cancelled",
			with(running(), func(st *schema.JobState) { st.State, st.Worker, st.Session = schema.StateQueued, "", "" }), "alice", false,
			cancelledBy(with(running(), func(st *schema.JobState) { st.State, st.Worker, st.Session = schema.StateQueued, "", "" }), "alice"),
			schema.OutcomeCancelled, true},

		{"running, by its principal: stopping", started(running()), "alice", false, stopping(started(running()), "alice"), schema.OutcomeStopping, true},
		{"running, not started, by an admin: stopping", running(), "root", true, stopping(running(), "root"), schema.OutcomeStopping, true},
		{"running, by another: refused", started(running()), "mallory", false, started(running()), schema.OutcomeRefused, false},
		{"running, cancel already asked: stopping, not written again", cancelAsked(running()), "alice", false,
			cancelAsked(running()), schema.OutcomeStopping, false},
		{"running, cancel already asked, by an admin: CancelledBy kept", cancelAsked(running()), "root", true,
			cancelAsked(running()), schema.OutcomeStopping, false},
		{"running, cancel already asked, by another: refused", cancelAsked(running()), "mallory", false,
			cancelAsked(running()), schema.OutcomeRefused, false},
		{"principal names are case-sensitive", queued(), "Alice", false, queued(), schema.OutcomeRefused, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, outcome, write := jobs.Cancel(tt.cur, tt.by, tt.admin, tNow)
			if outcome != tt.outcome || write != tt.write {
				t.Errorf("outcome %s, write %v; want %s, write %v", outcome, write, tt.outcome, tt.write)
			}
			checkState(t, "Cancel", got, tt.want)
		})
	}
}

func TestCancelledJobIsNeverClaimed(t *testing.T) {
	t.Parallel()
	// Queued: cancelled at once; a delivery of its request later is over.
	st, _, _ := jobs.Cancel(queued(), "alice", false, tNow)
	if d := jobs.Claim(st, false, claimant(false), tNow.Add(time.Second)); d.Verdict != jobs.Over || d.Write {
		t.Errorf("claim after cancel: %s, write %v", d.Verdict, d.Write)
	}
	// Running: its holder stops it; if it dies first, the next claim ends it.
	st, _, _ = jobs.Cancel(started(running()), "alice", false, tNow)
	d := jobs.Claim(st, false, claimant(true), tNow.Add(time.Second))
	if d.Verdict != jobs.Over || !d.Write || d.State.State != schema.StateCancelled || d.State.Error != "cancelled by alice" {
		t.Errorf("claim of a cancelled job whose holder died: %s, write %v, %s %q", d.Verdict, d.Write, d.State.State, d.State.Error)
	}
}

func TestRefusalReason(t *testing.T) {
	t.Parallel()
	got := jobs.RefusalReason(queued(), "mallory")
	want := `mallory may not cancel job job-1 of alice: only its own principal or one with the "admin" role may`
	if got != want {
		t.Errorf("RefusalReason = %q\nwant %q", got, want)
	}
	if jobs.AdminRole != "admin" {
		t.Errorf("AdminRole = %q", jobs.AdminRole)
	}
}

func TestAlive(t *testing.T) {
	t.Parallel()
	const lease = 2 * time.Second
	tests := []struct {
		name string
		seen time.Time
		want bool
	}{
		{"never seen", time.Time{}, false},
		{"just now", tNow, true},
		{"just younger than the lease", tNow.Add(-lease + time.Nanosecond), true},
		{"exactly a lease old", tNow.Add(-lease), false},
		{"older than the lease", tNow.Add(-lease - time.Nanosecond), false},
		{"long ago", tNow.Add(-time.Hour), false},
		{"ahead of our clock", tNow.Add(time.Second), true},
	}
	for _, tt := range tests {
		if got := jobs.Alive(tt.seen, tNow, lease); got != tt.want {
			t.Errorf("%s: Alive = %v, want %v", tt.name, got, tt.want)
		}
	}
	if jobs.Alive(tNow, tNow, 0) {
		t.Error("alive with a zero lease")
	}
}

func TestSeqConstants(t *testing.T) {
	t.Parallel()
	if jobs.ReapedSeq >= jobs.ObserverSeq || jobs.ReapedSeq < 1_000_000 {
		t.Errorf("ReapedSeq %d must sort after a worker's own events and before ObserverSeq %d", jobs.ReapedSeq, jobs.ObserverSeq)
	}
}

// Every state and every transition: the result is one of the states, and a
// transition never moves a job out of a terminal state or back to no state.
func TestTransitionsStayInStates(t *testing.T) {
	t.Parallel()
	known := map[schema.State]bool{}
	for _, s := range allStates {
		known[s] = true
	}
	for _, s := range allStates {
		var cur schema.JobState
		switch s {
		case schema.StateQueued:
			cur = queued()
		case schema.StateRunning:
			cur = started(running())
		default:
			cur = ended(s)
		}
		for _, alive := range []bool{false, true} {
			results := map[string]schema.State{
				"Claim":  jobs.Claim(cur, alive, claimant(false), tNow).State.State,
				"Dead":   jobs.Dead(cur, alive, "x", tNow).State.State,
				"Reject": jobs.Reject(cur, testRequest(), "alice", "w2", errors.New("x"), tNow).State.State,
			}
			st, _, _ := jobs.Cancel(cur, "alice", false, tNow)
			results["Cancel"] = st.State
			st, _ = jobs.Start(cur, holderSession, 1, tNow)
			results["Start"] = st.State
			st, _ = jobs.Finish(cur, holderSession, 1, jobs.Ending{}, 1, tNow)
			results["Finish"] = st.State
			st, _, _ = jobs.Release(cur, holderSession, 1, "x", 1, tNow)
			results["Release"] = st.State
			for name, got := range results {
				if !known[got] {
					t.Errorf("%s of a %s job gives state %q", name, s, got)
				}
				if s.Terminal() && got != s {
					t.Errorf("%s of a %s job gives %s", name, s, got)
				}
			}
		}
	}
}
