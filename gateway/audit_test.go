package gateway_test

import (
	"fmt"
	"net/http"
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

func (l auditList) ids() string {
	var out []string
	for _, j := range l.Jobs {
		out = append(out, j.JobID)
	}
	return strings.Join(out, ",")
}

// The audit routes answer `winch audit`'s questions from ClickHouse, with
// its filters; a principal without the auditor or admin role reads only
// its own history. A command refused for want of a role is on the record.
func TestAuditRoutes(t *testing.T) {
	t.Parallel()
	f := newFixture(t, options{audit: true})
	alices := f.submit(aliceToken, "gw.form", map[string]any{"name": "zed", "password": "hunter2", "count": 1})
	bobs := f.submit(bobToken, "core.echo", map[string]any{"text": "needle in bob's output"})
	var refused gateway.Problem
	f.must(http.StatusForbidden, "POST", "/v1/jobs", aliceToken, fmt.Sprintf(`{"command":"gw.privileged","queue":%q}`, f.env.Queue), &refused)
	for _, id := range []string{alices, bobs, refused.JobID} {
		f.env.Follow(id)
	}
	q := "&queue=" + f.env.Queue
	var list auditList
	if !jobtest.Eventually(30*time.Second, func() bool {
		f.must(http.StatusOK, "GET", "/v1/audit/jobs?since=1h"+q, adaToken, "", &list)
		// The sink writes a batch's job rows before its events: wait for
		// the output too, which grep searches.
		var grep auditList
		f.must(http.StatusOK, "GET", "/v1/audit/jobs?grep=needle"+q, adaToken, "", &grep)
		return len(list.Jobs) == 3 && list.Jobs[0].State.Terminal() && list.Jobs[1].State.Terminal() && list.Jobs[2].State.Terminal() &&
			len(grep.Jobs) == 1
	}) {
		t.Fatalf("the audit store has %+v", list)
	}
	for _, tc := range []struct {
		token, query, want string
	}{
		{adaToken, "?status=rejected" + q, refused.JobID},
		{adaToken, "?principal=bob" + q, bobs},
		{adaToken, "?grep=needle" + q, bobs},
		{adaToken, "?command=gw.form" + q, alices},
		{adaToken, "?module=core" + q, bobs},
		{adaToken, "?job=" + alices, alices},
		{adaToken, "?since=2000-01-01T00:00:00Z&until=2000-01-02T00:00:00Z" + q, ""},
		{aliceToken, "?x=1" + q, refused.JobID + "," + alices},
		{aliceToken, "?principal=alice&status=succeeded" + q, alices},
		{bobToken, "?grep=needle" + q, bobs},
		{bobToken, "?command=gw.form" + q, ""},
	} {
		var got auditList
		f.must(http.StatusOK, "GET", "/v1/audit/jobs"+tc.query, tc.token, "", &got)
		if got.ids() != tc.want {
			t.Errorf("%s as %s: %s, want %s", tc.query, tc.token[:3], got.ids(), tc.want)
		}
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
