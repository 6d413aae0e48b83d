package bench

import (
	"context"

	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/winchhq/winch/audit"
	"github.com/winchhq/winch/broker"
	"github.com/winchhq/winch/internal/testenv"
	"github.com/winchhq/winch/schema"
)

// clickHouse starts a ClickHouse of the benchmark's own.
func clickHouse(b *testing.B) *testenv.ClickHouse {
	b.Helper()
	ch, err := testenv.StartClickHouse(b.TempDir())
	if err != nil {
		b.Skipf("no ClickHouse: %v", err)
	}
	b.Cleanup(func() { _ = ch.Stop() })
	return ch
}

func benchEvent(i int) schema.Event {
	code := 0
	ev := schema.Event{JobID: fmt.Sprintf("job%07d", i/8), Attempt: 1, Seq: i%8 + 1, Time: time.Now().UTC(),
		Kind: schema.KindLog, Stream: schema.Stdout, Data: "a line of output from a command that is about this long\n", Worker: "w1"}
	if i%8 == 7 {
		ev.Kind, ev.State, ev.ExitCode, ev.Data = schema.KindFinished, schema.StateSucceeded, &code, ""
		ev.Command, ev.Principal, ev.Queue = "core.echo", "alice", "default"
		ev.Params = map[string]any{"text": "hello"}
	}
	return ev
}

// migratedStore opens the audit store in database db, migrated, and a
// plain connection to the same server; both close when b ends.
func migratedStore(b *testing.B, ch *testenv.ClickHouse, db string) (*audit.Store, driver.Conn) {
	b.Helper()
	ctx := context.Background()
	store, err := audit.Open(ctx, ch.DSN(db), nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { store.Close() })
	if _, err := store.Migrate(ctx); err != nil {
		b.Fatal(err)
	}
	opts, _ := clickhouse.ParseDSN(ch.DSN("default"))
	conn, err := clickhouse.Open(opts)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { conn.Close() })
	return store, conn
}

// BenchmarkClickHouseBatchInsert is the baseline for the sink: the same rows
// inserted with a plain clickhouse-go batch into the same table, 5000 a batch.
func BenchmarkClickHouseBatchInsert(b *testing.B) {
	ch := clickHouse(b)
	ctx := context.Background()
	_, conn := migratedStore(b, ch, "plain")
	b.ResetTimer()
	for done := 0; done < b.N; {
		batch, err := conn.PrepareBatch(ctx, "INSERT INTO plain.events (job_id, attempt, seq, time, time_ns, kind, state, stream, data, has_exit, exit_code, error, reason, worker, command, principal, queue, param_names, param_values, executor, image)")
		if err != nil {
			b.Fatal(err)
		}
		for i := 0; i < 5000 && done < b.N; i, done = i+1, done+1 {
			ev := benchEvent(done)
			if err := batch.Append(ev.JobID, uint32(1), uint64(ev.Seq), ev.Time, uint64(ev.Time.UnixNano()), string(ev.Kind), string(ev.State),
				string(ev.Stream), ev.Data, uint8(0), int32(0), "", "", ev.Worker, ev.Command, ev.Principal, ev.Queue, []string{}, []string{}, "", ""); err != nil {
				b.Fatal(err)
			}
		}
		if err := batch.Send(); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "rows/s")
}

// winchServer is an embedded server with winch's streams.
func winchServer(b *testing.B) (*nats.Conn, jetstream.JetStream) {
	b.Helper()
	nc := server(b)
	js, err := jetstream.New(nc)
	if err == nil {
		_, err = broker.Ensure(context.Background(), js, broker.Topology{})
	}
	if err != nil {
		b.Fatal(err)
	}
	return nc, js
}

// startSink runs a sink with the default settings until b ends.
func startSink(b *testing.B, nc *nats.Conn, store *audit.Store) {
	b.Helper()
	sink, err := audit.NewSink(nc, store, audit.SinkConfig{})
	if err == nil {
		err = sink.Start(context.Background())
	}
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = sink.Stop(context.Background()) })
}

// BenchmarkSinkThroughput publishes b.N events to the events stream, then
// measures how long the sink takes to have them all in ClickHouse.
func BenchmarkSinkThroughput(b *testing.B) {
	ch := clickHouse(b)
	nc, js := winchServer(b)
	ctx := context.Background()
	for i := range b.N {
		data, _ := json.Marshal(benchEvent(i))
		if _, err := js.PublishAsync(broker.EventSubject(fmt.Sprintf("job%07d", i/8), "log"), data); err != nil {
			b.Fatal(err)
		}
	}
	<-js.PublishAsyncComplete()
	store, err := audit.Open(ctx, ch.DSN("sink"), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	b.ResetTimer()
	startSink(b, nc, store)
	for {
		n, err := store.CountEvents(ctx)
		if err == nil && n >= uint64(b.N) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkSinkLag publishes events at a steady 5,000/s for 5 s with the
// sink running, and measures, for a marker event every 100 ms, the time
// from its publish until a query finds it.
func BenchmarkSinkLag(b *testing.B) {
	ch := clickHouse(b)
	nc, js := winchServer(b)
	ctx := context.Background()
	store, err := audit.Open(ctx, ch.DSN("lag"), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	startSink(b, nc, store)
	type marker struct {
		id   string
		sent time.Time
	}
	var lags []time.Duration
	for range b.N {
		markers := make(chan marker, 1000)
		polled := make(chan struct{})
		go func() {
			defer close(polled)
			for m := range markers {
				for {
					if n, err := store.CountEvents(ctx, m.id); err == nil && n > 0 {
						break
					}
					time.Sleep(5 * time.Millisecond)
				}
				lags = append(lags, time.Since(m.sent))
			}
		}()
		began := time.Now()
		for i := 0; time.Since(began) < 5*time.Second; i++ {
			ev := benchEvent(i)
			ev.JobID = fmt.Sprintf("lag%d-%07d", began.UnixNano(), i/8)
			data, _ := json.Marshal(ev)
			if _, err := js.PublishAsync(broker.EventSubject(ev.JobID, "log"), data); err != nil {
				b.Fatal(err)
			}
			if i%500 == 0 {
				markers <- marker{ev.JobID, time.Now()}
			}
			time.Sleep(time.Until(began.Add(time.Duration(i+1) * 200 * time.Microsecond)))
		}
		close(markers)
		<-polled
	}
	sort.Slice(lags, func(i, j int) bool { return lags[i] < lags[j] })
	reportLatency(b, "publish-to-queryable", lags)
}

// BenchmarkAuditQueries fills ClickHouse with 10 million events (1.25
// million jobs) and times the filters of winch audit against it.
func BenchmarkAuditQueries(b *testing.B) {
	ch := clickHouse(b)
	ctx := context.Background()
	store, conn := migratedStore(b, ch, "big")
	const events = 10_000_000
	const perJob = 8
	began := time.Now()
	// Generated by the server: 8 events a job over the last 60 days, 50
	// principals, 20 commands; one job in 1000 says "connection refused".
	fill := strings.NewReplacer("{n}", fmt.Sprint(events), "{per}", fmt.Sprint(perJob)).Replace(`
		INSERT INTO big.events (job_id, attempt, seq, time, time_ns, kind, state, stream, data, has_exit, exit_code, error, reason, worker, command, principal, queue, param_names, param_values, executor, image)
		SELECT concat('j', toString(intDiv(number, {per}))), 1, number % {per} + 1,
			toDateTime(toUInt32(now()) - intDiv(number, {per}) % (60 * 86400)), 0,
			if(number % {per} = {per} - 1, 'finished', 'log'), if(number % {per} = {per} - 1, 'succeeded', ''), 'stdout',
			if(intDiv(number, {per}) % 1000 = 7, 'dial tcp: connection refused', 'a line of ordinary output'),
			0, 0, '', '', 'w1', concat('mod', toString(intDiv(number, {per}) % 20), '.cmd'), concat('user', toString(intDiv(number, {per}) % 50)), 'default', [], [], '', ''
		FROM system.numbers LIMIT {n}`)
	if err := conn.Exec(ctx, fill); err != nil {
		b.Fatal(err)
	}
	jobsFill := strings.NewReplacer("{n}", fmt.Sprint(events/perJob)).Replace(`
		INSERT INTO big.jobs (job_id, version, state, command, module, principal, queue, attempt, worker, executor, param_names, param_values, has_exit, exit_code, error, reason, created_at, started_at, finished_at, duration_ms)
		SELECT concat('j', toString(number)), 1099511627777, if(number % 10 = 3, 'failed', 'succeeded'),
			concat('mod', toString(number % 20), '.cmd'), concat('mod', toString(number % 20)), concat('user', toString(number % 50)), 'default',
			1, 'w1', 'docker', [], [], 1, if(number % 10 = 3, 1, 0), '', '',
			toDateTime(toUInt32(now()) - number % (60 * 86400)), toDateTime(toUInt32(now()) - number % (60 * 86400)), toDateTime(toUInt32(now()) - number % (60 * 86400) + 1), 1000
		FROM system.numbers LIMIT {n}`)
	if err := conn.Exec(ctx, jobsFill); err != nil {
		b.Fatal(err)
	}
	b.Logf("filled %d events and %d jobs in %v", events, events/perJob, time.Since(began))
	now := time.Now()
	for _, q := range []struct {
		name string
		f    audit.Filter
	}{
		{"recent", audit.Filter{Since: now.Add(-7 * 24 * time.Hour)}},
		{"principal", audit.Filter{Principal: "user7", Since: now.Add(-7 * 24 * time.Hour)}},
		{"principal-command-status-24h", audit.Filter{Principal: "user7", Command: "mod7.cmd", State: schema.StateFailed, Since: now.Add(-24 * time.Hour)}},
		{"job", audit.Filter{JobID: "j123456"}},
		{"grep-7d", audit.Filter{Grep: "connection refused", Since: now.Add(-7 * 24 * time.Hour)}},
		{"grep-60d", audit.Filter{Grep: "connection refused", Since: now.Add(-61 * 24 * time.Hour)}},
	} {
		b.Run(q.name, func(b *testing.B) {
			for range b.N {
				if _, err := store.Jobs(ctx, q.f); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("job-events", func(b *testing.B) {
		for range b.N {
			if evs, err := store.Events(ctx, "j123456"); err != nil || len(evs) != perJob {
				b.Fatalf("%d events, %v", len(evs), err)
			}
		}
	})
}
