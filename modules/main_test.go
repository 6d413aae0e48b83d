package modules_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/winchhq/winch/broker"
	"github.com/winchhq/winch/internal/testenv"
	"github.com/winchhq/winch/modules"
)

var natsURL string

func TestMain(m *testing.M) {
	os.Exit(testenv.WithNATS(func(_, url string) int {
		natsURL = url
		return m.Run()
	}))
}

// upstream is a real Git repository made in the test: a module's origin.
type upstream struct {
	t    *testing.T
	dir  string
	repo *git.Repository
}

func newUpstream(t *testing.T) *upstream {
	t.Helper()
	dir := t.TempDir()
	repo, err := git.PlainInitWithOptions(dir, &git.PlainInitOptions{InitOptions: git.InitOptions{DefaultBranch: plumbing.NewBranchReferenceName("main")}})
	if err != nil {
		t.Fatal(err)
	}
	return &upstream{t: t, dir: dir, repo: repo}
}

// commit writes files (a nil content removes one) and commits them.
func (u *upstream) commit(msg string, files map[string]string) string {
	u.t.Helper()
	wt, err := u.repo.Worktree()
	if err != nil {
		u.t.Fatal(err)
	}
	for name, content := range files {
		path := filepath.Join(u.dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			u.t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			u.t.Fatal(err)
		}
		if _, err := wt.Add(name); err != nil {
			u.t.Fatal(err)
		}
	}
	h, err := wt.Commit(msg, &git.CommitOptions{Author: &object.Signature{Name: "t", Email: "t@example.com", When: time.Now()}})
	if err != nil {
		u.t.Fatal(err)
	}
	return h.String()
}

// tag points an annotated tag at commit, moving it if it exists.
func (u *upstream) tag(name, commit string) {
	u.t.Helper()
	_ = u.repo.DeleteTag(name)
	if _, err := u.repo.CreateTag(name, plumbing.NewHash(commit), &git.CreateTagOptions{
		Message: name, Tagger: &object.Signature{Name: "t", Email: "t@example.com", When: time.Now()},
	}); err != nil {
		u.t.Fatal(err)
	}
}

func manifest(script string) map[string]string {
	return map[string]string{
		"winch.yaml": `module: db
description: Database chores
commands:
  backup:
    help: Back up one database
    params:
      name: {type: string, required: true, pattern: '^[a-z][a-z0-9_]*$'}
    run: ["sh", "scripts/backup.sh"]
    timeout: 1m
`,
		"scripts/backup.sh": script,
	}
}

// registry is a registry on the shared server, in a bucket of the test's
// own, with its own cache.
func registry(t *testing.T) *modules.Registry {
	t.Helper()
	nc, err := broker.Connect(t.Context(), broker.ConnectConfig{URL: natsURL})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.CreateKeyValue(t.Context(), jetstream.KeyValueConfig{Bucket: "MODS_" + sanitize(t.Name())})
	if err != nil {
		t.Fatal(err)
	}
	return &modules.Registry{KV: kv, Git: &modules.Git{CacheDir: t.TempDir()}}
}

func sanitize(s string) string {
	out := []rune{}
	for _, r := range s {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
			out = append(out, r)
		} else {
			out = append(out, '_')
		}
	}
	return string(out)
}
