package audit_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/winchhq/winch/audit"
	"github.com/winchhq/winch/internal/jobtest"
	"github.com/winchhq/winch/internal/testenv"
	"github.com/winchhq/winch/modules"
	"github.com/winchhq/winch/worker"
	"github.com/winchhq/winch/worker/process"
)

var (
	natsURL string
	// ch is the tests' ClickHouse; chErr says why there is none.
	ch    *testenv.ClickHouse
	chErr error
)

func TestMain(m *testing.M) {
	os.Exit(testenv.WithNATSAndClickHouse(func(url string, c *testenv.ClickHouse, err error) int {
		natsURL, ch, chErr = url, c, err
		return m.Run()
	}))
}

var dbSeq atomic.Int64

// store opens the audit store in a database of the test's own on server c
// (the shared one when nil), migrated.
func store(t *testing.T, c *testenv.ClickHouse) *audit.Store {
	t.Helper()
	if chErr != nil {
		testenv.Missing(t, "clickhouse", chErr)
	}
	if c == nil {
		c = ch
	}
	db := fmt.Sprintf("t%d_%s", dbSeq.Add(1), strings.ToLower(strings.NewReplacer("/", "_", " ", "_", "-", "_").Replace(t.Name())))
	s, err := audit.Open(t.Context(), c.DSN(db[:min(len(db), 60)]), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if _, err := s.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	return s
}

func newEnv(t *testing.T) *jobtest.Env {
	return jobtest.New(t, natsURL, func(cfg *worker.Config) {
		if cfg.Catalog == nil {
			cfg.Catalog, _ = modules.NewCatalog(modules.Core())
		}
		if cfg.Executor == nil {
			cfg.Executor = &process.Executor{}
		}
	})
}

var consumerSeq atomic.Int64

// startSink runs a sink into s on a consumer of the test's own (or the one
// named), stopped when the test ends.
func startSink(t *testing.T, e *jobtest.Env, s *audit.Store, consumer string, filter ...string) *audit.Sink {
	t.Helper()
	if consumer == "" {
		consumer = fmt.Sprintf("sink-test-%d", consumerSeq.Add(1))
	}
	sink, err := audit.NewSink(e.NC, s, audit.SinkConfig{Consumer: consumer, MaxWait: 200 * time.Millisecond, AckWait: 2 * time.Second,
		Logger: e.Logger(), FilterSubjects: filter})
	if err != nil {
		t.Fatal(err)
	}
	if err := sink.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sink.Stop(context.Background()) })
	return sink
}

// runJobs runs n jobs of command to their end and returns their ids and
// how many events they had in all.
func runJobs(t *testing.T, e *jobtest.Env, n int, command string, params map[string]any) ([]string, uint64) {
	t.Helper()
	var ids []string
	for range n {
		ids = append(ids, e.Submit(command, params))
	}
	var events uint64
	for _, id := range ids {
		events += uint64(len(e.Follow(id)))
	}
	return ids, events
}

// waitStored waits until the store has want distinct events of the jobs.
func waitStored(t *testing.T, s *audit.Store, ids []string, want uint64, timeout time.Duration) {
	t.Helper()
	var got uint64
	ok := jobtest.Eventually(timeout, func() bool {
		n, err := s.CountEvents(t.Context(), ids...)
		got = n
		return err == nil && n == want
	})
	if !ok {
		t.Fatalf("the store has %d events of the jobs, want %d", got, want)
	}
}
