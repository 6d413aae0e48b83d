// Package testenv starts the real services that winch's tests run against,
// and decides what a test does when one of them is missing: it skips on a
// developer's machine, and fails where WINCH_TEST_REQUIRE names the service
// (CI sets WINCH_TEST_REQUIRE=docker,clickhouse).
package testenv

import (
	"context"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

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
