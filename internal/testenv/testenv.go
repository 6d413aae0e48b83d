// Package testenv starts the real services that winch's tests run against,
// and decides what a test does when one of them is missing: it skips on a
// developer's machine, and fails where WINCH_TEST_REQUIRE names the service
// (CI sets WINCH_TEST_REQUIRE=docker,clickhouse).
package testenv

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/winchhq/winch/broker"
)

// Required reports whether WINCH_TEST_REQUIRE names service.
func Required(service string) bool {
	return slices.Contains(strings.Split(os.Getenv("WINCH_TEST_REQUIRE"), ","), service)
}

// Missing stops tb because service is not there: a failure when the service
// is required, a skip otherwise.
func Missing(tb testing.TB, service string, why error) {
	tb.Helper()
	if Required(service) {
		tb.Fatalf("%s is required (WINCH_TEST_REQUIRE=%s) but not available: %v", service, os.Getenv("WINCH_TEST_REQUIRE"), why)
	}
	tb.Skipf("%s not available (%v); set WINCH_TEST_REQUIRE=%s to make this a failure", service, why, service)
}

// StartNATS starts an embedded NATS server with JetStream, keeping its
// files in dir, on a free loopback port.
func StartNATS(dir string) (*broker.Server, error) {
	srv, err := broker.NewServer(broker.ServerConfig{DataDir: dir, Name: "winch-test"})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Start(ctx); err != nil {
		return nil, err
	}
	return srv, nil
}

// OwnNATS starts an embedded NATS server of the test's own (a bare one:
// no winch streams), stopped when the test ends, for tests whose server
// must differ from the package's shared one.
func OwnNATS(tb testing.TB) *broker.Server {
	tb.Helper()
	srv, err := StartNATS(tb.TempDir())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(srv.Stop)
	return srv
}

// ClickHouse is a ClickHouse server of the tests' own, started with
// ops/clickhouse.sh in a directory of its own on a free port.
type ClickHouse struct {
	Dir  string
	Port int
}

// DSN is the server's address for winch, with database db.
func (c *ClickHouse) DSN(db string) string {
	return fmt.Sprintf("clickhouse://127.0.0.1:%d/%s", c.Port, db)
}

// StartClickHouse starts a server in dir. It fails when clickhouse-server
// is not installed (ops/clickhouse.sh install, or CI, installs it).
func StartClickHouse(dir string) (*ClickHouse, error) {
	if _, err := exec.LookPath("clickhouse-server"); err != nil {
		return nil, fmt.Errorf("clickhouse-server is not installed (ops/clickhouse.sh install): %w", err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	c := &ClickHouse{Dir: dir, Port: port}
	return c, c.Start()
}

// Start starts the server (again).
func (c *ClickHouse) Start() error { return c.script("start", c.Dir, strconv.Itoa(c.Port)) }

// Stop stops it and waits until it is gone.
func (c *ClickHouse) Stop() error { return c.script("stop", c.Dir) }

func (c *ClickHouse) script(args ...string) error {
	root, err := repoRoot()
	if err != nil {
		return err
	}
	cmd := exec.Command(filepath.Join(root, "ops", "clickhouse.sh"), args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("ops/clickhouse.sh %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return nil
}

// repoRoot is the directory of go.mod above the working directory.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}

// WithNATS runs a package's tests (run) against an embedded NATS server in
// a fresh directory, then stops it, removes the directory and, if the tests
// passed, fails them for any goroutine left running. It returns the exit
// code for TestMain.
func WithNATS(run func(dir, url string) int) int {
	dir, err := os.MkdirTemp("", "winch-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	srv, err := StartNATS(filepath.Join(dir, "nats"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "start nats:", err)
		return 1
	}
	code := run(dir, srv.ClientURL())
	srv.Stop()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	return code
}

// WithNATSAndClickHouse is WithNATS with a ClickHouse of the tests' own
// beside it (started in the same directory, stopped after the tests), or
// the error that says why there is none: the tests that need it call
// Missing with it.
func WithNATSAndClickHouse(run func(url string, ch *ClickHouse, chErr error) int) int {
	return WithNATS(func(dir, url string) int {
		ch, err := StartClickHouse(filepath.Join(dir, "clickhouse"))
		if err == nil {
			defer ch.Stop()
		}
		return run(url, ch, err)
	})
}

// Restartable is an embedded NATS server of a test's own on a fixed port
// and data directory, so that it can be stopped and started again and its
// clients reconnect to it.
type Restartable struct {
	tb  testing.TB
	dir string
	URL string
	srv *broker.Server
}

// RestartableNATS starts a Restartable, stopped when the test ends.
func RestartableNATS(tb testing.TB) *Restartable {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	_ = l.Close()
	r := &Restartable{tb: tb, dir: filepath.Join(tb.TempDir(), "nats"), URL: fmt.Sprintf("nats://127.0.0.1:%d", port)}
	r.start()
	tb.Cleanup(func() {
		if r.srv != nil {
			r.srv.Stop()
		}
	})
	return r
}

func (r *Restartable) start() {
	srv, err := broker.NewServer(broker.ServerConfig{DataDir: r.dir, ListenURL: r.URL, Name: "winch-test"})
	if err != nil {
		r.tb.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Start(ctx); err != nil {
		r.tb.Fatal(err)
	}
	r.srv = srv
}

// Restart stops the server, waits down, and starts it again.
func (r *Restartable) Restart(down time.Duration) {
	r.srv.Stop()
	r.srv = nil
	time.Sleep(down)
	r.start()
}
