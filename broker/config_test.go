package broker_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/winchhq/winch/broker"
)

// The shipped nats.conf loads, and with it the broker, not the payload,
// vouches for who publishes a request: alice can publish only as alice.
func TestShippedConfigTiesRequestsToTheirUser(t *testing.T) {
	t.Setenv("WINCH_NATS_WORKER_PASSWORD", "worker-pw")
	t.Setenv("WINCH_NATS_ALICE_PASSWORD", "alice-pw")
	srv, err := broker.NewServer(broker.ServerConfig{ConfigFile: "../nats.conf", ListenURL: "nats://127.0.0.1:0", DataDir: t.TempDir(), NoMonitoring: true})
	if err != nil {
		t.Fatalf("nats.conf: %v", err)
	}
	if err := srv.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()
	connectAs := func(user, pw string) (*nats.Conn, jetstream.JetStream, error) {
		nc, err := nats.Connect(srv.ClientURL(), nats.UserInfo(user, pw))
		if err != nil {
			return nil, nil, err
		}
		js, err := jetstream.New(nc)
		return nc, js, err
	}
	if _, _, err := connectAs("alice", "wrong"); err == nil {
		t.Fatal("a wrong password was accepted")
	}
	wnc, wjs, err := connectAs("worker", "worker-pw")
	if err != nil {
		t.Fatal(err)
	}
	defer wnc.Close()
	if err := broker.Ensure(t.Context(), wjs, broker.Topology{}); err != nil {
		t.Fatalf("the worker user cannot create the topology: %v", err)
	}
	anc, ajs, err := connectAs("alice", "alice-pw")
	if err != nil {
		t.Fatal(err)
	}
	defer anc.Close()
	if _, err := ajs.Publish(t.Context(), broker.JobSubject("default", "alice"), []byte("{}")); err != nil {
		t.Fatalf("alice cannot publish as alice: %v", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	defer cancel()
	if _, err := ajs.Publish(ctx, broker.JobSubject("default", "bob"), []byte("{}")); err == nil {
		t.Fatal("alice published a request as bob")
	}
	if err := ajs.DeleteStream(ctx, broker.JobsStream); err == nil {
		t.Fatal("alice deleted the jobs stream")
	}
}
