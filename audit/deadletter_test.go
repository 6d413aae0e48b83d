package audit_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/winchhq/winch/audit"
	"github.com/winchhq/winch/internal/jobtest"
	"github.com/winchhq/winch/internal/testenv"
	"github.com/winchhq/winch/metrics"
	"github.com/winchhq/winch/schema"
)

// An event the audit store cannot hold (its time is past the end of
// ClickHouse's DateTime, which the driver would silently wrap to another
// date) and an undecodable message sit among good events in one batch: the
// good ones are stored, the two bad ones are dead letters with their raw
// message and the refusal, the metric and the log say so, and the sink goes
// on with what comes next.
func TestSinkDeadLettersWhatClickHouseRefuses(t *testing.T) {
	t.Parallel()
	s := store(t, nil)
	e := newEnv(t)
	ctx := t.Context()
	stamp := time.Now().UnixNano()
	id := func(name string) string { return fmt.Sprintf("dl%d%s", stamp, name) }
	good, bad, garbled, later := id("good"), id("bad"), id("garbled"), id("later")

	publish := func(job string, kind schema.Kind, data []byte) {
		t.Helper()
		if _, err := e.JS.Publish(ctx, "winch.events."+job+"."+string(kind), data); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Now().UTC().Truncate(time.Second)
	var goodEvents []schema.Event
	for i, ev := range job(good, "alice", "core.echo", "default", now, schema.StateSucceeded, 0, "fine") {
		goodEvents = append(goodEvents, ev)
		publish(good, ev.Kind, encode(t, ev))
		if i == 1 { // the bad ones in the middle of the batch
			badEv := event(bad, 1, time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC), schema.KindLog, func(ev *schema.Event) { ev.Stream, ev.Data = schema.Stdout, "from the future" })
			publish(bad, badEv.Kind, encode(t, badEv))
			publish(garbled, schema.KindLog, []byte(`{"job_id": 12, "kind": "log"`))
		}
	}

	var logs testenv.LockedBuffer
	reg := prometheus.NewRegistry()
	sink, err := audit.NewSink(e.NC, s, audit.SinkConfig{Consumer: fmt.Sprintf("dead-%d", stamp), MaxWait: 500 * time.Millisecond,
		AckWait: 2 * time.Second, Logger: slog.New(slog.NewTextHandler(&logs, nil)), Metrics: metrics.NewSink(reg),
		FilterSubjects: []string{"winch.events." + good + ".>", "winch.events." + bad + ".>", "winch.events." + garbled + ".>", "winch.events." + later + ".>"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := sink.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sink.Stop(context.Background()) })

	waitStored(t, s, []string{good}, uint64(len(goodEvents)), 30*time.Second)
	var letters []audit.DeadLetter
	if !jobtest.Eventually(30*time.Second, func() bool {
		letters, err = s.DeadLetters(ctx, bad, garbled)
		return err == nil && len(letters) == 2
	}) {
		t.Fatalf("dead letters %+v (err %v), want the bad event and the garbled one\nsink log:\n%s", letters, err, logs.String())
	}
	for _, d := range letters {
		switch d.JobID {
		case bad:
			if !strings.Contains(d.Error, "time 2200-01-01T00:00:00Z does not fit") || !strings.Contains(d.Event, "from the future") || d.StreamSeq == 0 {
				t.Errorf("dead letter of the bad event: %+v", d)
			}
		case garbled:
			if !strings.Contains(d.Error, "decode event") || d.Event != `{"job_id": 12, "kind": "log"` {
				t.Errorf("dead letter of the garbled message: %+v", d)
			}
		}
	}
	if n, err := s.CountEvents(ctx, bad, garbled); err != nil || n != 0 {
		t.Fatalf("%d events of the refused jobs stored (err %v), want none", n, err)
	}

	// The sink goes on.
	next := event(later, 1, now, schema.KindAccepted, func(ev *schema.Event) { ev.State, ev.Command = schema.StateRunning, "core.echo" })
	publish(later, next.Kind, encode(t, next))
	waitStored(t, s, []string{later}, 1, 30*time.Second)

	if got := counter(t, reg, "winch_sink_dead_letters_total"); got != 2 {
		t.Errorf("winch_sink_dead_letters_total = %v, want 2", got)
	}
	if log := logs.String(); strings.Count(log, "kept in dead_letters") != 2 || !strings.Contains(log, "job="+bad) {
		t.Errorf("the sink's log does not name both dead letters:\n%s", log)
	}
}

func encode(t *testing.T, ev schema.Event) []byte {
	t.Helper()
	data, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func counter(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == name {
			var sum float64
			for _, m := range f.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
			return sum
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

// Which failures are the rows' (give up on them: dead letters) and which
// are ClickHouse's or the network's (retry): errors from a real server.
func TestRefusalsToldFromOutages(t *testing.T) {
	t.Parallel()
	conn := raw(t, nil)
	closed, err := clickhouse.Open(&clickhouse.Options{Addr: []string{"127.0.0.1:1"}, DialTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closed.Close() })
	for _, tc := range []struct {
		name    string
		conn    func() error
		refused bool
	}{
		{"a value that does not parse as its type", func() error { return conn.Exec(t.Context(), "SELECT toDateTime('not a time')") }, true},
		{"a check that throws", func() error { return conn.Exec(t.Context(), "SELECT throwIf(1)") }, true},
		{"arrays of different sizes", func() error { return conn.Exec(t.Context(), "SELECT arrayMap((x, y) -> x, [1], [1, 2])") }, true},
		{"a table that is not there", func() error { return conn.Exec(t.Context(), "INSERT INTO nosuchdb.events VALUES (1)") }, false},
		{"a server that does not answer", func() error { return closed.Ping(t.Context()) }, false},
		{"a timeout", func() error {
			ctx, cancel := context.WithTimeout(t.Context(), time.Millisecond)
			defer cancel()
			return conn.Exec(ctx, "SELECT sleep(1)")
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.conn()
			if err == nil {
				t.Fatal("no error")
			}
			if got := errors.Is(audit.Refusal(err), audit.ErrRefused); got != tc.refused {
				t.Fatalf("refused = %v, want %v, for %v", got, tc.refused, err)
			}
		})
	}
}
