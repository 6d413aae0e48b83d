package producer_test

import (
	"context"
	"fmt"
	"log"

	"github.com/nats-io/nats.go"

	"github.com/winchhq/winch/producer"
	"github.com/winchhq/winch/schema"
)

// A service runs a command through winch and prints its output as it comes.
func ExampleClient_Submit() {
	ctx := context.Background()
	nc, err := nats.Connect("nats://127.0.0.1:4222")
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()
	client, err := producer.New(ctx, nc, nil)
	if err != nil {
		log.Fatal(err)
	}
	sub, err := client.Submit(ctx, schema.Request{
		Command:   "core.echo",
		Params:    map[string]any{"text": "hello"},
		Principal: "billing-service",
		// The same key from the same principal names the same job: a retry
		// of this call cannot run the command twice.
		IdempotencyKey: "invoice-run-2026-11",
	})
	if err != nil {
		log.Fatal(err)
	}
	last, err := client.Follow(ctx, sub.Request.ID, producer.UntilDone, func(ev schema.Event) error {
		if ev.Kind == schema.KindLog {
			fmt.Print(ev.Data)
		}
		return nil
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("ended:", last.State)
}
