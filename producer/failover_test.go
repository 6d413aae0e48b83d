package producer_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/winchhq/winch/broker"
	"github.com/winchhq/winch/internal/testenv"
	"github.com/winchhq/winch/producer"
	"github.com/winchhq/winch/schema"
)

// A client that starts while the cluster elects a new leader for the state
// bucket (its server was just lost) waits for the new one and submits, as
// `winch run` must: it neither fails nor hangs on the request that went to
// a stream without a leader.
func TestClientStartsDuringAFailover(t *testing.T) {
	c := testenv.StartCluster(t, 3)
	nc, err := nats.Connect(c.URLs())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	if _, err := broker.Ensure(t.Context(), js, broker.Topology{Replicas: 3}); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitCurrent(t.Context(), js, "KV_"+broker.StateBucket); err != nil {
		t.Fatal(err)
	}
	leader, err := c.Leader(t.Context(), js, "KV_"+broker.StateBucket)
	if err != nil || leader < 0 {
		t.Fatalf("leader of the state bucket: %d, %v", leader, err)
	}
	c.Kill(leader)
	began := time.Now()

	// As long as the CLI's own deadline: more than a failover, less than
	// the request that was never answered would wait.
	ctx, cancel := context.WithTimeout(t.Context(), 25*time.Second)
	defer cancel()
	client, err := producer.New(ctx, nc, nil)
	if err != nil {
		t.Fatalf("producer.New during the failover: %v", err)
	}
	if _, err := producer.LoadCatalog(ctx, js); err != nil {
		t.Fatalf("the catalog during the failover: %v", err)
	}
	sub, err := client.Submit(ctx, schema.Request{Command: "core.true", Principal: "tester"})
	if err != nil {
		t.Fatalf("submit during the failover: %v", err)
	}
	if _, err := client.Status(ctx, sub.Request.ID); err != nil {
		t.Fatalf("status during the failover: %v", err)
	}
	t.Logf("a client started and submitted %s after the state bucket's leader was killed", time.Since(began).Round(time.Millisecond))
}
