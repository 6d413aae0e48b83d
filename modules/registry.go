package modules

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// ManifestFile is where a module's manifest lives in its repository.
const ManifestFile = "winch.yaml"

// Entry is one module in the registry.
type Entry struct {
	Name string `json:"name"`
	URL  string `json:"url"`
	// Ref is what was asked for (a tag, branch or commit); Kind says which.
	Ref  string `json:"ref"`
	Kind string `json:"kind"`
	// Commit is what Ref resolved to at the last add or sync: what new
	// requests run.
	Commit   string    `json:"commit"`
	SyncedAt time.Time `json:"synced_at"`
	Manifest *Manifest `json:"manifest"`
}

// Errors of the registry.
var (
	ErrModuleExists   = errors.New("module already registered")
	ErrModuleNotFound = errors.New("no such module")
	ErrReservedName   = errors.New("module name is reserved")
)

// Registry is the set of modules, kept in a key-value bucket (one entry per
// module name) so that every worker and client sees the same.
type Registry struct {
	KV  jetstream.KeyValue
	Git *Git
}

// Load fetches the module at url and ref and reads its manifest at the
// resolved commit, without registering it.
func (r *Registry) Load(ctx context.Context, url, ref string) (Entry, error) {
	commit, kind, branch, err := r.Git.Resolve(ctx, url, ref)
	if err != nil {
		return Entry{}, err
	}
	if kind == RefBranch {
		ref = branch
	}
	m, err := r.manifestAt(ctx, url, commit)
	if err != nil {
		return Entry{}, err
	}
	return Entry{Name: m.Module, URL: url, Ref: ref, Kind: kind, Commit: commit, SyncedAt: time.Now().UTC(), Manifest: m}, nil
}

// ManifestAt reads and validates the manifest of url at commit.
func (r *Registry) manifestAt(ctx context.Context, url, commit string) (*Manifest, error) {
	dir, err := r.Git.Checkout(ctx, url, commit)
	if err != nil {
		return nil, err
	}
	return ReadManifest(dir, fmt.Sprintf("%s@%.12s:%s", url, commit, ManifestFile))
}

// ReadManifest parses the manifest in a module's directory; name is how
// errors call the file.
func ReadManifest(dir, name string) (*Manifest, error) {
	data, err := os.ReadFile(filepath.Join(dir, ManifestFile))
	if err != nil {
		return nil, &ManifestError{File: name, Msg: "the module has no " + ManifestFile + " at its root"}
	}
	return ParseManifest(name, data)
}

// Add registers the module at url, pinned to ref; its name comes from its
// manifest.
func (r *Registry) Add(ctx context.Context, url, ref string) (Entry, error) {
	e, err := r.Load(ctx, url, ref)
	if err != nil {
		return e, err
	}
	if e.Name == "core" {
		return e, fmt.Errorf("%w: %q belongs to winch's own commands", ErrReservedName, e.Name)
	}
	data, err := json.Marshal(e)
	if err != nil {
		return e, err
	}
	if _, err := r.KV.Create(ctx, e.Name, data); errors.Is(err, jetstream.ErrKeyExists) {
		old, _ := r.Get(ctx, e.Name)
		return e, fmt.Errorf("%w: %s (from %s); remove it first, or sync it", ErrModuleExists, e.Name, old.URL)
	} else if err != nil {
		return e, fmt.Errorf("register module %s: %w", e.Name, err)
	}
	return e, nil
}

// Get returns one module.
func (r *Registry) Get(ctx context.Context, name string) (Entry, error) {
	kve, err := r.KV.Get(ctx, name)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrInvalidKey) {
		return Entry{}, fmt.Errorf("%w: %s (winch modules list shows them)", ErrModuleNotFound, name)
	}
	if err != nil {
		return Entry{}, err
	}
	var e Entry
	if err := json.Unmarshal(kve.Value(), &e); err != nil {
		return Entry{}, fmt.Errorf("module %s: undecodable registry entry: %w", name, err)
	}
	return e, nil
}

// List returns every module, by name.
func (r *Registry) List(ctx context.Context) ([]Entry, error) {
	keys, err := r.KV.ListKeys(ctx)
	if err != nil {
		return nil, err
	}
	var out []Entry
	for k := range keys.Keys() {
		e, err := r.Get(ctx, k)
		if errors.Is(err, ErrModuleNotFound) {
			continue // removed while we listed
		}
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Sync moves a module that follows a branch (or a tag that moved) to what
// its ref names now. Requests already queued keep the commit they carry.
func (r *Registry) Sync(ctx context.Context, name string) (before, after Entry, err error) {
	kve, err := r.KV.Get(ctx, name)
	if err != nil {
		_, err = r.Get(ctx, name)
		return before, after, err
	}
	if err := json.Unmarshal(kve.Value(), &before); err != nil {
		return before, after, err
	}
	after = before
	if before.Kind != RefCommit {
		if after, err = r.Load(ctx, before.URL, before.Ref); err != nil {
			return before, after, err
		}
		if after.Name != before.Name {
			return before, after, fmt.Errorf("module %s: the manifest at %.12s now names the module %q; remove it and add it again", name, after.Commit, after.Name)
		}
	}
	after.SyncedAt = time.Now().UTC()
	data, err := json.Marshal(after)
	if err != nil {
		return before, after, err
	}
	if _, err := r.KV.Update(ctx, name, data, kve.Revision()); err != nil {
		return before, after, fmt.Errorf("update module %s: %w", name, err)
	}
	return before, after, nil
}

// Remove unregisters a module: its commands are gone for new requests.
func (r *Registry) Remove(ctx context.Context, name string) error {
	if _, err := r.Get(ctx, name); err != nil {
		return err
	}
	return r.KV.Delete(ctx, name)
}
