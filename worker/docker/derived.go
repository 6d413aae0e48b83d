package docker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"syscall"
	"time"

	cerrdefs "github.com/containerd/errdefs"

	"github.com/winchhq/winch/worker"
	"github.com/winchhq/winch/worker/files"
)

// DerivedImage names the image built from a module's Dockerfile at commit.
func DerivedImage(module, commit string) string {
	if len(commit) > 12 {
		commit = commit[:12]
	}
	return "winch-mod-" + module + ":" + commit
}

var unsafeFileChars = regexp.MustCompile(`[^A-Za-z0-9_.-]`)

// ensureBuilt builds the module's image unless the engine has it. Builds of
// the same image are serialized by a lock file, across the executors of a
// process and the processes of a host, and whoever gets the lock second
// finds the image built: two workers asking at once build it once.
func (e *Executor) ensureBuilt(ctx context.Context, ref string, job *worker.Job) error {
	if _, err := e.API.ImageInspect(ctx, ref); err == nil {
		return nil
	} else if !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("inspect image %s: %w", ref, err)
	}
	if job.ModuleDir == "" {
		// The worker did not hand the files over: no retry changes that.
		return permanent(fmt.Errorf("module %s builds its image, but its files are not here", job.Module))
	}
	lockPath := filepath.Join(os.TempDir(), "winch-build-"+unsafeFileChars.ReplaceAllString(ref, "_")+".lock")
	lock, err := os.OpenFile(lockPath, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return err
	}
	defer lock.Close()
	if err := flock(ctx, lock); err != nil {
		return err
	}
	defer func() { _ = syscall.Flock(int(lock.Fd()), syscall.LOCK_UN) }()
	if _, err := e.API.ImageInspect(ctx, ref); err == nil {
		return nil // built by whoever held the lock
	}
	out := job.BuildLog
	if out == nil {
		out = io.Discard
	}
	fmt.Fprintf(out, "building %s from %s at %s\n", ref, job.Build, job.Commit)
	pr, tarred := tarStream(job.ModuleDir)
	err = buildImageFrom(ctx, e.API, pr, job.Build, ref, out)
	_ = pr.CloseWithError(err)
	if terr := <-tarred; errors.Is(terr, files.ErrEscape) {
		// The module at this commit holds a link out of itself: so it will
		// at the next try.
		return permanent(fmt.Errorf("build the image of module %s: %w", job.Module, terr))
	}
	if err != nil {
		// A failed build is not the command's: the worker hands the attempt
		// back (see Run).
		return fmt.Errorf("build the image of module %s: %w", job.Module, err)
	}
	return nil
}

// flock takes an exclusive lock on f, giving up when ctx ends.
func flock(ctx context.Context, f *os.File) error {
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return nil
		}
		if err != syscall.EWOULDBLOCK {
			return fmt.Errorf("lock %s: %w", f.Name(), err)
		}
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
