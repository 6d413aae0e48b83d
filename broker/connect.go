package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"time"

	"github.com/nats-io/nats.go"
)

// DefaultURL is where winch looks for NATS when WINCH_NATS_URL is not set.
const DefaultURL = "nats://127.0.0.1:4222"

// ConnectConfig configures a connection.
type ConnectConfig struct {
	URL    string
	Name   string // shown in the server's connection list
	Logger *slog.Logger
	// Wait makes the first connection attempt retry, with backoff, until ctx
	// ends; services want that, one-shot CLI commands want a quick error.
	Wait bool
	// Options are further nats.go options (credentials, TLS).
	Options []nats.Option
}

// ErrUnreachable says no NATS server answered.
var ErrUnreachable = errors.New("cannot reach NATS")

// Connect opens a connection that, once up, reconnects forever with jittered
// exponential backoff and logs every change of state.
func Connect(ctx context.Context, cfg ConnectConfig) (*nats.Conn, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.URL == "" {
		cfg.URL = DefaultURL
	}
	opts := append([]nats.Option{
		nats.Name(cfg.Name),
		nats.MaxReconnects(-1),
		nats.CustomReconnectDelay(backoff),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("nats disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info("nats reconnected", "url", nc.ConnectedUrlRedacted())
		}),
		nats.ClosedHandler(func(*nats.Conn) { log.Debug("nats connection closed") }),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			subj := ""
			if sub != nil {
				subj = sub.Subject
			}
			log.Error("nats async error", "subject", subj, "err", err)
		}),
	}, cfg.Options...)

	for attempt := 0; ; attempt++ {
		nc, err := nats.Connect(cfg.URL, opts...)
		if err == nil {
			log.Debug("nats connected", "url", nc.ConnectedUrlRedacted())
			return nc, nil
		}
		if !cfg.Wait {
			return nil, fmt.Errorf("%w at %s: %v (start one with `winch dev`, or point WINCH_NATS_URL at yours)", ErrUnreachable, redact(cfg.URL), err)
		}
		wait := backoff(attempt)
		log.Warn("nats not reachable yet; retrying", "url", redact(cfg.URL), "in", wait, "err", err)
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%w at %s: %w", ErrUnreachable, redact(cfg.URL), context.Cause(ctx))
		case <-time.After(wait):
		}
	}
}

// backoff grows from 100ms to 5s with ±20% jitter, so that a fleet of workers
// does not reconnect in lockstep after a broker restart.
func backoff(attempt int) time.Duration {
	d := 100 * time.Millisecond << min(attempt, 6)
	d = min(d, 5*time.Second)
	return time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
}

// redact hides a password in a URL before it is shown.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return raw
	}
	return u.Redacted()
}
