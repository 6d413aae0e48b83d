package notify_test

import (
	"os"
	"testing"
	"time"

	"github.com/winchhq/winch/internal/jobtest"
	"github.com/winchhq/winch/internal/testenv"
	"github.com/winchhq/winch/modules"
	"github.com/winchhq/winch/worker"
	"github.com/winchhq/winch/worker/process"
)

// Each test starts a NATS server of its own (a notifier takes every job's
// end, so tests sharing a server would deliver each other's); the package's
// server only makes WithNATS check for leaked goroutines.
func TestMain(m *testing.M) {
	jobtest.ChildMain(func(cfg *worker.Config) {
		cfg.Catalog = testCatalog(nil)
		cfg.Executor = &process.Executor{KillGrace: 200 * time.Millisecond}
	})
	os.Exit(testenv.WithNATS(func(_, _ string) int { return m.Run() }))
}

// testCatalog is core and a module "nightly" with a command that may not
// run twice (once), and, with manifestNotify, one whose manifest asks for
// notifications (fail).
func testCatalog(extra *modules.Manifest) *modules.Catalog {
	once, err := modules.ParseManifest("winch.yaml", []byte("module: nightly\ncommands:\n  once:\n    run: [sleep, '60']\n    retry: false\n"))
	if err != nil {
		panic(err)
	}
	if extra != nil {
		for name, c := range extra.Commands {
			once.Commands[name] = c
		}
	}
	c, err := modules.NewCatalog(modules.Core(), once)
	if err != nil {
		panic(err)
	}
	return c
}
