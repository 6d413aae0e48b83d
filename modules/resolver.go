package modules

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/winchhq/winch/schema"
)

// Resolver finds a command for a worker: core commands from the core
// catalog, module commands from the registry, at the commit the request
// names, with the module's files fetched.
type Resolver struct {
	Core     *Catalog
	Registry *Registry
}

// Resolve returns the command name at commit (the registry's current commit
// when empty). An unknown module or command wraps ErrUnknownCommand; a
// module that cannot be fetched wraps ErrFetch.
func (r *Resolver) Resolve(ctx context.Context, name, commit string) (Command, error) {
	if cmd, err := r.Core.Lookup(name); err == nil {
		return cmd, nil
	}
	module, command, ok := schema.SplitCommand(name)
	if !ok {
		return Command{}, fmt.Errorf("%w %q: want module.command", ErrUnknownCommand, name)
	}
	entry, err := r.Registry.Get(ctx, module)
	if errors.Is(err, ErrModuleNotFound) {
		return Command{}, fmt.Errorf("%w %q: module %s is not registered (winch modules list)", ErrUnknownCommand, name, module)
	}
	if err != nil {
		return Command{}, err
	}
	if commit == "" {
		commit = entry.Commit
	}
	dir, err := r.Registry.Git.Checkout(ctx, entry.URL, commit)
	if errors.Is(err, ErrCommitNotFound) {
		// Fetched, and not there: no retry will find it.
		return Command{}, fmt.Errorf("%w %q: %w", ErrUnknownCommand, name, err)
	}
	if err != nil {
		return Command{}, err
	}
	m, err := ReadManifest(dir, fmt.Sprintf("%s@%.12s:%s", entry.URL, commit, ManifestFile))
	if err != nil {
		return Command{}, fmt.Errorf("%w %q: %v", ErrUnknownCommand, name, err)
	}
	spec, ok := m.Commands[command]
	if !ok {
		names := make([]string, 0, len(m.Commands))
		for n := range m.Commands {
			names = append(names, module+"."+n)
		}
		sort.Strings(names)
		return Command{}, fmt.Errorf("%w %q at %.12s: module %s has %s", ErrUnknownCommand, name, commit, module, strings.Join(names, ", "))
	}
	return Command{Name: name, Module: module, Image: m.Image, Build: m.Build, Spec: spec, Commit: commit, Dir: dir}, nil
}
