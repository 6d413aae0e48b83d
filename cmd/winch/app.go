package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/user"
	"regexp"
	"runtime/debug"
	"strings"
	"time"

	"github.com/alecthomas/kong"
	"github.com/lmittmann/tint"
	"github.com/nats-io/nats.go"
	"github.com/posener/complete"
	"github.com/willabides/kongplete"
	"golang.org/x/term"

	"github.com/winchhq/winch/broker"
	"github.com/winchhq/winch/producer"
	"github.com/winchhq/winch/profile"
	"github.com/winchhq/winch/schema"
	"github.com/winchhq/winch/worker/docker"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = ""

// Stdio are the streams a command reads and writes.
type Stdio struct {
	In       io.Reader
	Out, Err io.Writer
	// Signals are SIGINT and SIGTERM as they arrive (nil: only the
	// context's end says that one came).
	Signals <-chan os.Signal
}

// CLI is the command tree.
type CLI struct {
	Globals

	Version kong.VersionFlag `help:"Print the version and exit."`

	Dev      DevCmd      `cmd:"" help:"Run everything on one machine: an embedded NATS JetStream server and a worker."`
	Broker   BrokerCmd   `cmd:"" help:"Run the embedded NATS server alone, from a nats.conf."`
	Worker   WorkerCmd   `cmd:"" help:"Run a worker: take jobs from queues and run them."`
	Init     InitCmd     `cmd:"" help:"Create winch's streams, or change the fleet's cluster-wide settings (lease, deliveries, retention, replicas)."`
	Run      RunCmd      `cmd:"" help:"Run a command and follow it; exits with the command's exit code."`
	Logs     LogsCmd     `cmd:"" help:"Replay (or follow, with -f) every event of a job."`
	Status   StatusCmd   `cmd:"" help:"Show a job's state, worker, attempt, times and exit code."`
	Ps       PsCmd       `cmd:"" help:"List queued and running jobs."`
	Cancel   CancelCmd   `cmd:"" help:"Cancel a job: a queued one never starts, a running one is stopped."`
	Schedule ScheduleCmd `cmd:"" help:"Run commands on a cron, an interval or once at a time: add, list, show, pause, resume, remove."`
	Commands CommandsCmd `cmd:"" help:"List the commands winch can run, with their parameters."`
	Modules  ModulesCmd  `cmd:"" help:"Manage modules: command packs from Git repositories."`
	Audit    AuditCmd    `cmd:"" help:"Search the history of jobs in ClickHouse: who ran what, when, with what result."`
	Gateway  GatewayCmd  `cmd:"" help:"Serve the HTTP API and web console (port 5123): run, follow and audit commands from a browser or curl."`
	Sink     SinkCmd     `cmd:"" help:"Move events from JetStream into ClickHouse (the audit store)."`
	Notifier NotifierCmd `cmd:"" help:"Deliver webhooks when jobs end (winch run --notify, manifests' notify)."`
	Images   ImagesCmd   `cmd:"" help:"Build the toolbox image the core commands run in, from local files."`
	Health   HealthCmd   `cmd:"" help:"Probe a health endpoint (GET URL; exit 0 on 2xx): the healthcheck of the winch image, which has no shell."`
	Context  ContextCmd  `cmd:"" help:"Manage contexts: named settings for each deployment (dev, staging, prod)."`

	InstallCompletions kongplete.InstallCompletions `cmd:"" help:"Install shell completion (bash, zsh, fish) for commands and their parameters."`
}

// Globals are the flags every command takes. Each takes its value from its
// flag, else its environment variable, else the selected context (see
// package profile), else its default.
type Globals struct {
	ContextName   string `name:"context" env:"WINCH_CONTEXT" help:"Context to use (winch context ls); default: the current one."`
	NatsURL       string `name:"nats-url" env:"WINCH_NATS_URL" default:"${default_nats_url}" help:"NATS server to use, or several separated by commas (dev and broker listen on it)."`
	Creds         string `name:"creds" env:"WINCH_NATS_CREDS" help:"NATS credentials file (user JWT and nkey seed)."`
	NKey          string `name:"nkey" env:"WINCH_NATS_NKEY" help:"NATS nkey seed file."`
	TLSCA         string `name:"tls-ca" env:"WINCH_NATS_TLS_CA" help:"PEM file of the CA that signs the NATS server's certificate."`
	TLSCert       string `name:"tls-cert" env:"WINCH_NATS_TLS_CERT" help:"Client certificate (PEM) for NATS servers that ask for one."`
	TLSKey        string `name:"tls-key" env:"WINCH_NATS_TLS_KEY" help:"The client certificate's key (PEM)."`
	Principal     string `name:"as" env:"WINCH_PRINCIPAL" help:"Who you are, for requests and the audit (default: your user name)."`
	Output        string `short:"o" env:"WINCH_OUTPUT" enum:"text,json,csv" default:"text" help:"Output format of commands that print: text or json (events as JSON lines); winch audit also csv."`
	ClickHouseDSN string `name:"clickhouse-dsn" env:"WINCH_CLICKHOUSE_DSN" help:"The audit store, like clickhouse://127.0.0.1:9000/winch (native protocol)."`
	LogLevel      string `env:"WINCH_LOG_LEVEL" enum:"debug,info,warn,error" default:"info" help:"Log level (${enum})."`
	LogFormat     string `env:"WINCH_LOG_FORMAT" enum:"auto,text,json" default:"auto" help:"Log format: text on a terminal and json otherwise when auto (${enum})."`

	stdio Stdio
	// profile is the selected context, if any (ok false: none).
	profile     profile.Profile
	profileFrom profile.Source
	profileOK   bool
}

// credentials are the NATS credentials the flags, variables or context give.
func (g *Globals) credentials() broker.Credentials {
	return broker.Credentials{CredsFile: g.Creds, NKeyFile: g.NKey, CAFile: g.TLSCA, CertFile: g.TLSCert, KeyFile: g.TLSKey}
}

// connectConfig is how a process named name connects: to WINCH_NATS_URL
// with the credentials given; wait makes it retry until NATS answers.
func (g *Globals) connectConfig(name string, log *slog.Logger, wait bool) broker.ConnectConfig {
	return broker.ConnectConfig{URL: g.NatsURL, Name: name, Logger: log, Wait: wait, Credentials: g.credentials()}
}

// Exit codes of winch itself; `winch run` otherwise exits with the
// command's own code. See the README.
const (
	exitUsage       = 64  // bad flags, unknown command, invalid parameters
	exitUnavailable = 69  // NATS cannot be reached, or has no winch streams
	exitInternal    = 70  // any other error of winch's
	exitNoPerm      = 77  // the NATS server does not let you do it
	exitDead        = 121 // the request ran out of deliveries
	exitNotStarted  = 122 // the command could not be started
	exitTimedOut    = 124
	exitRejected    = 125
	exitWorkerLost  = 126
	exitCancelled   = 130
)

// ExitError ends the program with Code, printing Err if it is not nil.
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("exit %d", e.Code)
	}
	return e.Err.Error()
}

func (e *ExitError) Unwrap() error { return e.Err }

func usageError(format string, args ...any) error {
	return &ExitError{Code: exitUsage, Err: fmt.Errorf(format, args...)}
}

// exitCode prints err, if any, and says what the process exits with.
func exitCode(err error, stderr io.Writer) int {
	if err == nil {
		return 0
	}
	var exit *ExitError
	if errors.As(err, &exit) {
		if exit.Err != nil {
			fmt.Fprintln(stderr, "winch:", exit.Err)
		}
		return exit.Code
	}
	fmt.Fprintln(stderr, "winch:", err)
	switch {
	case errors.Is(err, broker.ErrUnreachable), errors.Is(err, producer.ErrNoTopology), errors.Is(err, producer.ErrRegistryUnavailable),
		errors.Is(err, broker.ErrTLS), broker.Unanswered(context.Background(), err):
		return exitUnavailable
	case errors.Is(err, producer.ErrNotPermitted), errors.Is(err, broker.ErrNotAuthorized):
		return exitNoPerm
	case errors.Is(err, context.Canceled):
		return exitCancelled
	case errors.Is(err, broker.ErrBadCredentials):
		return exitUsage
	}
	return exitInternal
}

// exitPanic carries kong's request to exit (after --help, --version or a
// parse error) out of the parser without ending the process.
type exitPanic int

// Run parses args and runs the command they name.
func Run(ctx context.Context, args []string, stdio Stdio) (err error) {
	var cli CLI
	cli.stdio = stdio
	contexts := &contextResolver{globals: &cli.Globals}
	parser, err := kong.New(&cli,
		kong.Resolvers(contexts),
		kong.Name("winch"),
		kong.Description("A message-queue driven job runner: commands run by workers in containers, every event audited."),
		kong.Writers(stdio.Out, stdio.Err),
		kong.Vars{"version": buildVersion(), "default_nats_url": broker.DefaultURL, "default_image": docker.DefaultImage, "interrupt_window": "3s"},
		kong.UsageOnError(),
		kong.ConfigureHelp(kong.HelpOptions{Compact: true}),
		kong.Exit(func(code int) { panic(exitPanic(code)) }),
	)
	if err != nil {
		return err
	}
	defer func() {
		if r := recover(); r != nil {
			code, ok := r.(exitPanic)
			if !ok {
				panic(r)
			}
			if code != 0 {
				err = &ExitError{Code: exitUsage}
			}
		}
	}()
	// Shell completion: when the shell asks (COMP_LINE), answer and exit.
	kongplete.Complete(parser, kongplete.WithPredictor("command", complete.PredictFunc(predictCommands)))
	kctx, err := parser.Parse(args)
	if contexts.err != nil {
		return &ExitError{Code: exitUsage, Err: contexts.err}
	}
	if err != nil {
		return &ExitError{Code: exitUsage, Err: fmt.Errorf("%w (see winch --help)", err)}
	}
	if g := cli.Globals; g.profileOK && g.profile.Name != "default" {
		// Say where this goes whenever it is not the default, so that a
		// command meant for dev is not silently run in production.
		fmt.Fprintf(stdio.Err, "winch: context %s (%s)\n", g.profile.Name, g.profileFrom)
	}
	kctx.BindTo(ctx, (*context.Context)(nil))
	return kctx.Run(&cli.Globals)
}

func buildVersion() string {
	if version != "" {
		return version
	}
	if info, ok := debug.ReadBuildInfo(); ok && info.Main.Version != "" && info.Main.Version != "(devel)" {
		return info.Main.Version
	}
	return "dev"
}

// logger writes logs to w: tint on a terminal, JSON otherwise, unless the
// format is set.
func (g *Globals) logger(w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(g.LogLevel))
	format := g.LogFormat
	if format == "auto" {
		format = "json"
		if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
			format = "text"
		}
	}
	if format == "text" {
		return slog.New(tint.NewTextHandler(w, &tint.Options{Level: level, TimeFormat: time.TimeOnly}))
	}
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level}))
}

// clientLogger is for client commands, whose stdout is their output.
func (g *Globals) clientLogger() *slog.Logger { return g.logger(g.stdio.Err) }

// serviceLogger is for long-running services, which log to stdout as an
// event stream.
func (g *Globals) serviceLogger() *slog.Logger { return g.logger(g.stdio.Out) }

// client connects to NATS and binds a producer, failing fast: a CLI command
// should say at once that nothing is there. Commands that use it print text
// or JSON.
func (g *Globals) client(ctx context.Context) (*producer.Client, *nats.Conn, error) {
	if err := g.outputOneOf("text", "json"); err != nil {
		return nil, nil, err
	}
	log := g.clientLogger()
	nc, err := broker.Connect(ctx, g.connectConfig("winch-cli", log, false))
	if err != nil {
		return nil, nil, err
	}
	c, err := producer.New(ctx, nc, log)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return c, nc, nil
}

var principalUnsafe = regexp.MustCompile(`[^A-Za-z0-9_@-]+`)

// principal is who the request is from: WINCH_PRINCIPAL, else the OS user.
func (g *Globals) principal() (string, error) {
	p := g.Principal
	if p == "" {
		if u, err := user.Current(); err == nil {
			p = principalUnsafe.ReplaceAllString(u.Username, "_")
		}
	}
	if !schema.ValidPrincipal(p) {
		return "", usageError("principal %q is not valid: set WINCH_PRINCIPAL to letters, digits, '-', '_' or '@'", p)
	}
	return p, nil
}

func (g *Globals) jsonOutput() bool { return g.Output == "json" }

// outputOneOf says, for a command, which output formats it has.
func (g *Globals) outputOneOf(formats ...string) error {
	for _, f := range formats {
		if g.Output == f {
			return nil
		}
	}
	return usageError("--output %s is not available here; use %s", g.Output, strings.Join(formats, " or "))
}

func splitList(vals []string) []string {
	var out []string
	for _, v := range vals {
		for _, s := range strings.Split(v, ",") {
			if s = strings.TrimSpace(s); s != "" {
				out = append(out, s)
			}
		}
	}
	return out
}
