package gateway

import (
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/winchhq/winch/audit"
	"github.com/winchhq/winch/schema"
)

// noAudit answers a request for history when no audit store is set.
func (s *Server) noAudit(w http.ResponseWriter) bool {
	if s.cfg.Audit != nil {
		return false
	}
	problem(w, http.StatusServiceUnavailable, "the audit store is not configured: start the gateway with WINCH_CLICKHOUSE_DSN set")
	return true
}

// auditQuery are the query parameters of GET /v1/audit/jobs: the flags of
// `winch audit`.
var auditQuery = []string{"principal", "command", "module", "queue", "schedule", "parent", "status", "job", "since", "until", "grep", "limit"}

// auditFilter reads the filters of `winch audit` from the query, with its
// defaults (since 7d, limit 50). A principal without the auditor or admin
// role reads only its own jobs.
func auditFilter(q map[string][]string, id Identity, now time.Time) (audit.Filter, int, error) {
	get := func(k string) string {
		if v := q[k]; len(v) > 0 {
			return trimmed(v[0])
		}
		return ""
	}
	f := audit.Filter{Principal: get("principal"), Command: get("command"), Module: get("module"), Queue: get("queue"),
		Schedule: get("schedule"), Parent: get("parent"), State: schema.State(get("status")), JobID: get("job"), Grep: get("grep")}
	if f.State != "" && !slices.Contains(allStates, f.State) {
		return f, http.StatusBadRequest, fmt.Errorf("status %q is not one of queued, running, succeeded, failed, cancelled, timed_out, rejected, dead", f.State)
	}
	since := get("since")
	if _, given := q["since"]; !given {
		since = "7d"
	}
	var err error
	if f.Since, err = audit.PointInTime(since, now); err != nil {
		return f, http.StatusBadRequest, fmt.Errorf("since: %w", err)
	}
	if f.Until, err = audit.PointInTime(get("until"), now); err != nil {
		return f, http.StatusBadRequest, fmt.Errorf("until: %w", err)
	}
	if f.Limit, err = parseLimit(get("limit"), 50, 10000); err != nil {
		return f, http.StatusBadRequest, err
	}
	if !canAuditAll(id) {
		if f.Principal != "" && f.Principal != id.Principal {
			return f, http.StatusForbidden, fmt.Errorf("%s may read only its own jobs' history: reading %s's needs the auditor or admin role (in the gateway's tokens)", id.Principal, f.Principal)
		}
		f.Principal = id.Principal
	}
	return f, 0, nil
}

func (s *Server) auditJobs(w http.ResponseWriter, r *http.Request, id Identity) {
	if s.noAudit(w) {
		return
	}
	f, status, err := auditFilter(r.URL.Query(), id, time.Now())
	if err != nil {
		problem(w, status, err.Error())
		return
	}
	jobs, err := s.cfg.Audit.Jobs(r.Context(), f)
	if err != nil {
		s.log.Error("audit query failed", "err", err)
		problem(w, http.StatusServiceUnavailable, "the audit store did not answer: "+err.Error())
		return
	}
	if jobs == nil {
		jobs = []audit.Job{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"jobs": jobs})
}

// AuditedJob is one job from the audit store: `winch audit job JOB`.
type AuditedJob struct {
	Job    *audit.Job     `json:"job"`
	Events []schema.Event `json:"events"`
}

func (s *Server) auditJob(w http.ResponseWriter, r *http.Request, id Identity) {
	if s.noAudit(w) {
		return
	}
	job := r.PathValue("id")
	if !schema.ValidJobID(job) {
		problem(w, http.StatusNotFound, fmt.Sprintf("%q is not a job id", job))
		return
	}
	jobs, err := s.cfg.Audit.Jobs(r.Context(), audit.Filter{JobID: job, Limit: 1})
	if err != nil {
		problem(w, http.StatusServiceUnavailable, "the audit store did not answer: "+err.Error())
		return
	}
	events, err := s.cfg.Audit.Events(r.Context(), job)
	if err != nil {
		problem(w, http.StatusServiceUnavailable, "the audit store did not answer: "+err.Error())
		return
	}
	if len(jobs) == 0 && len(events) == 0 {
		problem(w, http.StatusNotFound, fmt.Sprintf("job %s is not in the audit store (yet: the sink moves events in batches)", job))
		return
	}
	out := AuditedJob{Events: events}
	owner := ""
	if len(jobs) > 0 {
		out.Job = &jobs[0]
		owner = jobs[0].Principal
	} else {
		owner = events[0].Principal
	}
	if !canAuditAll(id) && owner != id.Principal {
		problem(w, http.StatusForbidden, fmt.Sprintf("job %s is %s's: reading another principal's history needs the auditor or admin role", job, owner))
		return
	}
	if out.Events == nil {
		out.Events = []schema.Event{}
	}
	writeJSON(w, http.StatusOK, out)
}

// perMinute counts jobs by minute of creation and state over the last
// hours (default 3, at most 48): from the audit store when there is one,
// else from the job states NATS keeps.
func (s *Server) perMinute(w http.ResponseWriter, r *http.Request, _ Identity) {
	hours := 3
	if h := r.URL.Query().Get("hours"); h != "" {
		n, err := strconv.Atoi(h)
		if err != nil || n < 1 || n > 48 {
			problem(w, http.StatusBadRequest, fmt.Sprintf("hours %q: want a whole number from 1 to 48", h))
			return
		}
		hours = n
	}
	since := time.Now().Add(-time.Duration(hours) * time.Hour).Truncate(time.Minute)
	source := "audit"
	var buckets []audit.Bucket
	if s.cfg.Audit != nil {
		var err error
		if buckets, err = s.cfg.Audit.PerMinute(r.Context(), since); err != nil {
			problem(w, http.StatusServiceUnavailable, "the audit store did not answer: "+err.Error())
			return
		}
	} else {
		source = "nats"
		list, err := s.cfg.Client.List(r.Context())
		if err != nil {
			s.fail(w, err)
			return
		}
		counts := map[audit.Bucket]uint64{}
		for _, st := range list {
			if st.CreatedAt.Before(since) {
				continue
			}
			counts[audit.Bucket{Minute: st.CreatedAt.UTC().Truncate(time.Minute), State: st.State}]++
		}
		for b, n := range counts {
			b.Count = n
			buckets = append(buckets, b)
		}
		slices.SortFunc(buckets, func(a, b audit.Bucket) int {
			if c := a.Minute.Compare(b.Minute); c != 0 {
				return c
			}
			return compareStrings(string(a.State), string(b.State))
		})
	}
	if buckets == nil {
		buckets = []audit.Bucket{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"since": since.UTC(), "source": source, "buckets": buckets})
}

func compareStrings(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
