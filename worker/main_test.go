package worker_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/winchhq/winch/broker"
	"github.com/winchhq/winch/internal/testenv"
	"github.com/winchhq/winch/modules"
	"github.com/winchhq/winch/worker"
	"github.com/winchhq/winch/worker/process"
)

// natsURL is the embedded server that every test of this package uses; each
// test has queues of its own.
var natsURL string

// topology is short-fused so that redeliveries happen within a test.
var topology = broker.Topology{AckWait: 2 * time.Second, MaxDeliver: 3}

func TestMain(m *testing.M) {
	if os.Getenv("WINCH_TEST_CHILD") == "worker" {
		os.Exit(childWorker())
	}
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

// childWorker is a worker in a process of its own, which a test can kill.
func childWorker() int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	nc, err := broker.Connect(ctx, broker.ConnectConfig{URL: os.Getenv("WINCH_NATS_URL"), Logger: log})
	if err != nil {
		log.Error("connect", "err", err)
		return 1
	}
	defer nc.Close()
	var exec worker.Executor = &process.Executor{}
	if os.Getenv("WINCH_TEST_HANG") != "" {
		exec = hangExecutor{}
	}
	w, err := worker.New(nc, worker.Config{
		ID: os.Getenv("WINCH_WORKER_ID"), Queues: []string{os.Getenv("WINCH_QUEUES")},
		Concurrency: 1, Topology: topology, Catalog: testCatalog(), Executor: exec, Logger: log,
	})
	if err == nil {
		err = w.Start(ctx)
	}
	if err != nil {
		log.Error("start", "err", err)
		return 1
	}
	fmt.Println("ready")
	<-ctx.Done()
	_ = w.Stop(context.Background())
	return 0
}
