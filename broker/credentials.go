package broker

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/nats-io/nats.go"
)

// Credentials are how a process proves who it is to NATS and checks that the
// server is the one it means: a NATS credentials file (a user JWT and its
// nkey seed, the decentralized setup of ops/auth), or a bare nkey seed, and
// TLS (a CA to verify the server, a client certificate and key for servers
// that ask for one). Every winch process takes them from the same variables
// (CredentialsFromEnv), so the CLI, workers, sinks, notifiers and the broker's
// own connection are configured alike. A zero Credentials adds nothing: the
// URL's user:password, if any, or no authentication.
type Credentials struct {
	CredsFile string // WINCH_NATS_CREDS: user JWT + seed, as nsc writes it
	NKeyFile  string // WINCH_NATS_NKEY: an nkey seed file (SU...)
	CAFile    string // WINCH_NATS_TLS_CA: PEM roots that sign the server's certificate
	CertFile  string // WINCH_NATS_TLS_CERT: client certificate (PEM), with KeyFile
	KeyFile   string // WINCH_NATS_TLS_KEY
}

// The variables Credentials come from.
const (
	EnvCreds   = "WINCH_NATS_CREDS"
	EnvNKey    = "WINCH_NATS_NKEY"
	EnvTLSCA   = "WINCH_NATS_TLS_CA"
	EnvTLSCert = "WINCH_NATS_TLS_CERT"
	EnvTLSKey  = "WINCH_NATS_TLS_KEY"
)

// CredentialsFromEnv reads the WINCH_NATS_* variables with getenv (os.Getenv
// in processes; tests pass their own).
func CredentialsFromEnv(getenv func(string) string) Credentials {
	return Credentials{
		CredsFile: getenv(EnvCreds), NKeyFile: getenv(EnvNKey),
		CAFile: getenv(EnvTLSCA), CertFile: getenv(EnvTLSCert), KeyFile: getenv(EnvTLSKey),
	}
}

// IsZero reports whether c adds nothing to a connection.
func (c Credentials) IsZero() bool { return c == Credentials{} }

// TLS reports whether c asks for TLS.
func (c Credentials) TLS() bool { return c.CAFile != "" || c.CertFile != "" || c.KeyFile != "" }

// ErrBadCredentials says the credentials given cannot be used as they are:
// a missing or unreadable file, a certificate without its key.
var ErrBadCredentials = errors.New("bad NATS credentials")

// Options turns c into nats.go options, checking every file first so that a
// typo is reported as what it is rather than as a refused connection.
func (c Credentials) Options() ([]nats.Option, error) {
	var opts []nats.Option
	bad := func(format string, args ...any) ([]nats.Option, error) {
		return nil, fmt.Errorf("%w: %s", ErrBadCredentials, fmt.Sprintf(format, args...))
	}
	if c.CredsFile != "" && c.NKeyFile != "" {
		return bad("%s and %s are both set; a user has a credentials file or an nkey, not both", EnvCreds, EnvNKey)
	}
	if c.CredsFile != "" {
		data, err := os.ReadFile(c.CredsFile)
		if err != nil {
			return bad("%s: %v", EnvCreds, err)
		}
		if !strings.Contains(string(data), "BEGIN NATS USER JWT") || !strings.Contains(string(data), "BEGIN USER NKEY SEED") {
			return bad("%s %s is not a NATS credentials file (it holds a user JWT and an nkey seed; `nsc generate creds` writes one)", EnvCreds, c.CredsFile)
		}
		opts = append(opts, nats.UserCredentials(c.CredsFile))
	}
	if c.NKeyFile != "" {
		opt, err := nats.NkeyOptionFromSeed(c.NKeyFile)
		if err != nil {
			return bad("%s %s: %v", EnvNKey, c.NKeyFile, err)
		}
		opts = append(opts, opt)
	}
	if (c.CertFile == "") != (c.KeyFile == "") {
		return bad("%s and %s go together: a client certificate needs its key", EnvTLSCert, EnvTLSKey)
	}
	if c.TLS() {
		cfg := &tls.Config{MinVersion: tls.VersionTLS12}
		if c.CAFile != "" {
			pem, err := os.ReadFile(c.CAFile)
			if err != nil {
				return bad("%s: %v", EnvTLSCA, err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return bad("%s %s holds no PEM certificate", EnvTLSCA, c.CAFile)
			}
			cfg.RootCAs = pool
		}
		if c.CertFile != "" {
			cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
			if err != nil {
				return bad("%s/%s: %v", EnvTLSCert, EnvTLSKey, err)
			}
			cfg.Certificates = []tls.Certificate{cert}
		}
		opts = append(opts, nats.Secure(cfg))
	}
	return opts, nil
}
