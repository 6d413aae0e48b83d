package main

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
	"go.uber.org/goleak"

	"github.com/winchhq/winch/broker"
	"github.com/winchhq/winch/internal/testenv"
	"github.com/winchhq/winch/modules"
	"github.com/winchhq/winch/worker"
	"github.com/winchhq/winch/worker/process"
)

// natsURL is the embedded server the scripts talk to; a worker in the test
// process serves its default queue.
var natsURL string

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
	dir, err := os.MkdirTemp("", "winch-cli-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	srv, err := testenv.StartNATS(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "start nats:", err)
		return 1
	}
	natsURL = srv.ClientURL()
	stopWorker, err := startWorker()
	if err != nil {
		fmt.Fprintln(os.Stderr, "start worker:", err)
		srv.Stop()
		return 1
	}
	code := w.m.Run()
	stopWorker()
	srv.Stop()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	return code
}

func startWorker() (func(), error) {
	ctx := context.Background()
	nc, err := broker.Connect(ctx, broker.ConnectConfig{URL: natsURL})
	if err != nil {
		return nil, err
	}
	catalog, err := modules.NewCatalog(modules.Core())
	if err != nil {
		return nil, err
	}
	w, err := worker.New(nc, worker.Config{
		ID: "cli-test-worker", Concurrency: 4, Catalog: catalog,
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
	return func() { _ = w.Stop(ctx); nc.Close() }, nil
}

func TestScripts(t *testing.T) {
	t.Parallel()
	testscript.Run(t, testscript.Params{
		Dir: "testdata/script",
		Setup: func(env *testscript.Env) error {
			env.Setenv("WINCH_NATS_URL", natsURL)
			env.Setenv("WINCH_NATS_URL_SAVED", natsURL)
			env.Setenv("WINCH_PRINCIPAL", "tester")
			env.Setenv("WINCH_LOG_FORMAT", "json")
			return nil
		},
	})
}
