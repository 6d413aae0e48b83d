package jobs_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/winchhq/winch/broker"
	"github.com/winchhq/winch/internal/testenv"
)

// natsURL is the embedded server that the store, session and event tests
// use, with winch's streams and buckets; each test has jobs and sessions of
// its own. testenv.WithNATS fails the run for any goroutine left (goleak).
var natsURL string

// testTopology is what TestMain ensures.
var testTopology = broker.Topology{AckWait: 2 * time.Second}

func TestMain(m *testing.M) {
	os.Exit(testenv.WithNATS(func(_, url string) int {
		natsURL = url
		if err := ensureTopology(url); err != nil {
			fmt.Fprintln(os.Stderr, "ensure topology:", err)
			return 1
		}
		return m.Run()
	}))
}

func ensureTopology(url string) error {
	nc, err := nats.Connect(url)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err = broker.Ensure(ctx, js, testTopology)
	return err
}

// connect gives the test a connection of its own, closed when it ends.
func connect(t *testing.T, url string, opts ...jetstream.JetStreamOpt) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func bucket(t *testing.T, js jetstream.JetStream, name string) jetstream.KeyValue {
	t.Helper()
	kv, err := js.KeyValue(testContext(t), name)
	if err != nil {
		t.Fatal(err)
	}
	return kv
}
