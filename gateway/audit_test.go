package gateway_test

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/winchhq/winch/gateway"
	"github.com/winchhq/winch/internal/jobtest"
	"github.com/winchhq/winch/schema"
)

type auditList struct {
	Jobs []struct {
		JobID     string       `json:"job_id"`
		State     schema.State `json:"state"`
		Principal string       `json:"principal"`
		Command   string       `json:"command"`
		Reason    string       `json:"reason"`
	} `json:"jobs"`
}

// sorted is the ids in order of their names, to compare as a set.
func (l auditList) sorted() string {
	var ids []string
	for _, j := range l.Jobs {
		ids = append(ids, j.JobID)
	}
	return sorted(ids...)
}

func sorted(ids ...string) string {
	ids = slices.Clone(ids)
	slices.Sort(ids)
	return strings.Join(ids, ",")
}

func (l auditList) ids() string {
	var out []string
	for _, j := range l.Jobs {
		out = append(out, j.JobID)
	}
	return strings.Join(out, ",")
}

// The audit routes answer `winch audit`'s questions from ClickHouse, with
// its filters (a fan-out's children by parent, a schedule's jobs by its
// name); a principal without the auditor or admin role reads only its own
// history. A command refused for want of a role, and a cancel refused, are
// on the record. A filter the route does not know is a 400, not ignored.
func TestAuditRoutes(t *testing.T) {
	t.Parallel()
	f := newFixture(t, options{audit: true})
	q := "&queue=" + f.env.Queue
	alices := f.submit(aliceToken, "gw.form", map[string]any{"name": "zed", "password": "hunter2", "count": 1})
	bobs := f.submit(bobToken, "core.echo", map[string]any{"text": "needle in bob's output"})
	var refused gateway.Problem
	f.must(http.StatusForbidden, "POST", "/v1/jobs", aliceToken, fmt.Sprintf(`{"command":"gw.privileged","queue":%q}`, f.env.Queue), &refused)
	var fan, later gateway.Submitted
	f.must(http.StatusAccepted, "POST", "/v1/jobs", aliceToken,
		fmt.Sprintf(`{"command":"core.echo","each":{"param":"text","values":["x","y"]},"queue":%q}`, f.env.Queue), &fan)
	f.must(http.StatusAccepted, "POST", "/v1/jobs", bobToken,
		fmt.Sprintf(`{"command":"core.echo","params":{"text":"from a schedule"},"in":"1s","queue":%q}`, f.env.Queue), &later)
	sleeper := f.submit(aliceToken, "core.sleep", map[string]any{"seconds": 30})
	f.waitState(sleeper, schema.StateRunning)
	f.must(http.StatusForbidden, "POST", "/v1/jobs/"+sleeper+"/cancel", bobToken, "", nil)
	f.must(http.StatusOK, "POST", "/v1/jobs/"+sleeper+"/cancel?wait=10s", aliceToken, "", nil)
	f.waitState(later.ID, schema.StateSucceeded)
	for _, id := range []string{alices, bobs, refused.JobID, fan.ID, sleeper} {
		f.env.Follow(id)
	}
	children := []string{schema.FanoutChildID(fan.ID, 0), schema.FanoutChildID(fan.ID, 1)}
	all := []string{alices, bobs, refused.JobID, fan.ID, children[0], children[1], later.ID, sleeper}
	var list auditList
	if !jobtest.Eventually(30*time.Second, func() bool {
		f.must(http.StatusOK, "GET", "/v1/audit/jobs?since=1h"+q, adaToken, "", &list)
		// The sink writes a batch's job rows before its events: wait for
		// the output too, which grep searches.
		var grep auditList
		f.must(http.StatusOK, "GET", "/v1/audit/jobs?grep=needle"+q, adaToken, "", &grep)
		for _, j := range list.Jobs {
			if !j.State.Terminal() {
				return false
			}
		}
		return list.sorted() == sorted(all...) && len(grep.Jobs) == 1
	}) {
		t.Fatalf("the audit store has %s, want %s", list.sorted(), sorted(all...))
	}
	for _, tc := range []struct {
		token, query string
		want         []string
	}{
		{adaToken, "?status=rejected" + q, []string{refused.JobID}},
		{adaToken, "?principal=bob" + q, []string{later.ID, bobs}},
		{adaToken, "?grep=needle" + q, []string{bobs}},
		{adaToken, "?command=gw.form" + q, []string{alices}},
		{adaToken, "?module=gw" + q, []string{refused.JobID, alices}},
		{adaToken, "?job=" + alices, []string{alices}},
		{adaToken, "?parent=" + fan.ID, children},
		{adaToken, "?schedule=" + later.Schedule, []string{later.ID}},
		{adaToken, "?since=2000-01-01T00:00:00Z&until=2000-01-02T00:00:00Z" + q, nil},
		{aliceToken, "?status=rejected" + q, []string{refused.JobID}},
		{aliceToken, "?parent=" + fan.ID + q, children},
		{aliceToken, "?principal=alice&status=succeeded&module=gw" + q, []string{alices}},
		{aliceToken, "?schedule=" + later.Schedule, nil},
		{bobToken, "?schedule=" + later.Schedule + q, []string{later.ID}},
		{bobToken, "?grep=needle" + q, []string{bobs}},
		{bobToken, "?command=gw.form" + q, nil},
	} {
		var got auditList
		f.must(http.StatusOK, "GET", "/v1/audit/jobs"+tc.query, tc.token, "", &got)
		if got.sorted() != sorted(tc.want...) {
			t.Errorf("%s as %s: %s, want %s", tc.query, tc.token[:3], got.ids(), sorted(tc.want...))
		}
	}
	// Newest first: the delayed run was made after bob's echo.
	var bobsList auditList
	f.must(http.StatusOK, "GET", "/v1/audit/jobs?principal=bob"+q, adaToken, "", &bobsList)
	if bobsList.ids() != later.ID+","+bobs {
		t.Errorf("bob's jobs in order: %s, want %s,%s", bobsList.ids(), later.ID, bobs)
	}
	// A filter the route does not take, or a name in another case, is a
	// 400 that lists those it does.
	for _, bad := range []string{"?x=1", "?Status=failed", "?parent_id=" + fan.ID} {
		var p gateway.Problem
		f.must(http.StatusBadRequest, "GET", "/v1/audit/jobs"+bad, aliceToken, "", &p)
		name := strings.SplitN(bad[1:], "=", 2)[0]
		if !strings.Contains(p.Detail, fmt.Sprintf("unknown query parameter %q", name)) || !slices.Contains(p.Allowed, "parent") || !slices.Contains(p.Allowed, "schedule") {
			t.Errorf("%s: %+v", bad, p)
		}
	}
	// The refused cancel is among the job's events in the audit store.
	var refusedCancel gateway.AuditedJob
	if !jobtest.Eventually(10*time.Second, func() bool {
		f.must(http.StatusOK, "GET", "/v1/audit/jobs/"+sleeper, adaToken, "", &refusedCancel)
		for _, ev := range refusedCancel.Events {
			if ev.Kind == schema.KindCancelRefused && ev.Principal == "bob" && ev.JobID == sleeper {
				return true
			}
		}
		return false
	}) {
		t.Fatalf("no cancel_refused by bob in the audit of %s: %+v", sleeper, refusedCancel.Events)
	}
	if refusedCancel.Job == nil || refusedCancel.Job.State != schema.StateCancelled {
		t.Fatalf("the sleeper in the audit: %+v", refusedCancel.Job)
	}
	var rej auditList
	f.must(http.StatusOK, "GET", "/v1/audit/jobs?status=rejected"+q, adaToken, "", &rej)
	if rej.Jobs[0].Principal != "alice" || rej.Jobs[0].Command != "gw.privileged" || rej.Jobs[0].Reason != schema.ReasonForbidden {
		t.Fatalf("the refusal on record: %+v", rej.Jobs[0])
	}
	var p gateway.Problem
	f.must(http.StatusForbidden, "GET", "/v1/audit/jobs?principal=alice", bobToken, "", &p)
	if !strings.Contains(p.Detail, "needs the auditor or admin role") {
		t.Fatalf("bob reading alice's history: %+v", p)
	}
	for _, bad := range []string{"?since=yesterday", "?until=-3d", "?status=done", "?limit=0"} {
		f.must(http.StatusBadRequest, "GET", "/v1/audit/jobs"+bad, adaToken, "", nil)
	}
	// One job: parameters with secrets masked, every event.
	var one gateway.AuditedJob
	if !jobtest.Eventually(10*time.Second, func() bool {
		f.must(http.StatusOK, "GET", "/v1/audit/jobs/"+alices, aliceToken, "", &one)
		return len(one.Events) > 0 && one.Events[len(one.Events)-1].Terminal()
	}) {
		t.Fatalf("alice's job in the audit: %+v", one)
	}
	if one.Job == nil || one.Job.Params["password"] == "hunter2" || one.Job.Params["name"] != "zed" {
		t.Fatalf("job: %+v", one.Job)
	}
	for _, ev := range one.Events {
		if strings.Contains(ev.Data, "hunter2") || fmt.Sprint(ev.Params["password"]) == "hunter2" {
			t.Fatalf("a secret in the audit: %+v", ev)
		}
	}
	f.must(http.StatusForbidden, "GET", "/v1/audit/jobs/"+alices, bobToken, "", nil)
	f.must(http.StatusOK, "GET", "/v1/audit/jobs/"+alices, adaToken, "", nil)
	f.must(http.StatusNotFound, "GET", "/v1/audit/jobs/no-such-job", adaToken, "", nil)
	f.must(http.StatusNotFound, "GET", "/v1/audit/jobs/NOT.A.JOB", adaToken, "", nil)
	// The chart's counts, from ClickHouse.
	var per struct {
		Source  string
		Buckets []struct {
			State string
			Count int
		}
	}
	f.must(http.StatusOK, "GET", "/v1/stats/jobs-per-minute?hours=2", aliceToken, "", &per)
	counts := map[string]int{}
	for _, b := range per.Buckets {
		counts[b.State] += b.Count
	}
	if per.Source != "audit" || counts["succeeded"] < 2 || counts["rejected"] < 1 {
		t.Fatalf("per minute: %+v", per)
	}
}
