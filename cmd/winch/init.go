package main

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/winchhq/winch/broker"
)

// InitCmd is `winch init`: the one place where the fleet's cluster-wide
// settings change. Workers only check that they agree with them.
type InitCmd struct {
	AckWait         time.Duration `env:"WINCH_ACK_WAIT" help:"How long a silent worker keeps a job before it is handed to another (the lease); workers beat every third of it."`
	MaxDeliver      int           `env:"WINCH_MAX_DELIVER" help:"Deliveries of one request before its job is dead."`
	MaxAckPending   int           `help:"Jobs in flight on one queue across the fleet."`
	EventsMaxAge    time.Duration `help:"How long the events stream keeps a job's events (the audit store keeps them after)."`
	StateTTL        time.Duration `help:"How long a job's state is kept after its last change."`
	DuplicateWindow time.Duration `help:"How long a request id is remembered, so that a retried publish runs once."`
	Replicas        int           `env:"WINCH_REPLICAS" help:"Copies of every stream and bucket: 1 on one server, 3 on a cluster."`
}

// Run creates what is missing and applies the settings given; unset ones
// keep the fleet's (or the defaults, for a new one). It prints the result.
func (c *InitCmd) Run(ctx context.Context, g *Globals) error {
	if err := g.outputOneOf("text", "json"); err != nil {
		return err
	}
	nc, err := broker.Connect(ctx, g.connectConfig("winch-init", g.clientLogger(), false))
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	t, err := broker.Apply(ctx, js, broker.Topology{
		AckWait: c.AckWait, MaxDeliver: c.MaxDeliver, MaxAckPending: c.MaxAckPending, EventsMaxAge: c.EventsMaxAge,
		StateTTL: c.StateTTL, DuplicateWindow: c.DuplicateWindow, Replicas: c.Replicas,
	})
	if err != nil {
		return err
	}
	if g.jsonOutput() {
		return json.NewEncoder(g.stdio.Out).Encode(map[string]any{
			"ack_wait": t.AckWait.String(), "max_deliver": t.MaxDeliver, "max_ack_pending": t.MaxAckPending,
			"events_max_age": t.EventsMaxAge.String(), "state_ttl": t.StateTTL.String(),
			"duplicate_window": t.DuplicateWindow.String(), "replicas": t.Replicas,
		})
	}
	_, err = fmt.Fprintf(g.stdio.Out, "ack_wait:         %s\nmax_deliver:      %d\nmax_ack_pending:  %d\nevents_max_age:   %s\nstate_ttl:        %s\nduplicate_window: %s\nreplicas:         %d\n",
		t.AckWait, t.MaxDeliver, t.MaxAckPending, t.EventsMaxAge, t.StateTTL, t.DuplicateWindow, t.Replicas)
	return err
}
