package broker_test

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/winchhq/winch/broker"
	"github.com/winchhq/winch/internal/testenv"
)

// A state bucket made before the index of active jobs takes no per-message
// TTL; Ensure (winch broker, dev, init, a worker's start) updates it in
// place, keeping its entries, so that ended jobs' index keys can leave with
// a marker that expires.
func TestEnsureGivesAnOldStateBucketMessageTTLs(t *testing.T) {
	srv, err := testenv.StartNATS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()
	js := connect(t, srv.ClientURL())
	ctx := t.Context()
	old, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: broker.StateBucket, Description: "the latest state of each winch job",
		History: 1, TTL: 30 * 24 * time.Hour, Storage: jetstream.FileStorage})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := old.Put(ctx, "job-before", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := broker.Ensure(ctx, js, broker.Topology{}); err != nil {
		t.Fatal(err)
	}
	s, err := js.Stream(ctx, "KV_"+broker.StateBucket)
	if err != nil {
		t.Fatal(err)
	}
	if cfg := s.CachedInfo().Config; !cfg.AllowMsgTTL || cfg.SubjectDeleteMarkerTTL != broker.StateMarkerTTL {
		t.Fatalf("after Ensure the state bucket has AllowMsgTTL %v, marker TTL %v; want true, %v", cfg.AllowMsgTTL, cfg.SubjectDeleteMarkerTTL, broker.StateMarkerTTL)
	}
	kv, err := js.KeyValue(ctx, broker.StateBucket)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Get(ctx, "job-before"); err != nil {
		t.Fatalf("an entry from before the update: %v", err)
	}
	if _, err := kv.Put(ctx, "active.job-after", []byte("default")); err != nil {
		t.Fatal(err)
	}
	if err := kv.Purge(ctx, "active.job-after", jetstream.PurgeTTL(time.Second)); err != nil {
		t.Fatalf("a purge marker with a TTL after the update: %v", err)
	}
}
