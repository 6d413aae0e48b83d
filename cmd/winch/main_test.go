package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rogpeppe/go-internal/testscript"

	"github.com/winchhq/winch/audit"
	"github.com/winchhq/winch/broker"
	"github.com/winchhq/winch/internal/testenv"
	"github.com/winchhq/winch/modules"
	"github.com/winchhq/winch/worker"
	"github.com/winchhq/winch/worker/process"
)

// natsURL is the embedded server the scripts talk to; a worker in the test
// process serves its default queue, and a sink moves events into the tests'
// ClickHouse (clickhouseDSN; chErr says why there is none).
var (
	natsURL       string
	clickhouseDSN string
	chErr         error
)

func TestMain(m *testing.M) {
	if os.Getenv("WINCH_TEST_RUN_MAIN") == "1" {
		main() // a test runs this binary as winch itself
	}
	testscript.Main(withServices{m}, map[string]func(){
		"winch": func() { main() },
	})
}

// withServices starts NATS and a worker around the tests (not around the
// winch commands the scripts run, which are this binary too).
type withServices struct{ m *testing.M }

func (w withServices) Run() int {
	return testenv.WithNATS(func(dir, url string) int {
		natsURL = url
		stopWorker, err := startWorker()
		if err != nil {
			fmt.Fprintln(os.Stderr, "start worker:", err)
			return 1
		}
		defer stopWorker()
		ch, err := testenv.StartClickHouse(filepath.Join(dir, "clickhouse"))
		if err == nil {
			defer ch.Stop()
			clickhouseDSN = ch.DSN("winch_cli")
			var stopSink func()
			if stopSink, err = startSink(); err == nil {
				defer stopSink()
			}
		}
		chErr = err
		return w.m.Run()
	})
}

func startWorker() (func(), error) {
	ctx := context.Background()
	nc, err := broker.Connect(ctx, broker.ConnectConfig{URL: natsURL})
	if err != nil {
		return nil, err
	}
	core, err := modules.NewCatalog(modules.Core())
	if err != nil {
		return nil, err
	}
	js, err := jetstream.New(nc)
	if err == nil {
		_, err = broker.Ensure(ctx, js, broker.Topology{AckWait: 2 * time.Second})
	}
	if err != nil {
		return nil, err
	}
	// The worker resolves module commands through the registry, as
	// `winch worker` does, with a module cache of its own.
	reg, err := newRegistry(ctx, nc)
	if err != nil {
		return nil, err
	}
	cache, err := os.MkdirTemp("", "winch-cli-test-modules-")
	if err != nil {
		return nil, err
	}
	reg.Git.CacheDir = cache
	catalog := &modules.Resolver{Core: core, Registry: reg}
	w, err := worker.New(nc, worker.Config{
		ID: "cli-test-worker", Concurrency: 16, Catalog: catalog,
		Executor: &process.Executor{KillGrace: 500 * time.Millisecond},
		Topology: broker.Topology{AckWait: 2 * time.Second},
	})
	if err == nil {
		err = w.Start(ctx)
	}
	if err != nil {
		nc.Close()
		return nil, err
	}
	return func() { _ = w.Stop(ctx); nc.Close(); os.RemoveAll(cache) }, nil
}

func startSink() (func(), error) {
	ctx := context.Background()
	nc, err := broker.Connect(ctx, broker.ConnectConfig{URL: natsURL})
	if err != nil {
		return nil, err
	}
	store, err := audit.Open(ctx, clickhouseDSN, nil)
	if err != nil {
		nc.Close()
		return nil, err
	}
	sink, err := audit.NewSink(nc, store, audit.SinkConfig{
		MaxWait: 100 * time.Millisecond,
		// Warnings reach the test output: a sink that cannot insert explains
		// the audit tests that would otherwise only time out.
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err == nil {
		err = sink.Start(ctx)
	}
	if err != nil {
		store.Close()
		nc.Close()
		return nil, err
	}
	return func() { _ = sink.Stop(ctx); store.Close(); nc.Close() }, nil
}

func TestScripts(t *testing.T) {
	t.Parallel()
	if chErr != nil && testenv.Required("clickhouse") {
		t.Fatalf("clickhouse is required (WINCH_TEST_REQUIRE) but not available: %v", chErr)
	}
	testscript.Run(t, testscript.Params{
		Dir: "testdata/script",
		Condition: func(cond string) (bool, error) {
			if cond == "clickhouse" {
				return chErr == nil, nil
			}
			return false, fmt.Errorf("unknown condition %q", cond)
		},
		Setup: func(env *testscript.Env) error {
			env.Setenv("WINCH_CLICKHOUSE_DSN", clickhouseDSN)
			env.Setenv("WINCH_NATS_URL", natsURL)
			env.Setenv("WINCH_NATS_URL_SAVED", natsURL)
			env.Setenv("WINCH_PRINCIPAL", "tester")
			env.Setenv("WINCH_LOG_FORMAT", "json")
			return nil
		},
	})
}
