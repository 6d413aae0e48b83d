package producer_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"

	"github.com/nats-io/nats.go"

	"github.com/winchhq/winch/producer"
	"github.com/winchhq/winch/schema"
)

// A service runs a command as `winch run` does: checked against the
// commands winch knows before anything is published, then followed to its
// end, its output printed as it comes.
func ExampleClient_Run() {
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
	sub, err := client.Run(ctx, producer.RunRequest{
		Command:   "core.echo",
		Params:    map[string]any{"text": "hello"}, // as decoded from JSON, or Go values
		Principal: "billing-service",
	})
	var invalid *producer.InvalidParamsError
	switch {
	case errors.As(err, &invalid):
		for _, p := range invalid.Params {
			fmt.Printf("parameter %s: %s\n", p.Param, p.Message) // "text: required"
		}
		return
	case producer.IsInvalid(err): // an unknown command, a bad queue name...
		fmt.Println(err)
		return
	case err != nil:
		log.Fatal(err)
	}
	last, err := client.Follow(ctx, sub.Request.ID, producer.UntilDone, func(ev schema.Event) error {
		if ev.Kind == schema.KindLog && ev.Stream == schema.Stdout {
			fmt.Print(ev.Data)
		} else if ev.Kind == schema.KindLog {
			fmt.Fprint(os.Stderr, ev.Data)
		}
		return nil
	})
	if err != nil {
		log.Fatal(err)
	}
	if last.ExitCode != nil {
		fmt.Println("ended:", last.State, "exit code", *last.ExitCode)
	} else {
		fmt.Println("ended:", last.State, last.Error)
	}
}
