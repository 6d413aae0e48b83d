package worker_test

import (
	"context"
	"os"
	"testing"
	"time"

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
	testenv.ServerChildMain()
	jobtest.ChildMain(func(cfg *worker.Config) {
		withDefaults(cfg)
		if os.Getenv("WINCH_TEST_HANG") != "" {
			cfg.Executor = hangExecutor{}
		}
	})
	os.Exit(testenv.WithNATS(func(_, url string) int {
		natsURL = url
		return m.Run()
	}))
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

func testCatalog() *modules.Catalog { return jobtest.Catalog("testdata/winch.yaml") }

// hangExecutor never starts the command: a worker that dies while it holds
// a claimed job that has not started yet.
type hangExecutor struct{}

func (hangExecutor) Name() string { return "hang" }
func (hangExecutor) Run(ctx context.Context, _ *worker.Job) (worker.Outcome, error) {
	<-ctx.Done()
	return worker.Outcome{}, ctx.Err()
}
