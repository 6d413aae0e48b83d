package schedule_test

import (
	"os"
	"testing"

	"github.com/winchhq/winch/internal/testenv"
)

// natsURL is the embedded server the tests share (each uses schedules of
// its own); tests that restart a server start their own.
var natsURL string

func TestMain(m *testing.M) {
	os.Exit(testenv.WithNATS(func(_, url string) int {
		natsURL = url
		return m.Run()
	}))
}
