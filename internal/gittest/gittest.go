// Package gittest makes real Git repositories for tests: a module's
// upstream, with commits, tags and branches, served from a directory.
package gittest

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// Repo is a repository in a temporary directory; Dir is its URL.
type Repo struct {
	t    testing.TB
	Dir  string
	repo *git.Repository
}

// New makes an empty repository whose default branch is main.
func New(t testing.TB) *Repo {
	t.Helper()
	dir := t.TempDir()
	repo, err := git.PlainInitWithOptions(dir, &git.PlainInitOptions{InitOptions: git.InitOptions{DefaultBranch: plumbing.NewBranchReferenceName("main")}})
	if err != nil {
		t.Fatal(err)
	}
	return &Repo{t: t, Dir: dir, repo: repo}
}

func sig() *object.Signature {
	return &object.Signature{Name: "winch test", Email: "test@example.com", When: time.Now()}
}

// Commit writes files and commits them; it returns the commit hash.
func (r *Repo) Commit(msg string, files map[string]string) string {
	r.t.Helper()
	wt, err := r.repo.Worktree()
	if err != nil {
		r.t.Fatal(err)
	}
	for name, content := range files {
		path := filepath.Join(r.Dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			r.t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			r.t.Fatal(err)
		}
		if _, err := wt.Add(name); err != nil {
			r.t.Fatal(err)
		}
	}
	h, err := wt.Commit(msg, &git.CommitOptions{Author: sig()})
	if err != nil {
		r.t.Fatal(err)
	}
	return h.String()
}

// Symlink adds a symbolic link to the next commit.
func (r *Repo) Symlink(name, target string) {
	r.t.Helper()
	if err := os.Symlink(target, filepath.Join(r.Dir, name)); err != nil {
		r.t.Fatal(err)
	}
	wt, err := r.repo.Worktree()
	if err != nil {
		r.t.Fatal(err)
	}
	if _, err := wt.Add(name); err != nil {
		r.t.Fatal(err)
	}
}

// Tag points an annotated tag at commit, moving it if it exists.
func (r *Repo) Tag(name, commit string) {
	r.t.Helper()
	_ = r.repo.DeleteTag(name)
	if _, err := r.repo.CreateTag(name, plumbing.NewHash(commit), &git.CreateTagOptions{Message: name, Tagger: sig()}); err != nil {
		r.t.Fatal(err)
	}
}
