package audit_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/winchhq/winch/audit"
	"github.com/winchhq/winch/broker"
	"github.com/winchhq/winch/internal/jobtest"
	"github.com/winchhq/winch/internal/testenv"
	"github.com/winchhq/winch/metrics"
	"github.com/winchhq/winch/schema"
	"github.com/winchhq/winch/worker"
)

// raw is a plain connection, to look at the tables as they are.
func raw(t *testing.T, c *testenv.ClickHouse) driver.Conn {
	t.Helper()
	if c == nil {
		c = ch
	}
	opts, err := clickhouse.ParseDSN(c.DSN("default"))
	if err != nil {
		t.Fatal(err)
	}
	conn, err := clickhouse.Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func count(t *testing.T, conn driver.Conn, query string, args ...any) uint64 {
	t.Helper()
	var n uint64
	if err := conn.QueryRow(context.Background(), query, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

func TestMigrationsRunTwiceChangeNothing(t *testing.T) {
	t.Parallel()
	s := store(t, nil) // migrated once
	again, err := s.Migrate(t.Context())
	if err != nil || len(again) != 0 {
		t.Fatalf("second Migrate applied %v, %v", again, err)
	}
	conn := raw(t, nil)
	if n := count(t, conn, "SELECT count() FROM system.tables WHERE database = ? AND name IN ('events', 'jobs', 'schema_migrations')", s.Database()); n != 3 {
		t.Fatalf("%d of the 3 tables exist", n)
	}
	all, err := schema.ClickHouseMigrations()
	if err != nil {
		t.Fatal(err)
	}
	if n := count(t, conn, "SELECT uniqExact(version) FROM "+s.Database()+".schema_migrations"); n != uint64(len(all)) {
		t.Fatalf("%d migrations recorded, want %d", n, len(all))
	}
}

func TestSinkStoresEveryEvent(t *testing.T) {
	t.Parallel()
	s := store(t, nil)
	e := newEnv(t)
	e.StartWorker(worker.Config{Concurrency: 4})
	startSink(t, e, s, "")
	ids, want := runJobs(t, e, 20, "core.seq", map[string]any{"count": 30})
	waitStored(t, s, ids, want, 30*time.Second)
	jobs, err := s.Jobs(t.Context(), audit.Filter{Command: "core.seq", Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	byID := map[string]audit.Job{}
	for _, j := range jobs {
		byID[j.JobID] = j
	}
	for _, id := range ids {
		j, ok := byID[id]
		if !ok || j.State != schema.StateSucceeded || j.ExitCode == nil || *j.ExitCode != 0 || j.Principal != "tester" ||
			j.Queue != e.Queue || j.Module != "core" || j.Params["count"] != float64(30) || j.StartedAt.IsZero() || j.FinishedAt.IsZero() {
			t.Fatalf("job %s in the store: %+v", id, j)
		}
	}
	events, err := s.Events(t.Context(), ids[0])
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	for _, ev := range events {
		out.WriteString(ev.Data)
	}
	if !strings.HasPrefix(out.String(), "1\n2\n3\n") || !strings.HasSuffix(out.String(), "29\n30\n") {
		t.Fatalf("output from the store: %q", out.String())
	}
}

// A sink that inserted a batch and died before acknowledging it: the next
// sink inserts it again, and no query shows anything twice.
func TestSinkKilledBetweenInsertAndAck(t *testing.T) {
	t.Parallel()
	s := store(t, nil)
	e := newEnv(t)
	e.StartWorker(worker.Config{})
	ids, want := runJobs(t, e, 5, "core.echo", map[string]any{"text": "twice?"})

	// The first sink: take every event of the jobs from the consumer,
	// insert them exactly as a sink does, and never ack: the kill.
	consumer := fmt.Sprintf("crash-%d", time.Now().UnixNano())
	var filter []string
	for _, id := range ids {
		filter = append(filter, broker.JobEventsFilter(id))
	}
	cons, err := e.JS.CreateOrUpdateConsumer(t.Context(), broker.EventsStream, jetstream.ConsumerConfig{
		Durable: consumer, AckPolicy: jetstream.AckExplicitPolicy, AckWait: 2 * time.Second, MaxDeliver: -1,
		MaxAckPending: 20000, DeliverPolicy: jetstream.DeliverAllPolicy, FilterSubjects: filter,
	})
	if err != nil {
		t.Fatal(err)
	}
	var events []schema.Event
	for uint64(len(events)) < want {
		batch, err := cons.Fetch(int(want)-len(events), jetstream.FetchMaxWait(time.Second))
		if err != nil {
			t.Fatal(err)
		}
		for m := range batch.Messages() {
			ev, err := schema.DecodeEvent(m.Data())
			if err != nil {
				t.Fatal(err)
			}
			events = append(events, ev)
		}
	}
	if err := s.Insert(t.Context(), events); err != nil {
		t.Fatal(err)
	}

	// The restarted sink gets them all again once the ack wait passes.
	startSink(t, e, s, consumer, filter...)
	conn := raw(t, nil)
	if !jobtest.Eventually(30*time.Second, func() bool {
		return count(t, conn, "SELECT count() FROM "+s.Database()+".events WHERE has(?, job_id)", ids) == 2*want
	}) {
		t.Fatalf("the batch was not inserted twice (%d rows)", count(t, conn, "SELECT count() FROM "+s.Database()+".events WHERE has(?, job_id)", ids))
	}
	waitStored(t, s, ids, want, time.Second)
	jobs, err := s.Jobs(t.Context(), audit.Filter{Command: "core.echo", Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, j := range jobs {
		seen[j.JobID]++
	}
	for _, id := range ids {
		if seen[id] != 1 {
			t.Fatalf("winch audit lists job %s %d times", id, seen[id])
		}
		evs, err := s.Events(t.Context(), id)
		if err != nil {
			t.Fatal(err)
		}
		if got := jobtest.Kinds(evs); got != "accepted(running) started log finished(succeeded)" {
			t.Fatalf("audit job %s shows %s", id, got)
		}
	}
}

// ClickHouse down for a while under load: the stream holds the events, the
// sink retries, and everything arrives once it is back.
func TestClickHouseDownUnderLoad(t *testing.T) {
	t.Parallel()
	if chErr != nil {
		testenv.Missing(t, "clickhouse", chErr)
	}
	own, err := testenv.StartClickHouse(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = own.Stop() })
	s := store(t, own)
	e := newEnv(t)
	e.StartWorker(worker.Config{Concurrency: 4})
	reg := prometheus.NewRegistry()
	sink, err := audit.NewSink(e.NC, s, audit.SinkConfig{Consumer: "sink-down-under-load", MaxWait: 200 * time.Millisecond,
		AckWait: 2 * time.Second, Logger: e.Logger(), Metrics: metrics.NewSink(reg)})
	if err != nil {
		t.Fatal(err)
	}
	if err := sink.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sink.Stop(context.Background()) })
	if err := own.Stop(); err != nil {
		t.Fatal(err)
	}
	const down = 30 * time.Second
	var ids []string
	var want uint64
	for began := time.Now(); time.Since(began) < down; {
		batch, n := runJobs(t, e, 4, "core.echo", map[string]any{"text": "while clickhouse is down"})
		ids, want = append(ids, batch...), want+n
	}
	t.Logf("%d jobs, %d events while ClickHouse was down for %v", len(ids), want, down)
	if err := own.Start(); err != nil {
		t.Fatal(err)
	}
	waitStored(t, s, ids, want, 60*time.Second)

	// The sink's metrics say what happened: inserts refused while
	// ClickHouse was down, then every event stored (and more: the sink
	// sees the other tests' events too).
	got := map[string]float64{}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			got[f.GetName()] += m.GetCounter().GetValue() + float64(m.GetHistogram().GetSampleCount())
		}
	}
	if got["winch_sink_insert_failures_total"] < 1 || got["winch_sink_events_stored_total"] < float64(want) || got["winch_sink_insert_seconds"] < 1 {
		t.Fatalf("sink metrics %v: want insert failures, and at least %d events stored", got, want)
	}
}

func TestTwoSinksNeitherLoseNorDuplicate(t *testing.T) {
	t.Parallel()
	s := store(t, nil)
	e := newEnv(t)
	e.StartWorker(worker.Config{Concurrency: 4})
	consumer := fmt.Sprintf("pair-%d", time.Now().UnixNano())
	startSink(t, e, s, consumer)
	startSink(t, e, s, consumer)
	ids, want := runJobs(t, e, 30, "core.echo", map[string]any{"text": "one of two"})
	waitStored(t, s, ids, want, 30*time.Second)
	if n := count(t, raw(t, nil), "SELECT count() FROM "+s.Database()+".events WHERE has(?, job_id)", ids); n != want {
		t.Fatalf("%d rows for %d events: a sink inserted something twice", n, want)
	}
}

func TestSecretsNeverStored(t *testing.T) {
	t.Parallel()
	s := store(t, nil)
	e := newEnv(t)
	e.StartWorker(worker.Config{})
	startSink(t, e, s, "")
	const secret = "hunter2-Very-Secret"
	ids, want := runJobs(t, e, 1, "core.env", map[string]any{"token": secret})
	waitStored(t, s, ids, want, 30*time.Second)
	conn := raw(t, nil)
	for table, cols := range map[string][]string{
		"events": {"job_id", "kind", "state", "stream", "data", "error", "reason", "worker", "command", "principal", "queue", "arrayStringConcat(param_names, ',')", "arrayStringConcat(param_values, ',')", "executor", "image", "commit"},
		"jobs":   {"job_id", "state", "command", "module", "principal", "queue", "worker", "executor", "arrayStringConcat(param_names, ',')", "arrayStringConcat(param_values, ',')", "error", "reason", "commit"},
	} {
		q := "SELECT concat(" + strings.Join(cols, ", '|', ") + ") FROM " + s.Database() + "." + table
		rows, err := conn.Query(t.Context(), q)
		if err != nil {
			t.Fatal(err)
		}
		n, masked := 0, false
		for rows.Next() {
			var line string
			if err := rows.Scan(&line); err != nil {
				t.Fatal(err)
			}
			n++
			if strings.Contains(line, secret) {
				t.Fatalf("the secret is in table %s: %s", table, line)
			}
			masked = masked || strings.Contains(line, `"***"`)
		}
		rows.Close()
		if n == 0 || !masked {
			t.Fatalf("table %s: %d rows, masked value seen: %v", table, n, masked)
		}
	}
}

// event builds a synthetic event for the filter tests.
func event(job string, seq int, at time.Time, kind schema.Kind, mutate func(*schema.Event)) schema.Event {
	ev := schema.Event{JobID: job, Attempt: 1, Seq: seq, Time: at, Kind: kind, Worker: "w1"}
	if mutate != nil {
		mutate(&ev)
	}
	return ev
}

// job builds the events of one finished job.
func job(id, principal, command, queue string, created time.Time, state schema.State, code int, output string) []schema.Event {
	described := func(ev *schema.Event) {
		ev.Command, ev.Principal, ev.Queue, ev.CreatedAt = command, principal, queue, created
	}
	evs := []schema.Event{
		event(id, 1, created.Add(time.Second), schema.KindAccepted, func(ev *schema.Event) { described(ev); ev.State = schema.StateRunning }),
		event(id, 2, created.Add(2*time.Second), schema.KindStarted, nil),
		event(id, 3, created.Add(3*time.Second), schema.KindLog, func(ev *schema.Event) { ev.Stream, ev.Data = schema.Stdout, output }),
	}
	if state == schema.StateRunning {
		return evs
	}
	return append(evs, event(id, 4, created.Add(5*time.Second), schema.KindFinished, func(ev *schema.Event) {
		described(ev)
		ev.State, ev.ExitCode, ev.StartedAt = state, &code, created.Add(2*time.Second)
	}))
}

func TestAuditFilters(t *testing.T) {
	t.Parallel()
	s := store(t, nil)
	now := time.Now().UTC().Truncate(time.Second)
	var all []schema.Event
	for _, evs := range [][]schema.Event{
		job("f1", "alice", "core.echo", "default", now.Add(-2*time.Hour), schema.StateSucceeded, 0, "hello world\n"),
		job("f2", "bob", "core.exit", "default", now.Add(-30*time.Hour), schema.StateFailed, 3, "dial: connection refused\n"),
		job("f3", "alice", "db.backup", "gpu", now.Add(-72*time.Hour), schema.StateFailed, 1, "pg_dump: connection refused by host\n"),
		job("f4", "carol", "core.sleep", "default", now.Add(-10*time.Minute), schema.StateRunning, 0, "zzz\n"),
		job("f5", "alice", "core.echo", "default", now.Add(-1*time.Hour), schema.StateCancelled, 143, "bye\n"),
	} {
		all = append(all, evs...)
	}
	if err := s.Insert(t.Context(), all); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		f    audit.Filter
		want []string
	}{
		{"everything, newest first", audit.Filter{}, []string{"f4", "f5", "f1", "f2", "f3"}},
		{"principal", audit.Filter{Principal: "alice"}, []string{"f5", "f1", "f3"}},
		{"command", audit.Filter{Command: "core.echo"}, []string{"f5", "f1"}},
		{"module", audit.Filter{Module: "db"}, []string{"f3"}},
		{"queue", audit.Filter{Queue: "gpu"}, []string{"f3"}},
		{"status failed", audit.Filter{State: schema.StateFailed}, []string{"f2", "f3"}},
		{"status running", audit.Filter{State: schema.StateRunning}, []string{"f4"}},
		{"job id", audit.Filter{JobID: "f2"}, []string{"f2"}},
		{"since 24h", audit.Filter{Since: now.Add(-24 * time.Hour)}, []string{"f4", "f5", "f1"}},
		{"until 24h ago", audit.Filter{Until: now.Add(-24 * time.Hour)}, []string{"f2", "f3"}},
		{"text in output", audit.Filter{Grep: "connection refused"}, []string{"f2", "f3"}},
		{"text in output, since 48h", audit.Filter{Grep: "connection refused", Since: now.Add(-48 * time.Hour)}, []string{"f2"}},
		{"combined", audit.Filter{Principal: "alice", Command: "core.echo", State: schema.StateSucceeded}, []string{"f1"}},
		{"limit", audit.Filter{Limit: 2}, []string{"f4", "f5"}},
		{"nothing", audit.Filter{Principal: "mallory"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			jobs, err := s.Jobs(t.Context(), tt.f)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, j := range jobs {
				got = append(got, j.JobID)
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}
	// The finished row wins over the accepted one, with everything in it.
	jobs, _ := s.Jobs(t.Context(), audit.Filter{JobID: "f2"})
	if j := jobs[0]; j.State != schema.StateFailed || *j.ExitCode != 3 || j.DurationMS != 3000 || j.Module != "core" || !j.CreatedAt.Equal(now.Add(-30*time.Hour)) {
		t.Fatalf("f2: %+v", j)
	}
}

func TestPruneDropsWholeOldPartitions(t *testing.T) {
	t.Parallel()
	s := store(t, nil)
	now := time.Now().UTC().Truncate(time.Second)
	old := time.Date(now.Year()-1, 1, 15, 12, 0, 0, 0, time.UTC)
	var all []schema.Event
	all = append(all, job("p-old", "alice", "core.echo", "default", old, schema.StateSucceeded, 0, "old\n")...)
	all = append(all, job("p-new", "alice", "core.echo", "default", now.Add(-time.Hour), schema.StateSucceeded, 0, "new\n")...)
	if err := s.Insert(t.Context(), all); err != nil {
		t.Fatal(err)
	}
	dropped, err := s.Prune(t.Context(), now.Add(-90*24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	month := old.Format("200601")
	if !slices.Equal(dropped, []string{"events " + month, "jobs " + month}) {
		t.Fatalf("dropped %v", dropped)
	}
	jobs, err := s.Jobs(t.Context(), audit.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(jobs) != 1 || jobs[0].JobID != "p-new" {
		t.Fatalf("after pruning: %+v", jobs)
	}
	if evs, _ := s.Events(t.Context(), "p-old"); len(evs) != 0 {
		t.Fatalf("events of the pruned job remain: %d", len(evs))
	}
}

// A job's priority and the schedule that made it reach both tables, and
// --schedule finds the jobs of one schedule.
func TestPriorityAndScheduleAreAudited(t *testing.T) {
	t.Parallel()
	s := store(t, nil)
	e := newEnv(t)
	e.StartWorker(worker.Config{})
	startSink(t, e, s, "")
	name := "audited-" + strings.ReplaceAll(e.Queue, "_", "-")
	scheduled := e.Submit("core.true", nil, func(r *schema.Request) { r.Priority, r.Schedule = schema.PriorityHigh, name })
	plain := e.Submit("core.true", nil)
	var events uint64
	for _, id := range []string{scheduled, plain} {
		events += uint64(len(e.Follow(id)))
	}
	waitStored(t, s, []string{scheduled, plain}, events, 30*time.Second)
	jobs, err := s.Jobs(t.Context(), audit.Filter{Schedule: name})
	if err != nil {
		t.Fatal(err)
	}
	if len(jobs) != 1 || jobs[0].JobID != scheduled || jobs[0].Priority != "high" || jobs[0].Schedule != name {
		t.Fatalf("jobs of schedule %s: %+v", name, jobs)
	}
	evs, err := s.Events(t.Context(), scheduled)
	if err != nil || len(evs) == 0 || evs[0].Schedule != name || evs[0].Priority != schema.PriorityHigh {
		t.Fatalf("events: %+v, %v", evs, err)
	}
}

// A fan-out's children carry its id in both tables, and --parent finds
// them.
func TestFanoutChildrenAreAudited(t *testing.T) {
	t.Parallel()
	s := store(t, nil)
	e := newEnv(t)
	e.StartWorker(worker.Config{Concurrency: 3})
	startSink(t, e, s, "")
	parent := e.Submit("core.echo", nil, func(r *schema.Request) {
		r.Each, r.Parallel = &schema.Each{Param: "text", Values: []string{"a", "b", "c"}}, 2
	})
	ids := []string{parent}
	for i := range 3 {
		ids = append(ids, schema.FanoutChildID(parent, i))
	}
	var events uint64
	for _, id := range ids {
		events += uint64(len(e.Follow(id)))
	}
	waitStored(t, s, ids, events, 30*time.Second)
	children, err := s.Jobs(t.Context(), audit.Filter{Parent: parent})
	if err != nil {
		t.Fatal(err)
	}
	if len(children) != 3 {
		t.Fatalf("children of %s: %+v", parent, children)
	}
	for _, c := range children {
		if c.ParentID != parent || c.State != schema.StateSucceeded {
			t.Fatalf("child %+v", c)
		}
	}
	jobs, err := s.Jobs(t.Context(), audit.Filter{JobID: parent})
	if err != nil || len(jobs) != 1 || jobs[0].Executor != "fanout" || jobs[0].State != schema.StateSucceeded || jobs[0].ParentID != "" {
		t.Fatalf("parent: %+v %v", jobs, err)
	}
	evs, err := s.Events(t.Context(), ids[1])
	if err != nil || len(evs) == 0 || evs[0].ParentID != parent {
		t.Fatalf("a child's first event: %+v, %v", evs, err)
	}
}
