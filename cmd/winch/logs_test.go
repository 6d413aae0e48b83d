package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/winchhq/winch/audit"
	"github.com/winchhq/winch/broker"
	"github.com/winchhq/winch/internal/jobtest"
	"github.com/winchhq/winch/internal/testenv"
)

// winch logs reads a job the events stream no longer has from ClickHouse.
func TestLogsFallBackToTheAuditStore(t *testing.T) {
	t.Parallel()
	if chErr != nil {
		testenv.Missing(t, "clickhouse", chErr)
	}
	env := []string{"WINCH_CLICKHOUSE_DSN=" + clickhouseDSN}
	id := "old-job-" + time.Now().Format("150405.000000")
	id = strings.ReplaceAll(id, ".", "-")
	if out, code := runWinch(t, env, "run", "--id", id, "core.echo", "--text", "from long ago"); code != 0 {
		t.Fatalf("run: %d %s", code, out)
	}
	store, err := audit.Open(t.Context(), clickhouseDSN, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	// The sink shares ClickHouse with every other test of the package: on a
	// busy CI machine a batch can wait behind theirs.
	var n uint64
	if !jobtest.Eventually(90*time.Second, func() bool { n, _ = store.CountEvents(t.Context(), id); return n == 4 }) {
		t.Fatalf("the job's events did not reach ClickHouse: %d of 4 after 90 s", n)
	}
	// Age the job out of the stream.
	nc, err := broker.Connect(t.Context(), broker.ConnectConfig{URL: natsURL})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	s, err := js.Stream(t.Context(), broker.EventsStream)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Purge(context.Background(), jetstream.WithPurgeSubject(broker.JobEventsFilter(id))); err != nil {
		t.Fatal(err)
	}
	out, code := runWinch(t, env, "logs", id)
	if code != 0 || !strings.Contains(out, " stdout    from long ago") || !strings.Contains(out, " finished  succeeded, exit code 0") {
		t.Fatalf("winch logs from the audit store: exit %d\n%s", code, out)
	}
	out, code = runWinch(t, []string{"WINCH_CLICKHOUSE_DSN="}, "logs", id)
	if code != exitUsage || !strings.Contains(out, "set WINCH_CLICKHOUSE_DSN") {
		t.Fatalf("winch logs without a DSN: exit %d\n%s", code, out)
	}
}
