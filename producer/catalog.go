package producer

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/winchhq/winch/broker"
	"github.com/winchhq/winch/modules"
)

// ErrRegistryUnavailable is returned when the module registry cannot be
// read: without it, a client cannot know the commands it may run.
var ErrRegistryUnavailable = errors.New("module registry unavailable")

// Catalog returns the commands a request may name: the core's and those of
// every module in the registry, at the commit the registry names now.
func (c *Client) Catalog(ctx context.Context) (*modules.Catalog, error) {
	if cat, gen, ok := c.catalog.get(); ok {
		return cat, nil
	} else if cat, err := LoadCatalog(ctx, c.js); err != nil {
		return nil, err
	} else {
		c.catalog.put(cat, gen)
		return cat, nil
	}
}

// catalogCache holds the catalog while a watch of the registry (see
// KeepCatalog) says it is current.
type catalogCache struct {
	mu       sync.Mutex
	watching bool
	cat      *modules.Catalog
	gen      uint64 // changes of the registry seen
}

func (k *catalogCache) get() (*modules.Catalog, uint64, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.cat, k.gen, k.watching && k.cat != nil
}

// put keeps cat, loaded when the registry had seen gen changes, unless it
// has changed since.
func (k *catalogCache) put(cat *modules.Catalog, gen uint64) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.watching && k.gen == gen {
		k.cat = cat
	}
}

func (k *catalogCache) invalidate(watching bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.cat, k.watching = nil, watching
	k.gen++
}

// KeepCatalog makes Catalog answer from memory for as long as ctx lasts,
// reading the registry again only after it changes: a long-running client
// (the gateway) asks for the catalog on every request, and listing the
// registry costs a consumer each time. The returned function stops it.
func (c *Client) KeepCatalog(ctx context.Context) (stop func(), err error) {
	kv, err := c.js.KeyValue(ctx, broker.ModulesBucket)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrRegistryUnavailable, err)
	}
	ctx, cancel := context.WithCancel(ctx)
	w, err := kv.WatchAll(ctx, jetstream.MetaOnly())
	if err != nil {
		cancel()
		return nil, fmt.Errorf("%w: watch: %w", ErrRegistryUnavailable, err)
	}
	c.catalog.invalidate(true)
	var wg sync.WaitGroup
	wg.Go(func() {
		defer func() { _ = w.Stop() }()
		for {
			select {
			case <-ctx.Done():
				return
			case e, ok := <-w.Updates():
				if !ok {
					c.catalog.invalidate(false)
					return
				}
				if e != nil { // nil marks the end of the current values
					c.catalog.invalidate(true)
				}
			}
		}
	})
	return func() {
		cancel()
		wg.Wait()
		c.catalog.invalidate(false)
	}, nil
}

// LoadCatalog builds the catalog from the registry on js's server; see
// Client.Catalog. Its errors wrap ErrRegistryUnavailable when the registry
// cannot be opened, and ErrNoTopology too when it does not exist.
func LoadCatalog(ctx context.Context, js jetstream.JetStream) (*modules.Catalog, error) {
	var kv jetstream.KeyValue
	err := broker.AcrossFailover(ctx, func(ctx context.Context) (err error) {
		kv, err = js.KeyValue(ctx, broker.ModulesBucket)
		return err
	})
	if errors.Is(err, jetstream.ErrBucketNotFound) || errors.Is(err, jetstream.ErrJetStreamNotEnabled) {
		return nil, fmt.Errorf("%w: %w: %w (start `winch dev`, `winch worker` or `winch broker` once to create it)", ErrRegistryUnavailable, ErrNoTopology, err)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrRegistryUnavailable, err)
	}
	// Listing reads the bucket alone: no Git, no module cache.
	var registered []modules.Entry
	err = broker.AcrossFailover(ctx, func(ctx context.Context) (err error) {
		registered, err = (&modules.Registry{KV: kv}).List(ctx)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("read the module registry: %w", err)
	}
	return modules.CatalogOf(append([]modules.Entry{{Name: "core", Manifest: modules.Core()}}, registered...))
}
