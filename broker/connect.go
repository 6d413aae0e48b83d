package broker

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
)

// DefaultURL is where winch looks for NATS when WINCH_NATS_URL is not set.
const DefaultURL = "nats://127.0.0.1:4222"

// ConnectConfig configures a connection.
type ConnectConfig struct {
	// URL is one server, or several separated by commas (a cluster's seeds).
	URL    string
	Name   string // shown in the server's connection list
	Logger *slog.Logger
	// Wait makes the first connection attempt retry, with backoff, until ctx
	// ends; services want that, one-shot CLI commands want a quick error.
	Wait bool
	// Credentials authenticate the connection and verify the server.
	Credentials Credentials
	// Options are further nats.go options.
	Options []nats.Option
}

var (
	// ErrUnreachable says no NATS server answered.
	ErrUnreachable = errors.New("cannot reach NATS")
	// ErrNotAuthorized says the server refused the credentials: a wrong
	// password, an unknown, expired or revoked user. Retrying does not help.
	ErrNotAuthorized = errors.New("the NATS server refused these credentials")
	// ErrTLS says the TLS handshake failed: the server's certificate is not
	// signed by the CA given, names another host, or TLS is on one side only.
	ErrTLS = errors.New("TLS with the NATS server failed")
)

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
	credOpts, err := cfg.Credentials.Options()
	if err != nil {
		return nil, err
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
	}, credOpts...)
	opts = append(opts, cfg.Options...)

	for attempt := 0; ; attempt++ {
		nc, err := nats.Connect(cfg.URL, opts...)
		if err == nil {
			log.Debug("nats connected", "url", nc.ConnectedUrlRedacted())
			return nc, nil
		}
		// Credentials and certificates do not get better by waiting.
		if refused := classify(err); refused != nil {
			return nil, fmt.Errorf("%w at %s: %v (%s)", refused, redact(cfg.URL), err, hint(refused, cfg.Credentials))
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

// classify says whether a connection error is a refusal (ErrNotAuthorized,
// ErrTLS) rather than a server that is not there.
func classify(err error) error {
	var unknownAuthority x509.UnknownAuthorityError
	var hostname x509.HostnameError
	var invalid x509.CertificateInvalidError
	var verify *tls.CertificateVerificationError
	msg := strings.ToLower(err.Error())
	switch {
	case errors.Is(err, nats.ErrAuthorization), errors.Is(err, nats.ErrAuthExpired), errors.Is(err, nats.ErrAuthRevoked),
		errors.Is(err, nats.ErrAccountAuthExpired), strings.Contains(msg, "authorization violation"),
		strings.Contains(msg, "authentication expired"), strings.Contains(msg, "authentication revoked"):
		return ErrNotAuthorized
	case errors.As(err, &unknownAuthority), errors.As(err, &hostname), errors.As(err, &invalid), errors.As(err, &verify),
		errors.Is(err, nats.ErrSecureConnRequired), errors.Is(err, nats.ErrSecureConnWanted),
		strings.Contains(msg, "tls:"), strings.Contains(msg, "x509:"):
		return ErrTLS
	}
	return nil
}

// hint says what to check for a refusal.
func hint(refused error, c Credentials) string {
	if errors.Is(refused, ErrTLS) {
		if c.CAFile == "" {
			return "set " + EnvTLSCA + " to the CA that signed the server's certificate, and use tls:// URLs"
		}
		return "check that " + EnvTLSCA + "=" + c.CAFile + " is the CA that signed the server's certificate, and that the URL names a host in it"
	}
	switch {
	case c.CredsFile != "":
		return "check " + EnvCreds + "=" + c.CredsFile + ": its user may be unknown to this server, expired or revoked"
	case c.NKeyFile != "":
		return "check " + EnvNKey + "=" + c.NKeyFile + ": this server may not know its public key"
	}
	return "set " + EnvCreds + " to your credentials file, or put user:password@ in WINCH_NATS_URL"
}

// redact hides passwords in a URL, or a comma-separated list of them,
// before it is shown.
func redact(raw string) string { return RedactURLs(raw) }

// RedactURLs is raw, one URL or several separated by commas, as it may be
// shown: a password becomes ***, and so does a user without one, which in
// NATS URLs is a token (nats://TOKEN@host).
func RedactURLs(raw string) string {
	if raw == "" {
		return ""
	}
	parts := strings.Split(raw, ",")
	for i, p := range parts {
		u, err := url.Parse(strings.TrimSpace(p))
		if err != nil {
			parts[i] = "(unparsable URL)"
			continue
		}
		switch _, has := u.User.Password(); {
		case has:
			u.User = url.UserPassword(u.User.Username(), "***")
		case u.User != nil:
			u.User = url.User("***")
		}
		parts[i] = strings.ReplaceAll(u.String(), "%2A", "*")
	}
	return strings.Join(parts, ",")
}
