package audit_test

import (
	"testing"
	"time"

	"github.com/winchhq/winch/internal/jobtest"
	"github.com/winchhq/winch/schema"
	"github.com/winchhq/winch/worker"
)

// The views give one row per job and per event after real jobs, with
// merges stopped so that the tables keep every row they were given: a
// running row then a final row is one row with the final state; an event
// inserted twice (a sink killed before its ack) is one row.
func TestViewsOneRowPerJobAndEvent(t *testing.T) {
	t.Parallel()
	s := store(t, nil)
	conn := raw(t, nil)
	db := s.Database()
	for _, table := range []string{"jobs", "events"} {
		if err := conn.Exec(t.Context(), "SYSTEM STOP MERGES "+db+"."+table); err != nil {
			t.Fatal(err)
		}
	}
	e := newEnv(t)
	e.StartWorker(worker.Config{Concurrency: 2})
	startSink(t, e, s, "")

	slow := e.Submit("core.sleep", map[string]any{"seconds": 2})
	quick := e.Submit("core.exit", map[string]any{"code": 3})
	state := func(id string) (string, uint64) {
		var st string
		var rows uint64
		if err := conn.QueryRow(t.Context(), "SELECT any(state), count() FROM "+db+".jobs_latest WHERE job_id = ?", id).Scan(&st, &rows); err != nil {
			t.Fatal(err)
		}
		return st, rows
	}
	if !jobtest.Eventually(30*time.Second, func() bool { st, _ := state(slow); return st == string(schema.StateRunning) }) {
		t.Fatal("jobs_latest never showed the sleeping job running")
	}
	slowEvents, quickEvents := e.Follow(slow), e.Follow(quick)
	waitStored(t, s, []string{slow, quick}, uint64(len(slowEvents)+len(quickEvents)), 30*time.Second)

	for _, tc := range []struct {
		job  string
		want schema.State
		code int32
	}{{slow, schema.StateSucceeded, 0}, {quick, schema.StateFailed, 3}} {
		if n := count(t, conn, "SELECT count() FROM "+db+".jobs WHERE job_id = ?", tc.job); n != 2 {
			t.Fatalf("job %s has %d rows in jobs, want its running and final rows (merges stopped)", tc.job, n)
		}
		var st, command, parent string
		var code int32
		var params []string
		var rows uint64
		if err := conn.QueryRow(t.Context(), "SELECT any(state), any(command), any(exit_code), any(param_names), any(parent_id), count() FROM "+db+".jobs_latest WHERE job_id = ?", tc.job).
			Scan(&st, &command, &code, &params, &parent, &rows); err != nil {
			t.Fatal(err)
		}
		if rows != 1 || st != string(tc.want) || code != tc.code || command == "" || len(params) != 1 || parent != "" {
			t.Errorf("jobs_latest for %s: %d rows, state %s, command %q, exit %d, params %v; want 1 row, %s, exit %d", tc.job, rows, st, command, code, params, tc.want, tc.code)
		}
	}

	// The same events again, as a sink killed between insert and ack does.
	again, err := s.Events(t.Context(), slow)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Insert(t.Context(), again); err != nil {
		t.Fatal(err)
	}
	if n := count(t, conn, "SELECT count() FROM "+db+".events WHERE job_id = ?", slow); n != uint64(2*len(slowEvents)) {
		t.Fatalf("events has %d rows of the job after the second insert, want %d (merges stopped)", n, 2*len(slowEvents))
	}
	if n := count(t, conn, "SELECT count() FROM "+db+".events_unique WHERE job_id = ?", slow); n != uint64(len(slowEvents)) {
		t.Errorf("events_unique has %d rows of the job, want %d", n, len(slowEvents))
	}
	if n := count(t, conn, "SELECT count() FROM "+db+".jobs_latest WHERE job_id = ?", slow); n != 1 {
		t.Errorf("jobs_latest has %d rows of the job after its rows were inserted twice, want 1", n)
	}
}
