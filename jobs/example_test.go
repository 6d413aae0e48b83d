package jobs_test

import (
	"errors"
	"fmt"
	"time"

	"github.com/winchhq/winch/jobs"
	"github.com/winchhq/winch/schema"
)

// A job's life as plain values: a worker claims the queued job, records
// that its command starts, and records how it ended. A request delivered
// again afterwards finds the job over. The worker writes each state with
// Store.Update; the transitions themselves need no server.
func Example() {
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	req := schema.Request{Version: schema.Version, ID: "job-1", Command: "core.echo",
		Queue: "default", Principal: "alice", CreatedAt: t0}
	w := jobs.Claimant{Worker: "w1", Session: "w1-0a0b0c0d0e0f", Executor: "process"}

	// The job has no state yet: it is queued, and the worker takes it.
	d := jobs.Claim(jobs.Queued(req), false, w, t0.Add(time.Second))
	fmt.Println("claim:", d.Verdict, d.State.State, "attempt", d.State.Attempt, "by", d.State.Worker, "write", d.Write)

	// Before the command starts: from here on it may have run.
	st, err := jobs.Start(d.State, w.Session, d.State.Attempt, t0.Add(2*time.Second))
	if err != nil {
		panic(err)
	}

	// The command exits 0; its final event is the attempt's 3rd.
	st, err = jobs.Finish(st, w.Session, st.Attempt, jobs.Ending{ExitCode: 0}, 3, t0.Add(5*time.Second))
	if err != nil {
		panic(err)
	}
	fmt.Println("finish:", st.State, "exit", *st.ExitCode, "ran", st.FinishedAt.Sub(st.StartedAt), "final event", st.FinalSeq)

	// The same request delivered again: nothing to do, nothing to write.
	d = jobs.Claim(st, false, jobs.Claimant{Worker: "w2", Session: "w2-0f0e0d0c0b0a"}, t0.Add(time.Minute))
	fmt.Println("again:", d.Verdict, "write", d.Write)

	// Only the holder may change a running job; nobody may change an ended one.
	_, err = jobs.Finish(st, w.Session, st.Attempt, jobs.Ending{ExitCode: 1}, 4, t0.Add(time.Minute))
	fmt.Println("finish again:", errors.Is(err, jobs.ErrNotHolder))

	// Output:
	// claim: run running attempt 1 by w1 write true
	// finish: succeeded exit 0 ran 3s final event 3
	// again: over write false
	// finish again: true
}

// A cancel: the job's own principal or an admin may; anyone else is
// refused. A running job is marked, and its worker stops it.
func ExampleCancel() {
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	req := schema.Request{Version: schema.Version, ID: "job-2", Command: "core.sleep",
		Queue: "default", Principal: "alice", CreatedAt: t0}
	w := jobs.Claimant{Worker: "w1", Session: "w1-0a0b0c0d0e0f"}
	running := jobs.Claim(jobs.Queued(req), false, w, t0).State

	_, outcome, write := jobs.Cancel(running, "mallory", false, t0)
	fmt.Println(outcome, write, "-", jobs.RefusalReason(running, "mallory"))

	st, outcome, write := jobs.Cancel(running, "alice", false, t0)
	fmt.Println(outcome, write, st.State, st.CancelRequested)

	st, err := jobs.Finish(st, w.Session, st.Attempt, jobs.Ending{Cancelled: true}, 2, t0.Add(time.Second))
	fmt.Println(st.State, st.Error, err)

	// Output:
	// refused false - mallory may not cancel job job-2 of alice: only its own principal or one with the "admin" role may
	// stopping true running true
	// cancelled cancelled by alice <nil>
}
