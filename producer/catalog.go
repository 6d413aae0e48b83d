package producer

import (
	"context"
	"errors"
	"fmt"

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
	return LoadCatalog(ctx, c.js)
}

// LoadCatalog builds the catalog from the registry on js's server; see
// Client.Catalog. Its errors wrap ErrRegistryUnavailable when the registry
// cannot be opened, and ErrNoTopology too when it does not exist.
func LoadCatalog(ctx context.Context, js jetstream.JetStream) (*modules.Catalog, error) {
	kv, err := js.KeyValue(ctx, broker.ModulesBucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) || errors.Is(err, jetstream.ErrJetStreamNotEnabled) {
		return nil, fmt.Errorf("%w: %w: %w (start `winch dev`, `winch worker` or `winch broker` once to create it)", ErrRegistryUnavailable, ErrNoTopology, err)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrRegistryUnavailable, err)
	}
	// Listing reads the bucket alone: no Git, no module cache.
	registered, err := (&modules.Registry{KV: kv}).List(ctx)
	if err != nil {
		return nil, fmt.Errorf("read the module registry: %w", err)
	}
	return modules.CatalogOf(append([]modules.Entry{{Name: "core", Manifest: modules.Core()}}, registered...))
}
