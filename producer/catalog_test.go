package producer_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/winchhq/winch/broker"
)

// A kept catalog is read once, and again after the registry changes.
func TestKeepCatalogFollowsTheRegistry(t *testing.T) {
	c := client(t)
	stop, err := c.KeepCatalog(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	first, err := c.Catalog(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := c.Catalog(t.Context()); again != first {
		t.Fatal("the catalog was read again though the registry did not change")
	}
	js, _ := jetstream.New(connect(t))
	kv, err := js.KeyValue(t.Context(), broker.ModulesBucket)
	if err != nil {
		t.Fatal(err)
	}
	entry, _ := json.Marshal(dbModule(t, "kept"))
	if _, err := kv.Put(t.Context(), "kept", entry); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = kv.Delete(t.Context(), "kept") })
	deadline := time.Now().Add(5 * time.Second)
	for {
		cat, err := c.Catalog(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cat.Lookup("kept.backup"); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a module registered after the catalog was kept never appeared")
		}
		time.Sleep(20 * time.Millisecond)
	}
	stop()
	// Stopped: every call reads the registry.
	a, _ := c.Catalog(t.Context())
	b, _ := c.Catalog(t.Context())
	if a == b {
		t.Fatal("the catalog is still kept after stop")
	}
}
