package main

import (
	"context"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/posener/complete"

	"github.com/winchhq/winch/broker"
	"github.com/winchhq/winch/modules"
	"github.com/winchhq/winch/producer"
)

// predictCommands completes `winch run`: command names, then the chosen
// command's parameters. It asks the registry for modules' commands when
// NATS answers quickly, and offers the core's otherwise.
func predictCommands(a complete.Args) []string {
	catalog := completionCatalog()
	var chosen string
	var given []string
	// The words typed after `winch run`.
	for _, w := range a.Completed {
		switch {
		case strings.HasPrefix(w, "--") && chosen != "":
			name, _, _ := strings.Cut(strings.TrimPrefix(w, "--"), "=")
			given = append(given, name)
		case chosen == "" && strings.Contains(w, "."):
			chosen = w
		}
	}
	if chosen == "" {
		var names []string
		for _, c := range catalog.Commands() {
			names = append(names, c.Name)
		}
		return names
	}
	cmd, err := catalog.Lookup(chosen)
	if err != nil {
		return nil
	}
	var flags []string
	for _, n := range cmd.Spec.ParamNames() {
		flag := strings.ReplaceAll(n, "_", "-")
		if !slices.Contains(given, flag) && !slices.Contains(given, n) {
			flags = append(flags, "--"+flag)
		}
	}
	return flags
}

// completionCatalog is the catalog winch run validates against, or the
// core's alone when NATS does not answer at once.
func completionCatalog() *modules.Catalog {
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	if nc, err := broker.Connect(ctx, broker.ConnectConfig{URL: os.Getenv("WINCH_NATS_URL"), Credentials: broker.CredentialsFromEnv(os.Getenv)}); err == nil {
		defer nc.Close()
		if js, err := jetstream.New(nc); err == nil {
			if catalog, err := producer.LoadCatalog(ctx, js); err == nil {
				return catalog
			}
		}
	}
	catalog, _ := modules.NewCatalog(modules.Core())
	return catalog
}
