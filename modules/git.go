package modules

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/transport"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	gitssh "github.com/go-git/go-git/v5/plumbing/transport/ssh"
	"github.com/go-git/go-git/v5/storage/memory"
)

// Ref kinds: how a module is pinned.
const (
	RefTag    = "tag"    // pinned to what the tag named when added or synced
	RefCommit = "commit" // pinned for good
	RefBranch = "branch" // follows the branch on sync
)

// Errors that carry a decision.
var (
	ErrRefNotFound    = errors.New("no such branch, tag or commit")
	ErrCommitNotFound = errors.New("commit not found in the repository")
	ErrFetch          = errors.New("cannot fetch the module's repository")
)

var fullHash = regexp.MustCompile(`^[0-9a-f]{40}$`)

// Git fetches modules' repositories into a cache, keyed by commit, so that a
// worker has the files of exactly the commit a request names. The cache is
// disposable: deleting it costs only a fetch.
type Git struct {
	// CacheDir holds a bare repository per URL and the files of each commit.
	CacheDir string
	// Auth, when set, is used for every remote; otherwise AuthFromEnv.
	Auth transport.AuthMethod

	mu    sync.Mutex
	locks map[string]*sync.Mutex // per URL: one fetch at a time
}

// AuthFromEnv reads credentials for Git remotes from the environment:
// WINCH_GIT_TOKEN (HTTPS, sent as the password of user WINCH_GIT_USER or
// "winch") or WINCH_GIT_SSH_KEY (a private key file, with
// WINCH_GIT_SSH_KEY_PASSPHRASE if it has one). Neither: no auth.
func AuthFromEnv(url string) (transport.AuthMethod, error) {
	if strings.HasPrefix(url, "http") {
		if tok := os.Getenv("WINCH_GIT_TOKEN"); tok != "" {
			user := os.Getenv("WINCH_GIT_USER")
			if user == "" {
				user = "winch"
			}
			return &githttp.BasicAuth{Username: user, Password: tok}, nil
		}
		return nil, nil
	}
	if key := os.Getenv("WINCH_GIT_SSH_KEY"); key != "" && (strings.HasPrefix(url, "ssh://") || strings.Contains(url, "@")) {
		auth, err := gitssh.NewPublicKeysFromFile("git", key, os.Getenv("WINCH_GIT_SSH_KEY_PASSPHRASE"))
		if err != nil {
			return nil, fmt.Errorf("WINCH_GIT_SSH_KEY %s: %w", key, err)
		}
		return auth, nil
	}
	return nil, nil
}

func (g *Git) auth(url string) (transport.AuthMethod, error) {
	if g.Auth != nil {
		return g.Auth, nil
	}
	return AuthFromEnv(url)
}

// Resolve turns a ref (a tag, a branch, a full commit hash, or "" for the
// default branch) into a commit, and says what kind of ref it was.
func (g *Git) Resolve(ctx context.Context, url, ref string) (commit, kind, branch string, err error) {
	if fullHash.MatchString(ref) {
		if _, err := g.Checkout(ctx, url, ref); err != nil {
			return "", "", "", err
		}
		return ref, RefCommit, "", nil
	}
	auth, err := g.auth(url)
	if err != nil {
		return "", "", "", err
	}
	remote := git.NewRemote(memory.NewStorage(), &config.RemoteConfig{Name: "origin", URLs: []string{url}})
	refs, err := remote.ListContext(ctx, &git.ListOptions{Auth: auth, PeelingOption: git.AppendPeeled})
	if err != nil {
		return "", "", "", fmt.Errorf("%w %s: %v", ErrFetch, url, err)
	}
	byName := map[string]*plumbing.Reference{}
	for _, r := range refs {
		byName[r.Name().String()] = r
	}
	if ref == "" {
		head, ok := byName["HEAD"]
		if !ok {
			return "", "", "", fmt.Errorf("%w: the repository %s has no HEAD; name a branch or tag", ErrRefNotFound, url)
		}
		if head.Type() == plumbing.SymbolicReference {
			ref = head.Target().Short()
		} else {
			for name, r := range byName {
				if strings.HasPrefix(name, "refs/heads/") && r.Hash() == head.Hash() {
					ref = strings.TrimPrefix(name, "refs/heads/")
				}
			}
		}
	}
	if r, ok := byName["refs/tags/"+ref+"^{}"]; ok { // an annotated tag, peeled
		return r.Hash().String(), RefTag, "", nil
	}
	if r, ok := byName["refs/tags/"+ref]; ok {
		return r.Hash().String(), RefTag, "", nil
	}
	if r, ok := byName["refs/heads/"+ref]; ok {
		return r.Hash().String(), RefBranch, ref, nil
	}
	return "", "", "", fmt.Errorf("%w: %q in %s", ErrRefNotFound, ref, url)
}

func (g *Git) urlLock(url string) *sync.Mutex {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.locks == nil {
		g.locks = map[string]*sync.Mutex{}
	}
	if g.locks[url] == nil {
		g.locks[url] = &sync.Mutex{}
	}
	return g.locks[url]
}

func urlKey(url string) string {
	sum := sha256.Sum256([]byte(url))
	return hex.EncodeToString(sum[:8])
}

// Checkout returns a directory holding the module's files at commit,
// fetching what the cache lacks. The directory must not be changed.
func (g *Git) Checkout(ctx context.Context, url, commit string) (string, error) {
	if !fullHash.MatchString(commit) {
		return "", fmt.Errorf("%w: %q is not a full commit hash", ErrCommitNotFound, commit)
	}
	base := filepath.Join(g.CacheDir, urlKey(url))
	dir := filepath.Join(base, commit)
	if _, err := os.Stat(dir); err == nil {
		return dir, nil
	}
	lock := g.urlLock(url)
	lock.Lock()
	defer lock.Unlock()
	if _, err := os.Stat(dir); err == nil {
		return dir, nil // another goroutine did it while we waited
	}
	repo, err := g.mirror(ctx, url, filepath.Join(base, "repo.git"), commit)
	if err != nil {
		return "", err
	}
	c, err := repo.CommitObject(plumbing.NewHash(commit))
	if err != nil {
		return "", fmt.Errorf("%w: %s in %s", ErrCommitNotFound, commit, url)
	}
	tmp, err := os.MkdirTemp(base, ".export-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	if err := export(c, tmp); err != nil {
		return "", fmt.Errorf("export %s at %s: %w", url, commit, err)
	}
	if err := os.Rename(tmp, dir); err != nil && !os.IsExist(err) {
		return "", err
	}
	return dir, nil
}

// mirror opens (or creates) the bare repository for url and fetches into it
// unless it already has commit.
func (g *Git) mirror(ctx context.Context, url, path, commit string) (*git.Repository, error) {
	repo, err := git.PlainOpen(path)
	if errors.Is(err, git.ErrRepositoryNotExists) {
		if err := os.MkdirAll(path, 0o755); err != nil {
			return nil, err
		}
		repo, err = git.PlainInit(path, true)
		if err == nil {
			_, err = repo.CreateRemote(&config.RemoteConfig{Name: "origin", URLs: []string{url}})
		}
	}
	if err != nil {
		return nil, fmt.Errorf("module cache %s: %w", path, err)
	}
	if _, err := repo.CommitObject(plumbing.NewHash(commit)); err == nil {
		return repo, nil
	}
	auth, err := g.auth(url)
	if err != nil {
		return nil, err
	}
	err = repo.FetchContext(ctx, &git.FetchOptions{
		RemoteName: "origin", Auth: auth, Tags: git.AllTags, Force: true,
		RefSpecs: []config.RefSpec{"+refs/heads/*:refs/remotes/origin/*", "+refs/tags/*:refs/tags/*"},
	})
	if err != nil && !errors.Is(err, git.NoErrAlreadyUpToDate) {
		return nil, fmt.Errorf("%w %s: %v", ErrFetch, url, err)
	}
	return repo, nil
}

// export writes the commit's tree to dir: files with their executable bit,
// symlinks as symlinks (files.Tar refuses those that leave the module).
func export(c *object.Commit, dir string) error {
	tree, err := c.Tree()
	if err != nil {
		return err
	}
	return tree.Files().ForEach(func(f *object.File) error {
		path := filepath.Join(dir, filepath.FromSlash(f.Name))
		if !strings.HasPrefix(path, dir+string(filepath.Separator)) {
			return fmt.Errorf("%s: a path outside the module", f.Name)
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return err
		}
		r, err := f.Reader()
		if err != nil {
			return err
		}
		defer r.Close()
		if f.Mode == filemode.Symlink {
			target, err := io.ReadAll(r)
			if err != nil {
				return err
			}
			return os.Symlink(string(target), path)
		}
		mode := os.FileMode(0o644)
		if f.Mode == filemode.Executable {
			mode = 0o755
		}
		out, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, r); err != nil {
			out.Close()
			return err
		}
		return out.Close()
	})
}
