package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/winchhq/winch/audit"
	"github.com/winchhq/winch/broker"
	"github.com/winchhq/winch/gateway"
	"github.com/winchhq/winch/metrics"
	"github.com/winchhq/winch/producer"
)

// GatewayFlags configure the HTTP gateway, in `winch gateway` and `winch dev`.
type GatewayFlags struct {
	HTTPAddr     string        `name:"http-addr" env:"WINCH_HTTP_ADDR" default:"127.0.0.1:5123" help:"Where the HTTP API and console listen (off: not at all, in winch dev)."`
	HTTPInsecure bool          `name:"http-insecure" env:"WINCH_HTTP_INSECURE" help:"Allow plain HTTP on an address beyond loopback (behind a proxy that terminates TLS)."`
	TLSCert      string        `name:"http-tls-cert" env:"WINCH_TLS_CERT" type:"existingfile" help:"PEM certificate: serve HTTPS (with --http-tls-key)."`
	TLSKey       string        `name:"http-tls-key" env:"WINCH_TLS_KEY" type:"existingfile" help:"PEM private key of --http-tls-cert."`
	TokensFile   string        `name:"tokens-file" env:"WINCH_TOKENS_FILE" type:"existingfile" help:"YAML list of {sha256, principal, roles}: the bearer tokens accepted, by their SHA-256."`
	Tokens       string        `name:"tokens" env:"WINCH_TOKENS" help:"Tokens accepted, as SHA256:PRINCIPAL[:ROLE+ROLE] separated by spaces."`
	OIDCIssuer   string        `name:"oidc-issuer" env:"WINCH_OIDC_ISSUER" help:"Accept OpenID Connect ID tokens from this issuer (its discovery URL without /.well-known/...)."`
	OIDCAudience string        `name:"oidc-audience" env:"WINCH_OIDC_AUDIENCE" help:"The client id ID tokens must be issued to."`
	OIDCClaim    string        `name:"oidc-principal-claim" env:"WINCH_OIDC_PRINCIPAL_CLAIM" default:"sub" help:"The ID token claim that names the principal."`
	OIDCRoles    string        `name:"oidc-roles-claim" env:"WINCH_OIDC_ROLES_CLAIM" default:"roles" help:"The ID token claim that lists the principal's roles."`
	MaxStreams   int           `name:"http-max-streams" env:"WINCH_HTTP_MAX_STREAMS" default:"32" help:"Event streams one principal may follow at once."`
	MaxBody      int64         `name:"http-max-body" env:"WINCH_HTTP_MAX_BODY" default:"262144" help:"Largest request body, in bytes."`
	StreamWrite  time.Duration `name:"http-write-timeout" env:"WINCH_HTTP_WRITE_TIMEOUT" default:"15s" help:"An event stream whose reader does not take a write within this is closed (the job goes on)."`
}

// config builds the gateway's configuration; devToken, when set, is a
// token file to make and accept if no other way to sign in is configured.
func (f *GatewayFlags) config(ctx context.Context, g *Globals, client *producer.Client, log *slog.Logger, devToken string) (gateway.Config, func(), error) {
	cfg := gateway.Config{Addr: f.HTTPAddr, AllowInsecure: f.HTTPInsecure, TLSCert: f.TLSCert, TLSKey: f.TLSKey,
		Client: client, Logger: log.With("component", "gateway"),
		Limits: gateway.Limits{StreamsPerPrincipal: f.MaxStreams, MaxBody: f.MaxBody, WriteTimeout: f.StreamWrite}}
	if f.TokensFile != "" {
		entries, err := gateway.LoadTokens(f.TokensFile)
		if err != nil {
			return cfg, nil, usageError("%w", err)
		}
		cfg.Tokens = append(cfg.Tokens, entries...)
	}
	if f.Tokens != "" {
		entries, err := gateway.ParseTokensEnv(f.Tokens)
		if err != nil {
			return cfg, nil, usageError("%w", err)
		}
		cfg.Tokens = append(cfg.Tokens, entries...)
	}
	if f.OIDCIssuer != "" {
		cfg.OIDC = &gateway.OIDCConfig{Issuer: f.OIDCIssuer, Audience: f.OIDCAudience, PrincipalClaim: f.OIDCClaim, RolesClaim: f.OIDCRoles}
	}
	if len(cfg.Tokens) == 0 && cfg.OIDC == nil && devToken != "" {
		principal, err := g.principal()
		if err != nil {
			return cfg, nil, err
		}
		tok, err := devTokenFile(devToken)
		if err != nil {
			return cfg, nil, err
		}
		cfg.Tokens = []gateway.Token{{SHA256: gateway.HashToken(tok), Principal: principal, Roles: []string{"admin"}}}
	}
	release := func() {}
	if g.ClickHouseDSN != "" {
		store, err := audit.Open(ctx, g.ClickHouseDSN, log)
		if err != nil {
			// The gateway serves without history rather than not at all;
			// its audit routes say why.
			log.Warn("the gateway has no audit store", "dsn", redactDSN(g.ClickHouseDSN), "err", err)
		} else {
			cfg.Audit = store
			release = func() { _ = store.Close() }
		}
	}
	return cfg, release, nil
}

// devTokenFile returns the token kept in path, making one (readable by its
// owner only) the first time. The token itself is never printed or logged.
func devTokenFile(path string) (string, error) {
	if data, err := os.ReadFile(path); err == nil && len(strings.TrimSpace(string(data))) >= 32 {
		return strings.TrimSpace(string(data)), nil
	}
	var b [24]byte
	_, _ = rand.Read(b[:])
	tok := "wt_" + hex.EncodeToString(b[:])
	if err := os.WriteFile(path, []byte(tok+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("dev token: %w", err)
	}
	return tok, nil
}

// start starts a gateway over nc; the returned function stops it.
func (f *GatewayFlags) start(ctx context.Context, g *Globals, nc *nats.Conn, log *slog.Logger, devToken string, m *metrics.Gateway) (*gateway.Server, func(), error) {
	client, err := producer.New(ctx, nc, log)
	if err != nil {
		return nil, nil, err
	}
	cfg, release, err := f.config(ctx, g, client, log, devToken)
	if err != nil {
		return nil, nil, err
	}
	cfg.Metrics = m
	srv, err := gateway.New(cfg)
	if err != nil {
		release()
		return nil, nil, usageError("%w", err)
	}
	if err := srv.Start(ctx); err != nil {
		release()
		if errors.As(err, new(*gateway.SettingsError)) {
			return nil, nil, usageError("%w", err)
		}
		return nil, nil, &ExitError{Code: exitUnavailable, Err: err}
	}
	return srv, func() {
		stopCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Stop(stopCtx)
		release()
	}, nil
}

// GatewayCmd is `winch gateway`: the HTTP API and console alone.
type GatewayCmd struct {
	GatewayFlags
	MetricsAddr string `name:"metrics-addr" env:"WINCH_METRICS_ADDR" placeholder:"HOST:PORT" help:"Serve /metrics (Prometheus), /healthz and /readyz here (default: not at all)."`
}

// Run serves until SIGTERM or SIGINT.
func (c *GatewayCmd) Run(ctx context.Context, g *Globals) error {
	log := g.serviceLogger()
	nc, err := broker.Connect(ctx, g.connectConfig("winch-gateway", log, true))
	if err != nil {
		return err
	}
	defer nc.Close()
	pm, stopMetrics, err := serveMetrics(ctx, c.MetricsAddr, map[string]metrics.Check{"nats": natsReady(nc)}, log)
	if err != nil {
		return err
	}
	defer stopMetrics()
	srv, stop, err := c.start(ctx, g, nc, log, "", pm.gateway())
	if errors.Is(err, producer.ErrNoTopology) {
		return &ExitError{Code: exitUnavailable, Err: err}
	}
	if err != nil {
		return err
	}
	log.Info("console: " + srv.URL() + "/")
	<-ctx.Done()
	log.Info("stopping the gateway: event streams end, their jobs go on")
	stop()
	return nil
}

func devTokenPath(dataDir string) string { return filepath.Join(dataDir, "gateway-token") }
