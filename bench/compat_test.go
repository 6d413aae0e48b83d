package bench

import (
	"context"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/winchhq/winch/broker"
)

// ensure creates winch's streams with topo's settings; the one call that
// differs between the lifecycle rework and the commit before it (whose
// Ensure returned only an error), so that the same benchmarks run on both.
func ensure(ctx context.Context, js jetstream.JetStream, topo broker.Topology) error {
	_, err := broker.Ensure(ctx, js, topo)
	return err
}
