package worker_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/winchhq/winch/internal/jobtest"
	"github.com/winchhq/winch/internal/testenv"
	"github.com/winchhq/winch/modules"
	"github.com/winchhq/winch/worker"
	"github.com/winchhq/winch/worker/process"
)

// natsURL is the embedded server that every test of this package uses; each
// test has queues of its own.
var natsURL string

func TestMain(m *testing.M) {
	jobtest.ChildMain(func(cfg *worker.Config) {
		withDefaults(cfg)
		if os.Getenv("WINCH_TEST_HANG") != "" {
			cfg.Executor = hangExecutor{}
		}
	})
	dir, err := os.MkdirTemp("", "winch-worker-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	srv, err := testenv.StartNATS(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "start nats:", err)
		os.Exit(1)
	}
	natsURL = srv.ClientURL()
	code := m.Run()
	srv.Stop()
	os.RemoveAll(dir)
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

func newEnv(t *testing.T) *jobtest.Env { return jobtest.New(t, natsURL, withDefaults) }

// withDefaults runs the test module and core with the process executor.
func withDefaults(cfg *worker.Config) {
	if cfg.Catalog == nil {
		cfg.Catalog = testCatalog()
	}
	if cfg.Executor == nil {
		cfg.Executor = &process.Executor{KillGrace: 500 * time.Millisecond}
	}
}

func testCatalog() *modules.Catalog {
	data, err := os.ReadFile("testdata/winch.yaml")
	if err != nil {
		panic(err)
	}
	m, err := modules.ParseManifest("testdata/winch.yaml", data)
	if err != nil {
		panic(err)
	}
	c, err := modules.NewCatalog(modules.Core(), m)
	if err != nil {
		panic(err)
	}
	return c
}

// hangExecutor never starts the command: a worker that dies while it holds
// a claimed job that has not started yet.
type hangExecutor struct{}

func (hangExecutor) Name() string { return "hang" }
func (hangExecutor) Run(ctx context.Context, _ *worker.Job) (worker.Outcome, error) {
	<-ctx.Done()
	return worker.Outcome{}, ctx.Err()
}
