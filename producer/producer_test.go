package producer_test

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/winchhq/winch/broker"
	"github.com/winchhq/winch/internal/testenv"
	"github.com/winchhq/winch/producer"
	"github.com/winchhq/winch/schema"
)

var natsURL string

func TestMain(m *testing.M) {
	testenv.ServerChildMain()
	os.Exit(testenv.WithNATS(func(_, url string) int {
		natsURL = url
		return m.Run()
	}))
}

func connect(t *testing.T) *nats.Conn {
	t.Helper()
	nc, err := broker.Connect(t.Context(), broker.ConnectConfig{URL: natsURL})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

func client(t *testing.T) *producer.Client {
	t.Helper()
	nc := connect(t)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := broker.Ensure(t.Context(), js, broker.Topology{}); err != nil {
		t.Fatal(err)
	}
	c, err := producer.New(t.Context(), nc, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestSubmitFillsDefaultsAndRecordsQueued(t *testing.T) {
	c := client(t)
	sub, err := c.Submit(t.Context(), schema.Request{Command: "core.echo", Params: map[string]any{"text": "x"}, Principal: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	r := sub.Request
	if !schema.ValidJobID(r.ID) || r.Queue != schema.DefaultQueue || r.Version != schema.Version || r.CreatedAt.IsZero() || sub.Duplicate {
		t.Fatalf("submitted %+v", sub)
	}
	st, err := c.Status(t.Context(), r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if st.State != schema.StateQueued || st.Command != "core.echo" || st.Principal != "alice" {
		t.Fatalf("state %+v", st)
	}
	jobs, err := c.List(t.Context(), schema.StateQueued)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, j := range jobs {
		found = found || j.JobID == r.ID
	}
	if !found {
		t.Fatalf("List(queued) does not list %s", r.ID)
	}
}

func TestIdempotencyKeyNamesOneJob(t *testing.T) {
	c := client(t)
	req := schema.Request{Command: "core.echo", Principal: "alice", IdempotencyKey: "rotate-2026-11"}
	a, err := c.Submit(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.Submit(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	if a.Request.ID != b.Request.ID || !b.Duplicate {
		t.Fatalf("same key: %s then %s (duplicate %v)", a.Request.ID, b.Request.ID, b.Duplicate)
	}
}

func TestSubmitRejectsBadRequests(t *testing.T) {
	c := client(t)
	for name, req := range map[string]schema.Request{
		"no principal": {Command: "core.echo"},
		"bad queue":    {Command: "core.echo", Principal: "alice", Queue: "a.b"},
		"bad command":  {Command: "echo", Principal: "alice"},
	} {
		var reqErr *schema.RequestError
		if _, err := c.Submit(t.Context(), req); !errors.As(err, &reqErr) {
			t.Errorf("%s: Submit returned %v", name, err)
		}
	}
}

func TestUnknownJobs(t *testing.T) {
	c := client(t)
	if _, err := c.Status(t.Context(), "nosuchjob"); !errors.Is(err, producer.ErrNotFound) {
		t.Errorf("Status: %v", err)
	}
	if _, err := c.Cancel(t.Context(), "nosuchjob", "alice"); !errors.Is(err, producer.ErrNotFound) {
		t.Errorf("Cancel: %v", err)
	}
	if _, err := c.Follow(t.Context(), "nosuchjob", producer.Replay, func(schema.Event) error { return nil }); !errors.Is(err, producer.ErrNoEvents) {
		t.Errorf("Follow: %v", err)
	}
	if _, err := c.Status(t.Context(), "../etc"); !errors.Is(err, producer.ErrNotFound) {
		t.Errorf("Status of an invalid id: %v", err)
	}
}

func TestFollowStopsWithItsContext(t *testing.T) {
	c := client(t)
	sub, err := c.Submit(t.Context(), schema.Request{Command: "core.echo", Principal: "alice", Queue: "nobody-serves-this"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := c.Follow(ctx, sub.Request.ID, producer.UntilDone, func(schema.Event) error { return nil }); !errors.Is(err, context.Canceled) {
		t.Fatalf("Follow with a cancelled context: %v", err)
	}
}

func TestNoTopology(t *testing.T) {
	srv := testenv.OwnNATS(t)
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if _, err := producer.New(t.Context(), nc, nil); !errors.Is(err, producer.ErrNoTopology) {
		t.Fatalf("New on a bare server: %v", err)
	}
	// With the state bucket but no requests stream, a submit says so at
	// once rather than waiting out a failover for a stream that is not there.
	js, _ := jetstream.New(nc)
	if _, err := js.CreateKeyValue(t.Context(), jetstream.KeyValueConfig{Bucket: broker.StateBucket}); err != nil {
		t.Fatal(err)
	}
	c, err := producer.New(t.Context(), nc, nil)
	if err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	if _, err := c.Submit(t.Context(), schema.Request{Command: "core.true", Principal: "alice"}); !errors.Is(err, producer.ErrNoTopology) {
		t.Fatalf("Submit without a requests stream: %v", err)
	}
	if took := time.Since(began); took > broker.FailoverWait/2 {
		t.Errorf("Submit without a requests stream took %s: it waited for a failover", took)
	}
}
