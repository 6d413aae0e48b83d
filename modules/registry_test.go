package modules_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/winchhq/winch/modules"
)

func TestResolveRefs(t *testing.T) {
	t.Parallel()
	up := newUpstream(t)
	c1 := up.Commit("v1", manifest("echo v1\n"))
	up.Tag("v1.0.0", c1)
	c2 := up.Commit("v2", manifest("echo v2\n"))
	g := &modules.Git{CacheDir: t.TempDir()}
	for _, tt := range []struct {
		ref, commit, kind string
	}{
		{"v1.0.0", c1, modules.RefTag},
		{"main", c2, modules.RefBranch},
		{"", c2, modules.RefBranch},
		{c1, c1, modules.RefCommit},
	} {
		commit, kind, _, err := g.Resolve(t.Context(), up.Dir, tt.ref)
		if err != nil || commit != tt.commit || kind != tt.kind {
			t.Errorf("Resolve(%q) = %s %s %v; want %s %s", tt.ref, commit, kind, err, tt.commit, tt.kind)
		}
	}
	if _, _, _, err := g.Resolve(t.Context(), up.Dir, "v9"); !errors.Is(err, modules.ErrRefNotFound) {
		t.Errorf("Resolve of a missing ref: %v", err)
	}
	if _, _, _, err := g.Resolve(t.Context(), filepath.Join(t.TempDir(), "nothing"), "main"); !errors.Is(err, modules.ErrFetch) {
		t.Errorf("Resolve of a missing repository: %v", err)
	}
	dir, err := g.Checkout(t.Context(), up.Dir, c1)
	if err != nil {
		t.Fatal(err)
	}
	if data, err := os.ReadFile(filepath.Join(dir, "scripts", "backup.sh")); err != nil || string(data) != "echo v1\n" {
		t.Fatalf("files at v1: %q %v", data, err)
	}
	if _, err := os.Stat(filepath.Join(dir, ".git")); !os.IsNotExist(err) {
		t.Fatal("the checkout has a .git")
	}
	if _, err := g.Checkout(t.Context(), up.Dir, strings.Repeat("ab", 20)); !errors.Is(err, modules.ErrCommitNotFound) {
		t.Fatalf("Checkout of an unknown commit: %v", err)
	}
}

// A module added at a tag stays at that commit when the tag moves upstream,
// until it is synced; one that follows a branch moves on sync.
func TestRegistryPinsUntilSync(t *testing.T) {
	t.Parallel()
	up := newUpstream(t)
	c1 := up.Commit("v1", manifest("echo v1\n"))
	up.Tag("v1.0.0", c1)
	reg := registry(t)
	e, err := reg.Add(t.Context(), up.Dir, "v1.0.0")
	if err != nil {
		t.Fatal(err)
	}
	if e.Name != "db" || e.Commit != c1 || e.Kind != modules.RefTag || e.Manifest.Commands["backup"].Help != "Back up one database" {
		t.Fatalf("added %+v", e)
	}
	c2 := up.Commit("v2", manifest("echo v2\n"))
	up.Tag("v1.0.0", c2)
	if got, _ := reg.Get(t.Context(), "db"); got.Commit != c1 {
		t.Fatalf("the pinned module moved without a sync: %s", got.Commit)
	}
	before, after, err := reg.Sync(t.Context(), "db")
	if err != nil || before.Commit != c1 || after.Commit != c2 {
		t.Fatalf("sync: %s -> %s, %v", before.Commit, after.Commit, err)
	}

	// A module pinned to a commit never moves.
	if err := reg.Remove(t.Context(), "db"); err != nil {
		t.Fatal(err)
	}
	if _, err := reg.Add(t.Context(), up.Dir, c1); err != nil {
		t.Fatal(err)
	}
	up.Commit("v3", manifest("echo v3\n"))
	if _, after, err := reg.Sync(t.Context(), "db"); err != nil || after.Commit != c1 {
		t.Fatalf("a commit-pinned module synced to %s, %v", after.Commit, err)
	}
}

func TestRegistryFollowsABranch(t *testing.T) {
	t.Parallel()
	up := newUpstream(t)
	c1 := up.Commit("v1", manifest("echo v1\n"))
	reg := registry(t)
	e, err := reg.Add(t.Context(), up.Dir, "main")
	if err != nil || e.Commit != c1 || e.Kind != modules.RefBranch || e.Ref != "main" {
		t.Fatalf("added %+v, %v", e, err)
	}
	c2 := up.Commit("v2", manifest("echo v2\n"))
	if _, after, err := reg.Sync(t.Context(), "db"); err != nil || after.Commit != c2 {
		t.Fatalf("sync of a branch: %s, %v", after.Commit, err)
	}
	list, err := reg.List(t.Context())
	if err != nil || len(list) != 1 || list[0].Commit != c2 {
		t.Fatalf("list: %+v %v", list, err)
	}
}

func TestRegistryErrors(t *testing.T) {
	t.Parallel()
	up := newUpstream(t)
	up.Commit("v1", manifest("echo v1\n"))
	reg := registry(t)
	if _, err := reg.Add(t.Context(), up.Dir, "main"); err != nil {
		t.Fatal(err)
	}
	if _, err := reg.Add(t.Context(), up.Dir, "main"); !errors.Is(err, modules.ErrModuleExists) {
		t.Fatalf("adding it twice: %v", err)
	}
	if _, err := reg.Add(t.Context(), up.Dir, "nope"); !errors.Is(err, modules.ErrRefNotFound) {
		t.Fatalf("a missing ref: %v", err)
	}
	if err := reg.Remove(t.Context(), "db"); err != nil {
		t.Fatal(err)
	}
	if _, err := reg.Get(t.Context(), "db"); !errors.Is(err, modules.ErrModuleNotFound) {
		t.Fatalf("after remove: %v", err)
	}
	if err := reg.Remove(t.Context(), "db"); !errors.Is(err, modules.ErrModuleNotFound) {
		t.Fatalf("remove twice: %v", err)
	}

	bad := newUpstream(t)
	bad.Commit("bad", map[string]string{"winch.yaml": "module: db\ncommands:\n  backup:\n    run: sh backup.sh\n"})
	_, err := reg.Add(t.Context(), bad.Dir, "main")
	var me *modules.ManifestError
	if !errors.As(err, &me) || !strings.Contains(err.Error(), ":winch.yaml:4:") {
		t.Fatalf("a bad manifest: %v", err)
	}
	core := newUpstream(t)
	core.Commit("core", map[string]string{"winch.yaml": "module: core\ncommands:\n  x:\n    run: [sh]\n"})
	if _, err := reg.Add(t.Context(), core.Dir, "main"); !errors.Is(err, modules.ErrReservedName) {
		t.Fatalf("a module named core: %v", err)
	}
	none := newUpstream(t)
	none.Commit("empty", map[string]string{"README": "no manifest\n"})
	if _, err := reg.Add(t.Context(), none.Dir, "main"); err == nil || !strings.Contains(err.Error(), "has no winch.yaml") {
		t.Fatalf("a repository without a manifest: %v", err)
	}
}

func TestAuthFromEnv(t *testing.T) {
	t.Setenv("WINCH_GIT_TOKEN", "tok")
	t.Setenv("WINCH_GIT_SSH_KEY", "")
	auth, err := modules.AuthFromEnv("https://git.example.com/ops/db.git")
	if err != nil || auth == nil || auth.Name() != "http-basic-auth" {
		t.Fatalf("https with a token: %v %v", auth, err)
	}
	if auth, err := modules.AuthFromEnv("/srv/git/db"); err != nil || auth != nil {
		t.Fatalf("a path needs no auth: %v %v", auth, err)
	}
	t.Setenv("WINCH_GIT_SSH_KEY", filepath.Join(t.TempDir(), "missing"))
	if _, err := modules.AuthFromEnv("ssh://git@git.example.com/ops/db.git"); err == nil || !strings.Contains(err.Error(), "WINCH_GIT_SSH_KEY") {
		t.Fatalf("a missing key file: %v", err)
	}
}
