package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/goccy/go-yaml"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/winchhq/winch/broker"
	"github.com/winchhq/winch/modules"
)

// ModulesCmd is `winch modules`: command packs from Git.
type ModulesCmd struct {
	Add    ModulesAddCmd    `cmd:"" help:"Register a module from a Git repository, pinned to a tag or commit, or following a branch."`
	List   ModulesListCmd   `cmd:"" help:"List modules: name, url, ref, resolved commit, synced at, commands."`
	Show   ModulesShowCmd   `cmd:"" help:"Show a module's manifest."`
	Sync   ModulesSyncCmd   `cmd:"" help:"Move modules that follow a branch (or a moved tag) to what their ref names now."`
	Remove ModulesRemoveCmd `cmd:"" help:"Unregister a module: its commands are gone for new requests."`
}

// ModulesAddCmd is `winch modules add URL [--ref REF]`.
type ModulesAddCmd struct {
	URL string `arg:"" help:"The module's Git repository (https://, ssh://, or a path)."`
	Ref string `help:"A tag or full commit hash to pin, or a branch to follow (default: the repository's default branch)."`
}

// Run registers the module.
func (c *ModulesAddCmd) Run(ctx context.Context, g *Globals) error {
	reg, nc, err := g.registry(ctx)
	if err != nil {
		return err
	}
	defer nc.Close()
	e, err := reg.Add(ctx, c.URL, c.Ref)
	if err != nil {
		return moduleError(err)
	}
	return g.printEntry(e, "added")
}

// ModulesListCmd is `winch modules list`.
type ModulesListCmd struct{}

// Run lists modules.
func (c *ModulesListCmd) Run(ctx context.Context, g *Globals) error {
	if err := g.outputOneOf("text", "json"); err != nil {
		return err
	}
	reg, nc, err := g.registry(ctx)
	if err != nil {
		return err
	}
	defer nc.Close()
	entries, err := reg.List(ctx)
	if err != nil {
		return err
	}
	if g.jsonOutput() {
		if entries == nil {
			entries = []modules.Entry{}
		}
		return json.NewEncoder(g.stdio.Out).Encode(entries)
	}
	tw := tabwriter.NewWriter(g.stdio.Out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tURL\tREF\tCOMMIT\tSYNCED\tCOMMANDS")
	for _, e := range entries {
		fmt.Fprintf(tw, "%s\t%s\t%s %s\t%.12s\t%s\t%d\n", e.Name, e.URL, e.Kind, e.Ref, e.Commit,
			e.SyncedAt.Local().Format("2006-01-02 15:04:05"), len(e.Manifest.Commands))
	}
	return tw.Flush()
}

// ModulesShowCmd is `winch modules show NAME`.
type ModulesShowCmd struct {
	Name string `arg:"" help:"Module name."`
}

// Run shows the module and its manifest.
func (c *ModulesShowCmd) Run(ctx context.Context, g *Globals) error {
	reg, nc, err := g.registry(ctx)
	if err != nil {
		return err
	}
	defer nc.Close()
	e, err := reg.Get(ctx, c.Name)
	if err != nil {
		return moduleError(err)
	}
	if g.jsonOutput() {
		return json.NewEncoder(g.stdio.Out).Encode(e)
	}
	fmt.Fprintf(g.stdio.Out, "module: %s\nurl: %s\nref: %s %s\ncommit: %s\nsynced: %s\n\n", e.Name, e.URL, e.Kind, e.Ref, e.Commit,
		e.SyncedAt.Local().Format(time.RFC3339))
	out, err := yaml.MarshalWithOptions(e.Manifest, yaml.Indent(2))
	if err != nil {
		return err
	}
	_, err = g.stdio.Out.Write(out)
	return err
}

// ModulesSyncCmd is `winch modules sync [NAME...]`.
type ModulesSyncCmd struct {
	Names []string `arg:"" optional:"" help:"Modules to sync (default: all)."`
}

// Run syncs modules.
func (c *ModulesSyncCmd) Run(ctx context.Context, g *Globals) error {
	reg, nc, err := g.registry(ctx)
	if err != nil {
		return err
	}
	defer nc.Close()
	names := c.Names
	if len(names) == 0 {
		entries, err := reg.List(ctx)
		if err != nil {
			return err
		}
		for _, e := range entries {
			names = append(names, e.Name)
		}
	}
	var failed error
	for _, n := range names {
		before, after, err := reg.Sync(ctx, n)
		if err != nil {
			fmt.Fprintf(g.stdio.Err, "winch: sync %s: %v\n", n, err)
			failed = moduleError(err)
			continue
		}
		if before.Commit == after.Commit {
			fmt.Fprintf(g.stdio.Out, "%s: %s %s still at %.12s\n", n, after.Kind, after.Ref, after.Commit)
		} else {
			fmt.Fprintf(g.stdio.Out, "%s: %s %s moved %.12s -> %.12s\n", n, after.Kind, after.Ref, before.Commit, after.Commit)
		}
	}
	return failed
}

// ModulesRemoveCmd is `winch modules remove NAME`.
type ModulesRemoveCmd struct {
	Name string `arg:"" help:"Module name."`
}

// Run removes the module.
func (c *ModulesRemoveCmd) Run(ctx context.Context, g *Globals) error {
	reg, nc, err := g.registry(ctx)
	if err != nil {
		return err
	}
	defer nc.Close()
	if err := reg.Remove(ctx, c.Name); err != nil {
		return moduleError(err)
	}
	_, err = fmt.Fprintf(g.stdio.Out, "removed %s\n", c.Name)
	return err
}

func (g *Globals) printEntry(e modules.Entry, verb string) error {
	if g.jsonOutput() {
		return json.NewEncoder(g.stdio.Out).Encode(e)
	}
	_, err := fmt.Fprintf(g.stdio.Out, "%s %s: %s %s at %.12s, %d commands\n", verb, e.Name, e.Kind, e.Ref, e.Commit, len(e.Manifest.Commands))
	return err
}

// moduleError turns what the user got wrong into a usage error.
func moduleError(err error) error {
	var me *modules.ManifestError
	switch {
	case errors.Is(err, modules.ErrModuleExists), errors.Is(err, modules.ErrModuleNotFound), errors.Is(err, modules.ErrRefNotFound),
		errors.Is(err, modules.ErrCommitNotFound), errors.Is(err, modules.ErrReservedName), errors.As(err, &me):
		return &ExitError{Code: exitUsage, Err: err}
	case errors.Is(err, modules.ErrFetch):
		return &ExitError{Code: exitUnavailable, Err: err}
	}
	return err
}

// moduleCache is where modules' repositories and files are kept.
func moduleCache() (string, error) {
	if dir := os.Getenv("WINCH_MODULE_CACHE"); dir != "" {
		return dir, nil
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("no cache dir for modules: set WINCH_MODULE_CACHE (%w)", err)
	}
	return filepath.Join(cache, "winch", "modules"), nil
}

// newRegistry binds the module registry on nc's server.
func newRegistry(ctx context.Context, nc *nats.Conn) (*modules.Registry, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	kv, err := js.KeyValue(ctx, broker.ModulesBucket)
	if err != nil {
		return nil, fmt.Errorf("module registry: %w (start `winch dev`, `winch worker` or `winch broker` once to create it)", err)
	}
	dir, err := moduleCache()
	if err != nil {
		return nil, err
	}
	return &modules.Registry{KV: kv, Git: &modules.Git{CacheDir: dir}}, nil
}

// registry connects to NATS and binds the module registry.
func (g *Globals) registry(ctx context.Context) (*modules.Registry, *nats.Conn, error) {
	nc, err := broker.Connect(ctx, g.connectConfig("winch-cli", g.clientLogger(), false))
	if err != nil {
		return nil, nil, err
	}
	reg, err := newRegistry(ctx, nc)
	if err != nil {
		nc.Close()
		return nil, nil, &ExitError{Code: exitUnavailable, Err: err}
	}
	return reg, nc, nil
}
