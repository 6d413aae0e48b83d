package main

import (
	"context"
	"fmt"
	"net/url"
	"strings"

	"github.com/nats-io/nats.go"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/winchhq/winch/broker"
)

// BrokerCmd is `winch broker`: the embedded NATS server for deployments that
// want one binary.
type BrokerCmd struct {
	Config  string `short:"c" env:"WINCH_NATS_CONFIG" type:"existingfile" help:"nats-server configuration file (see nats.conf); without it, listen on --nats-url."`
	DataDir string `env:"WINCH_DATA_DIR" help:"Where JetStream keeps its files, when the config file sets no store_dir."`
	Ensure  bool   `default:"true" negatable:"" help:"Create winch's streams and buckets at start."`
	Sync    string `env:"WINCH_NATS_SYNC" placeholder:"always|DURATION" help:"How often JetStream syncs to disk. Without -c the default is always: one server must not lose an acknowledged request to a power cut. With -c, the file's sync_interval."`
}

// Run serves until SIGTERM or SIGINT.
func (c *BrokerCmd) Run(ctx context.Context, g *Globals) error {
	log := g.serviceLogger()
	cfg := broker.ServerConfig{ConfigFile: c.Config, DataDir: c.DataDir, Name: "winch-broker", Logger: log, Sync: c.Sync}
	if c.Config == "" {
		// One server, no file: nothing else keeps a copy of an
		// acknowledged request, so sync each write (BENCHMARKS.md: what
		// it costs). winch dev keeps the server's default instead.
		if cfg.Sync == "" {
			cfg.Sync = "always"
		}
		// Without a config file: listen where clients look, keep data in the
		// default data dir.
		cfg.ListenURL = g.NatsURL
		var err error
		if cfg.DataDir, err = dataDir(c.DataDir); err != nil {
			return err
		}
	}
	srv, err := broker.NewServer(cfg)
	if err != nil {
		return &ExitError{Code: exitUsage, Err: err}
	}
	if err := srv.Start(ctx); err != nil {
		return err
	}
	defer srv.Stop()
	if c.Ensure {
		// With authorization on, WINCH_NATS_URL or WINCH_NATS_CREDS carry the
		// credentials of a user that may create streams; with TLS on,
		// WINCH_NATS_TLS_CA verifies the server's own certificate.
		cfg := broker.ConnectConfig{URL: withUserInfo(srv.ClientURL(), g.NatsURL), Name: "winch-broker", Logger: log,
			Credentials: g.credentials()}
		if host := firstHost(g.NatsURL); host != "" {
			// The server's certificate names the host clients use, not
			// the loopback address this connection goes to.
			cfg.Options = append(cfg.Options, tlsServerName(host))
		}
		nc, err := broker.Connect(ctx, cfg)
		if err != nil {
			return err
		}
		js, err := jetstream.New(nc)
		if err == nil {
			_, err = broker.Ensure(ctx, js, broker.Topology{})
		}
		nc.Close()
		if err != nil {
			return fmt.Errorf("create streams: %w", err)
		}
	}
	log.Info("winch broker ready", "url", srv.ClientURL(), "store_dir", srv.StoreDir(), "sync_always", srv.SyncAlways())
	<-ctx.Done()
	log.Info("stopping")
	return nil
}

// withUserInfo puts the user and password of from, if any, into target.
func withUserInfo(target, from string) string {
	f, err := url.Parse(from)
	if err != nil || f.User == nil {
		return target
	}
	t, err := url.Parse(target)
	if err != nil {
		return target
	}
	t.User = f.User
	return t.String()
}

// firstHost is the host of the first URL in a comma-separated list.
func firstHost(urls string) string {
	first, _, _ := strings.Cut(urls, ",")
	u, err := url.Parse(strings.TrimSpace(first))
	if err != nil {
		return ""
	}
	return u.Hostname()
}

// tlsServerName checks the server's certificate against name.
func tlsServerName(name string) nats.Option {
	return func(o *nats.Options) error {
		if o.TLSConfig != nil {
			o.TLSConfig.ServerName = name
		}
		return nil
	}
}
