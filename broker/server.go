package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// ServerConfig configures the embedded NATS server.
type ServerConfig struct {
	// ListenURL is where clients connect, like nats://127.0.0.1:4222. Port 0
	// picks a free port (see Server.ClientURL). Empty means loopback, port 0.
	ListenURL string
	// DataDir holds JetStream's files; it overrides the config file's
	// store_dir.
	DataDir string
	// ConfigFile, when set, is a nats-server configuration file. ListenURL,
	// if also set, overrides its listen address.
	ConfigFile string
	Name       string
	Logger     *slog.Logger
	// NoMonitoring turns off the config file's monitoring port (tests run
	// several servers from one file).
	NoMonitoring bool
	// Sync is how often JetStream syncs its files to disk: "always" (each
	// write, before it is acknowledged), a duration, or empty for the
	// config file's setting or else the server's default (every 2 minutes:
	// a crash of the process loses nothing, a power cut may lose what was
	// acknowledged since the last sync).
	Sync string
}

// Server is an embedded NATS server with JetStream: the same server code as
// the official binary, run as a library.
type Server struct {
	ns  *server.Server
	log *slog.Logger
}

// NewServer prepares a server; Start runs it.
func NewServer(cfg ServerConfig) (*Server, error) {
	opts := &server.Options{}
	if cfg.ConfigFile != "" {
		var err error
		if opts, err = server.ProcessConfigFile(cfg.ConfigFile); err != nil {
			return nil, fmt.Errorf("read nats config %s: %w", cfg.ConfigFile, err)
		}
	}
	if cfg.ConfigFile == "" || cfg.ListenURL != "" {
		host, port, err := splitListenURL(cfg.ListenURL)
		if err != nil {
			return nil, err
		}
		opts.Host, opts.Port = host, port
	}
	if cfg.NoMonitoring {
		opts.HTTPHost, opts.HTTPPort, opts.HTTPSPort = "", 0, 0
	}
	opts.JetStream = true
	opts.NoSigs = true // the process owns signals, not the library
	if opts.ServerName == "" {
		opts.ServerName = cfg.Name
	}
	if cfg.DataDir != "" {
		opts.StoreDir = cfg.DataDir
	}
	switch cfg.Sync {
	case "":
	case "always":
		opts.SyncAlways = true
	default:
		d, err := time.ParseDuration(cfg.Sync)
		if err != nil || d <= 0 {
			return nil, fmt.Errorf("nats server: sync %q: want \"always\" or a duration like 1s or 2m", cfg.Sync)
		}
		opts.SyncAlways, opts.SyncInterval = false, d
	}
	if opts.StoreDir == "" {
		return nil, errors.New("nats server: a data directory is required (WINCH_DATA_DIR, or store_dir in the config file)")
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("configure nats server: %w", err)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ns.SetLoggerV2(&natsLogger{log: log.With("component", "nats")}, false, false, false)
	return &Server{ns: ns, log: log}, nil
}

// ErrNotReady is returned when the server did not come up in time.
var ErrNotReady = errors.New("nats server not ready")

// Start runs the server and returns once it accepts connections.
func (s *Server) Start(ctx context.Context) error {
	s.ns.Start()
	deadline := 10 * time.Second
	if d, ok := ctx.Deadline(); ok {
		deadline = time.Until(d)
	}
	if !s.ns.ReadyForConnections(deadline) {
		s.ns.Shutdown()
		s.ns.WaitForShutdown()
		return fmt.Errorf("%w within %v (is the port already in use?)", ErrNotReady, deadline)
	}
	return nil
}

// ClientURL is the URL clients connect to.
func (s *Server) ClientURL() string { return s.ns.ClientURL() }

// SyncAlways reports whether JetStream syncs every write before it
// acknowledges it.
func (s *Server) SyncAlways() bool { return s.ns.JetStreamConfig().SyncAlways }

// StoreDir is where JetStream keeps its files.
func (s *Server) StoreDir() string { return s.ns.StoreDir() }

// Stop shuts the server down and waits until it has: JetStream flushes its
// files, so a restart on the same directory finds everything acknowledged.
func (s *Server) Stop() {
	s.ns.Shutdown()
	s.ns.WaitForShutdown()
}

func splitListenURL(raw string) (string, int, error) {
	if raw == "" {
		return "127.0.0.1", server.RANDOM_PORT, nil
	}
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "nats" || u.Hostname() == "" {
		return "", 0, fmt.Errorf("listen address %q: want nats://HOST:PORT, like nats://127.0.0.1:4222", raw)
	}
	port := 4222
	if p := u.Port(); p != "" {
		if port, err = strconv.Atoi(p); err != nil || port < 0 || port > 65535 {
			return "", 0, fmt.Errorf("listen address %q: bad port", raw)
		}
		if port == 0 {
			port = server.RANDOM_PORT
		}
	}
	return u.Hostname(), port, nil
}

// IsLoopback reports whether a listen URL stays on this machine.
func IsLoopback(raw string) bool {
	host, _, err := splitListenURL(raw)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// natsLogger sends the server's log through slog.
type natsLogger struct{ log *slog.Logger }

func (l *natsLogger) Noticef(format string, v ...any) { l.log.Debug(fmt.Sprintf(format, v...)) }
func (l *natsLogger) Warnf(format string, v ...any)   { l.log.Warn(fmt.Sprintf(format, v...)) }
func (l *natsLogger) Fatalf(format string, v ...any)  { l.log.Error(fmt.Sprintf(format, v...)) }
func (l *natsLogger) Errorf(format string, v ...any)  { l.log.Error(fmt.Sprintf(format, v...)) }
func (l *natsLogger) Debugf(format string, v ...any)  { l.log.Debug(fmt.Sprintf(format, v...)) }
func (l *natsLogger) Tracef(format string, v ...any)  {}
