package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/alecthomas/kong"
	"github.com/goccy/go-yaml"

	"github.com/winchhq/winch/profile"
)

// contextResolver gives each flag the selected context's value when neither
// the flag nor its environment variable is set: kong consults resolvers
// after the command line, and this one steps aside when the variable is
// set, so the order is flag, variable, context, default.
type contextResolver struct {
	globals *Globals
	done    bool
	err     error
}

var _ kong.Resolver = (*contextResolver)(nil)

func (r *contextResolver) Validate(*kong.Application) error { return nil }

func (r *contextResolver) Resolve(kctx *kong.Context, _ *kong.Path, flag *kong.Flag) (any, error) {
	if !r.done {
		r.done = true
		r.selectContext(kctx)
	}
	g := r.globals
	if r.err != nil || !g.profileOK {
		return nil, nil
	}
	if flag.Name == profile.Queue && !strings.HasPrefix(kctx.Command(), "run") {
		return nil, nil // the default queue is winch run's; elsewhere --queue filters
	}
	for _, env := range flag.Envs {
		if os.Getenv(env) != "" {
			return nil, nil
		}
	}
	if v := g.profile.Setting(flag.Name); v != "" {
		return v, nil
	}
	return nil, nil
}

// selectContext finds the context the command runs in. Managing contexts,
// and the server processes (dev, broker: the URL is where they listen),
// use none.
func (r *contextResolver) selectContext(kctx *kong.Context) {
	cmd := kctx.Command()
	if strings.HasPrefix(cmd, "context") || strings.HasPrefix(cmd, "dev") || strings.HasPrefix(cmd, "broker") ||
		strings.HasPrefix(cmd, "install-completions") {
		return
	}
	var flagName string
	for _, f := range kctx.Flags() {
		if f.Name == "context" {
			if v, ok := kctx.FlagValue(f).(string); ok {
				flagName = v
			}
		}
	}
	// FlagValue is the variable's value when the flag is not given; Select
	// is told which it was only to say so.
	env := os.Getenv("WINCH_CONTEXT")
	if flagName == env {
		flagName = ""
	}
	store, err := profile.DefaultStore()
	if err != nil {
		if flagName != "" || env != "" {
			r.err = err
		}
		return
	}
	g := r.globals
	g.profile, g.profileFrom, g.profileOK, r.err = store.Select(flagName, env)
}

// ContextCmd is `winch context`.
type ContextCmd struct {
	Add  ContextAddCmd  `cmd:"" help:"Add (or replace) a context. Settings given as global flags (--nats-url, --creds, --nkey, --tls-ca, --tls-cert, --tls-key, --as, -o) go into it too."`
	Use  ContextUseCmd  `cmd:"" help:"Make a context the current one."`
	Ls   ContextLsCmd   `cmd:"" aliases:"list" help:"List contexts; * marks the current one."`
	Show ContextShowCmd `cmd:"" help:"Show a context's settings, secrets masked."`
	Rm   ContextRmCmd   `cmd:"" aliases:"remove" help:"Remove a context."`
}

// ContextAddCmd is `winch context add NAME ...`.
type ContextAddCmd struct {
	Name         string `arg:"" help:"Name of the context, like dev or prod."`
	Description  string `help:"What the context is for."`
	CA           string `name:"ca" help:"PEM file of the CA that signs the NATS server's certificate."`
	Cert         string `help:"Client certificate (PEM)."`
	Key          string `help:"The client certificate's key (PEM)."`
	Principal    string `help:"Who you are in this deployment (your NATS user, with authorization on)."`
	Queue        string `help:"Default queue of winch run."`
	GatewayURL   string `name:"gateway-url" help:"The HTTP gateway's URL, once there is one."`
	GatewayToken string `name:"gateway-token" help:"The HTTP gateway's token (stored in the context file, which only you may read)."`
	NatsContext  string `name:"nats-context" help:"A nats CLI context (nats context ls) whose server and credentials fill what this one leaves empty."`
	Confirm      bool   `help:"Make winch run ask before it publishes in this context (or want --yes)."`
	Use          bool   `help:"Make it the current context too."`
}

// Run writes the context from the flags given on the command line (not
// from the environment: a context records what you meant, not what
// happened to be exported).
func (c *ContextAddCmd) Run(kctx *kong.Context, g *Globals) error {
	given := map[string]string{}
	for _, p := range kctx.Path {
		if p.Flag != nil && !p.Resolved {
			if v, ok := kctx.FlagValue(p.Flag).(string); ok {
				given[p.Flag.Name] = v
			}
		}
	}
	abs := func(path string) string {
		if path == "" {
			return ""
		}
		if a, err := filepath.Abs(path); err == nil {
			return a
		}
		return path
	}
	first := func(vals ...string) string {
		for _, v := range vals {
			if v != "" {
				return v
			}
		}
		return ""
	}
	p := profile.Profile{
		Name: c.Name, Description: c.Description, NatsURL: given["nats-url"],
		Creds: abs(given["creds"]), NKey: abs(given["nkey"]),
		TLSCA: abs(first(c.CA, given["tls-ca"])), TLSCert: abs(first(c.Cert, given["tls-cert"])), TLSKey: abs(first(c.Key, given["tls-key"])),
		Principal: first(c.Principal, given["as"]), Queue: c.Queue, Output: given["output"],
		GatewayURL: c.GatewayURL, GatewayToken: c.GatewayToken, NatsContext: c.NatsContext, Confirm: c.Confirm,
	}
	for _, f := range []string{p.Creds, p.NKey, p.TLSCA, p.TLSCert, p.TLSKey} {
		if f == "" {
			continue
		}
		if _, err := os.Stat(f); err != nil {
			return usageError("context %s: %v", c.Name, err)
		}
	}
	store, err := profile.DefaultStore()
	if err != nil {
		return err
	}
	if p.NatsContext != "" {
		if _, err := p.WithNatsContext(""); err != nil {
			return usageError("%v", err)
		}
	}
	if err := store.Save(p); err != nil {
		return usageError("%v", err)
	}
	if c.Use {
		if err := store.Use(p.Name); err != nil {
			return err
		}
	}
	fmt.Fprintf(g.stdio.Out, "context %s saved\n", p.Name)
	return nil
}

// ContextUseCmd is `winch context use NAME`.
type ContextUseCmd struct {
	Name string `arg:"" optional:"" help:"The context; none with --none."`
	None bool   `help:"Make no context current: winch's defaults and variables apply."`
}

func (c *ContextUseCmd) Run(g *Globals) error {
	store, err := profile.DefaultStore()
	if err != nil {
		return err
	}
	if c.None == (c.Name != "") {
		return usageError("name a context, or give --none")
	}
	if err := store.Use(c.Name); err != nil {
		return usageError("%v", err)
	}
	if c.None {
		fmt.Fprintln(g.stdio.Out, "no context is current")
		return nil
	}
	fmt.Fprintf(g.stdio.Out, "context %s is current\n", c.Name)
	return nil
}

// ContextLsCmd is `winch context ls`.
type ContextLsCmd struct{}

func (c *ContextLsCmd) Run(g *Globals) error {
	if err := g.outputOneOf("text", "json"); err != nil {
		return err
	}
	store, err := profile.DefaultStore()
	if err != nil {
		return err
	}
	all, err := store.List()
	if err != nil {
		return err
	}
	cur, _ := store.Current()
	if g.jsonOutput() {
		enc := json.NewEncoder(g.stdio.Out)
		for _, p := range all {
			if err := enc.Encode(struct {
				profile.Profile
				Current bool `json:"current"`
			}{p.Masked(), p.Name == cur}); err != nil {
				return err
			}
		}
		return nil
	}
	if len(all) == 0 {
		fmt.Fprintln(g.stdio.Err, "no contexts: add one with `winch context add NAME --nats-url URL`")
		return nil
	}
	tw := tabwriter.NewWriter(g.stdio.Out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tURL\tPRINCIPAL\tCONFIRM\tDESCRIPTION")
	for _, p := range all {
		m := p.Masked()
		name := m.Name
		if name == cur {
			name += " *"
		}
		confirm := ""
		if m.Confirm {
			confirm = "yes"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", name, orDash(m.NatsURL), orDash(m.Principal), orDash(confirm), m.Description)
	}
	return tw.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// ContextShowCmd is `winch context show [NAME]`.
type ContextShowCmd struct {
	Name string `arg:"" optional:"" help:"The context (default: the one selected by --context, WINCH_CONTEXT or the current one)."`
}

func (c *ContextShowCmd) Run(g *Globals) error {
	if err := g.outputOneOf("text", "json"); err != nil {
		return err
	}
	store, err := profile.DefaultStore()
	if err != nil {
		return err
	}
	var p profile.Profile
	if c.Name == "" {
		var ok bool
		p, _, ok, err = store.Select(g.ContextName, "")
		if err == nil && !ok {
			return usageError("no context is selected: name one (winch context ls lists them)")
		}
	} else {
		p, err = store.Load(c.Name)
	}
	if err != nil {
		return usageError("%v", err)
	}
	m := p.Masked()
	if g.jsonOutput() {
		return json.NewEncoder(g.stdio.Out).Encode(m)
	}
	data, err := yaml.Marshal(m)
	if err != nil {
		return err
	}
	fmt.Fprintf(g.stdio.Out, "name: %s\n%s", m.Name, data)
	return nil
}

// ContextRmCmd is `winch context rm NAME`.
type ContextRmCmd struct {
	Name string `arg:"" help:"The context."`
}

func (c *ContextRmCmd) Run(g *Globals) error {
	store, err := profile.DefaultStore()
	if err != nil {
		return err
	}
	if err := store.Remove(c.Name); err != nil {
		return usageError("%v", err)
	}
	fmt.Fprintf(g.stdio.Out, "context %s removed\n", c.Name)
	return nil
}
