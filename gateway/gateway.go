// Package gateway serves winch over HTTP: the /v1 JSON API (submit, follow
// as server-sent events, status, list, cancel, commands, modules, audit),
// its OpenAPI document, and the web console, from embedded files. It is a
// thin layer over package producer, as the CLI is, so that a request over
// HTTP is validated, published, followed and cancelled exactly as `winch
// run` does; and over package audit for the history.
//
// Every API request is authenticated (bearer tokens by their SHA-256, or
// OpenID Connect ID tokens); the gateway publishes each request on the
// authenticated principal's subject, so the workers and the audit see who
// asked, never who the caller claims to be.
package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/winchhq/winch/audit"
	"github.com/winchhq/winch/metrics"
	"github.com/winchhq/winch/producer"
	"github.com/winchhq/winch/schema"
)

// SettingsError is a setting that Start found cannot work (a certificate
// that is not one): the operator's to fix, not a passing failure like a
// port in use. New reports its own refusals before anything starts.
type SettingsError struct{ Err error }

func (e *SettingsError) Error() string { return e.Err.Error() }
func (e *SettingsError) Unwrap() error { return e.Err }

func settingsError(err error) error { return &SettingsError{Err: err} }

// DefaultAddr is where the gateway listens unless WINCH_HTTP_ADDR says.
const DefaultAddr = "127.0.0.1:5123"

// AuditStore is what the gateway reads of the audit store (*audit.Store).
type AuditStore interface {
	Jobs(ctx context.Context, f audit.Filter) ([]audit.Job, error)
	Events(ctx context.Context, job string) ([]schema.Event, error)
	PerMinute(ctx context.Context, since time.Time) ([]audit.Bucket, error)
}

var _ AuditStore = (*audit.Store)(nil)

// Limits bound what one caller can ask of the gateway.
type Limits struct {
	// MaxBody is the largest request body, in bytes (default 256 KiB, the
	// size of a request's parameters the broker takes).
	MaxBody int64
	// MaxParams is the most parameters a submit may name (default 64).
	MaxParams int
	// StreamsPerPrincipal is how many event streams one principal may
	// follow at once (default 32).
	StreamsPerPrincipal int
	// WriteTimeout: a stream whose reader takes longer than this to accept
	// a write is closed (default 15s); the job goes on.
	WriteTimeout time.Duration
	// StreamBuffer is how many bytes of a followed job's events the
	// gateway keeps for its followers (default 32 MiB); one that falls
	// further behind reads from NATS on its own.
	StreamBuffer int
	// AdmissionWait is how long a submit of a command that declares roles
	// waits for a worker's decision, so that a refusal is a 403 (default 10s).
	AdmissionWait time.Duration
}

func (l Limits) withDefaults() Limits {
	if l.MaxBody <= 0 {
		l.MaxBody = 256 << 10
	}
	if l.MaxParams <= 0 {
		l.MaxParams = 64
	}
	if l.StreamsPerPrincipal <= 0 {
		l.StreamsPerPrincipal = 32
	}
	if l.WriteTimeout <= 0 {
		l.WriteTimeout = 15 * time.Second
	}
	if l.StreamBuffer <= 0 {
		l.StreamBuffer = 32 << 20
	}
	if l.AdmissionWait <= 0 {
		l.AdmissionWait = 10 * time.Second
	}
	return l
}

// Config configures a gateway.
type Config struct {
	// Addr is host:port to listen on (default DefaultAddr).
	Addr string
	// AllowInsecure permits plain HTTP on an address beyond loopback (behind
	// a proxy that terminates TLS). Without TLS and without it, the gateway
	// refuses to listen there: tokens would cross the network in clear.
	AllowInsecure bool
	// TLSCert and TLSKey are PEM files; with both, the gateway speaks HTTPS.
	TLSCert, TLSKey string
	// Tokens are the bearer tokens it accepts, by hash.
	Tokens []Token
	// OIDC, when set, accepts ID tokens from its issuer too.
	OIDC *OIDCConfig
	// Client submits and follows jobs; its NATS user must be allowed to
	// publish on every principal's subjects (nats.conf's gateway user).
	Client *producer.Client
	// Audit is the audit store; nil when no ClickHouse is configured (the
	// audit routes answer 503).
	Audit  AuditStore
	Limits Limits
	Logger *slog.Logger
	// Metrics, when set, counts requests and open event streams
	// (WINCH_METRICS_ADDR).
	Metrics *metrics.Gateway
}

// Server is a running gateway.
type Server struct {
	cfg     Config
	log     *slog.Logger
	auth    *authenticator
	streams *streamLimiter
	hubs    *hubs
	mux     *http.ServeMux
	routes  []route

	srv      *http.Server
	ln       net.Listener
	baseCtx  context.Context
	stopBase context.CancelFunc
	serving  sync.WaitGroup
	https    bool
	// stopCatalog ends the watch that keeps the catalog in memory.
	stopCatalog func()
}

// New checks cfg and builds the gateway; Start listens.
func New(cfg Config) (*Server, error) {
	if cfg.Client == nil {
		return nil, errors.New("gateway: no producer client")
	}
	if cfg.Addr == "" {
		cfg.Addr = DefaultAddr
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	cfg.Limits = cfg.Limits.withDefaults()
	if (cfg.TLSCert == "") != (cfg.TLSKey == "") {
		return nil, errors.New("set both WINCH_TLS_CERT and WINCH_TLS_KEY, or neither")
	}
	if cfg.TLSCert == "" && !cfg.AllowInsecure && !loopback(cfg.Addr) {
		return nil, fmt.Errorf("plain HTTP on %s would carry tokens in clear beyond this machine: set WINCH_TLS_CERT and WINCH_TLS_KEY, listen on 127.0.0.1, or set WINCH_HTTP_INSECURE=true behind a proxy that terminates TLS", cfg.Addr)
	}
	tokens, err := NewTokens(cfg.Tokens)
	if err != nil {
		return nil, err
	}
	if len(cfg.Tokens) == 0 && cfg.OIDC == nil {
		return nil, errors.New("no way to sign in: set WINCH_TOKENS_FILE or WINCH_TOKENS (token hashes), or WINCH_OIDC_ISSUER")
	}
	s := &Server{cfg: cfg, log: cfg.Logger, auth: &authenticator{tokens: tokens},
		streams: newStreamLimiter(cfg.Limits.StreamsPerPrincipal), hubs: newHubs(cfg.Client, cfg.Limits.StreamBuffer)}
	s.routes = s.apiRoutes()
	s.mux = http.NewServeMux()
	for _, r := range s.routes {
		s.mux.Handle(r.method+" "+r.pattern, s.api(r))
	}
	s.mux.HandleFunc("GET /v1/openapi.json", serveOpenAPI)
	s.mux.HandleFunc("/v1/", s.noRoute)
	s.mux.Handle("/", consoleHandler())
	return s, nil
}

// noRoute answers a request no API route takes: 405 when the path is a
// route's with another method, else 404.
func (s *Server) noRoute(w http.ResponseWriter, r *http.Request) {
	var allowed []string
	for _, m := range []string{http.MethodGet, http.MethodPost} {
		probe := r.Clone(r.Context())
		probe.Method = m
		if _, pattern := s.mux.Handler(probe); pattern != "/v1/" && pattern != "" {
			allowed = append(allowed, m)
		}
	}
	if len(allowed) > 0 {
		w.Header().Set("Allow", strings.Join(allowed, ", "))
		problem(w, http.StatusMethodNotAllowed, fmt.Sprintf("%s %s: this route takes %s", r.Method, r.URL.Path, strings.Join(allowed, ", ")))
		return
	}
	problem(w, http.StatusNotFound, fmt.Sprintf("no API route %s %s: see /v1/openapi.json", r.Method, r.URL.Path))
}

// loopback reports whether addr's host is a loopback address or localhost.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Start discovers the OIDC issuer, if any, listens, and serves until Stop.
func (s *Server) Start(ctx context.Context) error {
	if s.cfg.OIDC != nil {
		v, err := newOIDC(ctx, *s.cfg.OIDC)
		if err != nil {
			return err
		}
		s.auth.oidc = v
	}
	stopCatalog, err := s.cfg.Client.KeepCatalog(context.WithoutCancel(ctx))
	if err != nil {
		return err
	}
	s.stopCatalog = stopCatalog
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		stopCatalog()
		return fmt.Errorf("gateway: listen on %s: %w (set WINCH_HTTP_ADDR to another address)", s.cfg.Addr, err)
	}
	if s.cfg.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(s.cfg.TLSCert, s.cfg.TLSKey)
		if err != nil {
			ln.Close()
			stopCatalog()
			return settingsError(fmt.Errorf("gateway: WINCH_TLS_CERT/WINCH_TLS_KEY: %w", err))
		}
		ln = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12, NextProtos: []string{"h2", "http/1.1"}})
		s.https = true
	}
	s.ln = ln
	s.baseCtx, s.stopBase = context.WithCancel(context.WithoutCancel(ctx))
	s.srv = &http.Server{
		Handler:           s.mux,
		ReadHeaderTimeout: 10 * time.Second,
		// No ReadTimeout: it would end event streams; submit bounds the
		// reading of its body itself.
		IdleTimeout:    2 * time.Minute,
		MaxHeaderBytes: 64 << 10,
		BaseContext:    func(net.Listener) context.Context { return s.baseCtx },
		ErrorLog:       slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	s.serving.Go(func() {
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("gateway stopped serving", "err", err)
		}
	})
	s.log.Info("gateway listening", "url", s.URL(), "console", s.URL()+"/", "tls", s.https, "audit", s.cfg.Audit != nil)
	return nil
}

// URL is the gateway's base URL, with the port it listens on.
func (s *Server) URL() string {
	scheme := "http"
	if s.https {
		scheme = "https"
	}
	addr := s.cfg.Addr
	if s.ln != nil {
		addr = s.ln.Addr().String()
	}
	return scheme + "://" + addr
}

// Stop ends the event streams (their jobs go on), lets other requests
// finish until ctx ends, and closes the listener.
func (s *Server) Stop(ctx context.Context) error {
	if s.srv == nil {
		return nil
	}
	s.stopBase()
	err := s.srv.Shutdown(ctx)
	if err != nil {
		_ = s.srv.Close()
	}
	s.serving.Wait()
	s.hubs.wait()
	s.stopCatalog()
	return err
}

// Routes lists the API's routes as "METHOD /pattern", this document's
// own included.
func (s *Server) Routes() []string {
	out := []string{"GET /v1/openapi.json"}
	for _, r := range s.routes {
		out = append(out, r.method+" "+r.pattern)
	}
	return out
}

// route is one API route; the OpenAPI test checks the document against
// this list.
type route struct {
	method, pattern string
	handler         func(http.ResponseWriter, *http.Request, Identity)
	// query names the query parameters the route reads; any other is a
	// 400, not silently ignored (a misspelt filter would widen a search).
	query []string
}

func (s *Server) apiRoutes() []route {
	return []route{
		{"GET", "/v1/whoami", s.whoami, nil},
		{"GET", "/v1/commands", s.listCommands, nil},
		{"GET", "/v1/commands/{name}", s.getCommand, nil},
		{"GET", "/v1/modules", s.listModules, nil},
		{"POST", "/v1/jobs", s.submit, nil},
		{"GET", "/v1/jobs", s.listJobs, []string{"state", "principal", "command", "queue", "limit"}},
		{"GET", "/v1/jobs/{id}", s.getJob, nil},
		{"POST", "/v1/jobs/{id}/cancel", s.cancel, []string{"wait"}},
		{"GET", "/v1/jobs/{id}/events", s.events, []string{"after"}},
		{"GET", "/v1/audit/jobs", s.auditJobs, auditQuery},
		{"GET", "/v1/audit/jobs/{id}", s.auditJob, nil},
		{"GET", "/v1/stats/jobs-per-minute", s.perMinute, []string{"hours"}},
	}
}

// api authenticates the request and hands it to the route, recovering
// from a panic as a 500 rather than a dropped connection. Nothing of the
// Authorization header is logged.
func (s *Server) api(r route) http.Handler {
	route := r.method + " " + r.pattern
	return http.HandlerFunc(func(rw http.ResponseWriter, req *http.Request) {
		began := time.Now()
		w := &statusRecorder{ResponseWriter: rw}
		defer func() { s.cfg.Metrics.Request(route, w.code(), time.Since(began)) }()
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				s.log.Error("gateway handler panicked", "route", r.pattern, "panic", p)
				problem(w, http.StatusInternalServerError, "the gateway failed on this request; its log says why")
			}
		}()
		w.Header().Set("X-Content-Type-Options", "nosniff")
		id, err := s.auth.authenticate(req.Context(), req.Header.Get("Authorization"))
		if err != nil {
			s.log.Info("unauthenticated request", "method", req.Method, "path", req.URL.Path, "remote", req.RemoteAddr, "why", err)
			problem(w, http.StatusUnauthorized, err.Error())
			return
		}
		if err := checkQuery(req.URL.Query(), r.query); err != nil {
			writeProblem(w, Problem{Status: http.StatusBadRequest, Detail: fmt.Sprintf("%s %s: %v", r.method, r.pattern, err), Allowed: r.query})
			return
		}
		r.handler(w, req, id)
		s.log.Debug("request", "method", req.Method, "path", req.URL.Path, "principal", id.Principal,
			"took", time.Since(began).Round(time.Microsecond))
	})
}

// checkQuery refuses a query parameter the route does not read, naming
// the ones it does.
func checkQuery(q url.Values, allowed []string) error {
	var unknown []string
	for k := range q {
		if !slices.Contains(allowed, k) {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) == 0 {
		return nil
	}
	slices.Sort(unknown)
	takes := "takes no query parameters"
	if len(allowed) > 0 {
		takes = "takes only " + strings.Join(allowed, ", ")
	}
	return fmt.Errorf("unknown query parameter %s: this route %s (names are lower case)", quoteAll(unknown), takes)
}

func quoteAll(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = strconv.Quote(n)
	}
	return strings.Join(q, ", ")
}

// statusRecorder keeps the status code of a response, for the metrics;
// Unwrap lets http.ResponseController reach the connection (event streams
// flush and set write deadlines through it).
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (w *statusRecorder) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusRecorder) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusRecorder) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// code is the status sent, 200 when the handler wrote nothing.
func (w *statusRecorder) code() int {
	if w.status == 0 {
		return http.StatusOK
	}
	return w.status
}

func (s *Server) whoami(w http.ResponseWriter, _ *http.Request, id Identity) {
	if id.Roles == nil {
		id.Roles = []string{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"principal": id.Principal, "roles": id.Roles, "via": id.Via,
		"audit": s.cfg.Audit != nil})
}

// streamLimiter counts each principal's open event streams.
type streamLimiter struct {
	mu   sync.Mutex
	max  int
	open map[string]int
}

func newStreamLimiter(max int) *streamLimiter {
	return &streamLimiter{max: max, open: map[string]int{}}
}

func (l *streamLimiter) acquire(principal string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open[principal] >= l.max {
		return false
	}
	l.open[principal]++
	return true
}

func (l *streamLimiter) release(principal string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open[principal]--; l.open[principal] <= 0 {
		delete(l.open, principal)
	}
}

// auditor roles may read everyone's history; others read their own.
func canAuditAll(id Identity) bool { return id.Has("admin") || id.Has("auditor") }

func trimmed(s string) string { return strings.TrimSpace(s) }
