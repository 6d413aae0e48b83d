package notify_test

import (
	"os"
	"testing"

	"github.com/winchhq/winch/internal/testenv"
)

// Each test starts a NATS server of its own (a notifier takes every job's
// end, so tests sharing a server would deliver each other's); the package's
// server only makes WithNATS check for leaked goroutines.
func TestMain(m *testing.M) {
	os.Exit(testenv.WithNATS(func(_, _ string) int { return m.Run() }))
}
