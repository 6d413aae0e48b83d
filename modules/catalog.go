package modules

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/winchhq/winch/schema"
)

//go:embed core.yaml
var coreManifest []byte

// Core returns the core module's manifest.
func Core() *Manifest {
	m, err := ParseManifest("core.yaml", coreManifest)
	if err != nil {
		// core.yaml is compiled in and checked by the tests.
		panic(fmt.Sprintf("modules: the embedded core manifest is invalid: %v", err))
	}
	return m
}

// Command is one runnable command: its specification and the module that
// declares it.
type Command struct {
	Name   string // module.command
	Module string
	Image  string
	// Build is the Dockerfile of a module whose image is built from it.
	Build string
	Spec  schema.CommandSpec
	// Commit is the module's commit the command comes from (empty for
	// core), and Dir its files there, when they were fetched.
	Commit string
	Dir    string
}

// Catalog is the set of commands a worker will run and a client will
// validate against. It is immutable once built.
type Catalog struct {
	commands map[string]Command
}

// NewCatalog builds a catalog from manifests; a module named twice is an error.
func NewCatalog(manifests ...*Manifest) (*Catalog, error) {
	entries := make([]Entry, len(manifests))
	for i, m := range manifests {
		entries[i] = Entry{Name: m.Module, Manifest: m}
	}
	return CatalogOf(entries)
}

// CatalogOf builds a catalog from registry entries (with their commits).
func CatalogOf(entries []Entry) (*Catalog, error) {
	c := &Catalog{commands: map[string]Command{}}
	seen := map[string]bool{}
	for _, e := range entries {
		m := e.Manifest
		if m == nil {
			continue
		}
		if seen[m.Module] {
			return nil, fmt.Errorf("module %q is declared twice", m.Module)
		}
		seen[m.Module] = true
		for name, spec := range m.Commands {
			full := m.Module + "." + name
			c.commands[full] = Command{Name: full, Module: m.Module, Image: m.Image, Build: m.Build, Spec: spec, Commit: e.Commit}
		}
	}
	return c, nil
}

// Resolve implements the worker's view of commands: the catalog is fixed,
// so the commit is not looked at.
func (c *Catalog) Resolve(_ context.Context, name, _ string) (Command, error) {
	return c.Lookup(name)
}

// ErrUnknownCommand is returned for a command no module declares.
var ErrUnknownCommand = errors.New("unknown command")

// Lookup finds a command by its full name. An unknown name gives an error
// that wraps ErrUnknownCommand and suggests the closest known name.
func (c *Catalog) Lookup(name string) (Command, error) {
	cmd, ok := c.commands[name]
	if !ok {
		hint := ""
		if s := c.closest(name); s != "" {
			hint = fmt.Sprintf(": did you mean %q?", s)
		}
		return Command{}, fmt.Errorf("%w %q%s (`winch commands` lists them all)", ErrUnknownCommand, name, hint)
	}
	return cmd, nil
}

// Commands returns every command, sorted by name.
func (c *Catalog) Commands() []Command {
	out := make([]Command, 0, len(c.commands))
	for _, cmd := range c.commands {
		out = append(out, cmd)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// closest returns the known name nearest to name by edit distance, if it is
// near enough to be a plausible typo.
func (c *Catalog) closest(name string) string {
	best, bestDist := "", len(name)/2+2
	for known := range c.commands {
		if d := editDistance(strings.ToLower(name), known); d < bestDist || (d == bestDist && known < best) {
			best, bestDist = known, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
