package main

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/winchhq/winch/broker"
)

// BrokerCmd is `winch broker`: the embedded NATS server for deployments that
// want one binary.
type BrokerCmd struct {
	Config  string `short:"c" env:"WINCH_NATS_CONFIG" type:"existingfile" help:"nats-server configuration file (see nats.conf); without it, listen on --nats-url."`
	DataDir string `env:"WINCH_DATA_DIR" help:"Where JetStream keeps its files, when the config file sets no store_dir."`
	Ensure  bool   `default:"true" negatable:"" help:"Create winch's streams and buckets at start."`
}

// Run serves until SIGTERM or SIGINT.
func (c *BrokerCmd) Run(ctx context.Context, g *Globals) error {
	log := g.serviceLogger()
	dir := c.DataDir
	if c.Config == "" || dir != "" {
		var err error
		if dir, err = dataDir(dir); err != nil {
			return err
		}
	}
	srv, err := broker.NewServer(broker.ServerConfig{ConfigFile: c.Config, ListenURL: g.NatsURL, DataDir: dir, Name: "winch-broker", Logger: log})
	if err != nil {
		return &ExitError{Code: exitUsage, Err: err}
	}
	if err := srv.Start(ctx); err != nil {
		return err
	}
	defer srv.Stop()
	if c.Ensure {
		nc, err := broker.Connect(ctx, broker.ConnectConfig{URL: srv.ClientURL(), Name: "winch-broker", Logger: log})
		if err != nil {
			return err
		}
		js, err := jetstream.New(nc)
		if err == nil {
			err = broker.Ensure(ctx, js, broker.Topology{})
		}
		nc.Close()
		if err != nil {
			return fmt.Errorf("create streams: %w", err)
		}
	}
	log.Info("winch broker ready", "url", srv.ClientURL(), "store_dir", srv.StoreDir())
	<-ctx.Done()
	log.Info("stopping")
	return nil
}
