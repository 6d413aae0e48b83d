package docker

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"strings"
	"sync"

	cerrdefs "github.com/containerd/errdefs"

	"github.com/winchhq/winch/worker"
)

// ErrNoProgram says a command's program is not in its container.
var ErrNoProgram = errors.New("executable file not found")

// ErrNotExecutable says a command's program is there but cannot be run.
var ErrNotExecutable = errors.New("not an executable file")

// fileKind is what a path of a container holds, as far as running it goes.
type fileKind int

const (
	missing fileKind = iota
	notExecutable
	executable
)

// imageFiles remembers what was found at a path of an image, for all
// executors (an image ID names its content, whatever the engine):
// imageID + "\x00" + path to a fileKind.
var imageFiles sync.Map

// checkProgram looks for the command's program in its created, not yet
// started, container, the way the init will look for it: a name with a
// slash from the working directory, a bare name on PATH. A program that is
// not there, or not executable, is a permanent error: the command cannot
// start, now or on a retry. What the engine answers otherwise (unreachable)
// is returned for the caller to classify.
//
// Looking costs a request to the engine a path, each some tens of
// milliseconds, so what is found in the image itself is remembered per
// image; paths into the volumes and /tmp are looked at each time.
func (e *Executor) checkProgram(ctx context.Context, id, imageID string, job *worker.Job) error {
	if len(job.Spec.Run) == 0 {
		return nil // the engine refused it at create
	}
	argv0 := job.Spec.Run[0]
	var candidates []string
	if strings.Contains(argv0, "/") {
		candidates = []string{inDir(workDir(job), argv0)}
	} else {
		for _, dir := range strings.Split(searchPath, ":") {
			candidates = append(candidates, inDir(workDir(job), path.Join(dir, argv0)))
		}
	}
	found := missing
	for _, p := range candidates {
		kind, err := e.lookFile(ctx, id, imageID, p)
		if err != nil {
			return fmt.Errorf("look for the program %q in the container: %w", argv0, err)
		}
		if kind == executable {
			return nil
		}
		found = max(found, kind)
	}
	if found == notExecutable {
		return permanent(fmt.Errorf("cannot run %q: %w", argv0, ErrNotExecutable))
	}
	if strings.Contains(argv0, "/") {
		return permanent(fmt.Errorf("cannot run %q: %w", argv0, ErrNoProgram))
	}
	return permanent(fmt.Errorf("cannot run %q: %w in $PATH", argv0, ErrNoProgram))
}

func inDir(dir, p string) string {
	if path.IsAbs(p) {
		return path.Clean(p)
	}
	return path.Join(dir, p)
}

// volatile says whether p is outside the image's own files: in a volume of
// the container or its tmpfs.
func volatile(p string) bool {
	for _, dir := range []string{paramsDir, moduleDir, "/tmp"} {
		if p == dir || strings.HasPrefix(p, dir+"/") {
			return true
		}
	}
	return false
}

// lookFile says what p holds in the container, following symbolic links.
func (e *Executor) lookFile(ctx context.Context, id, imageID, p string) (fileKind, error) {
	key := imageID + "\x00" + p
	if v, ok := imageFiles.Load(key); ok {
		return v.(fileKind), nil
	}
	cacheable := !volatile(p)
	kind := notExecutable
	for hops := 0; ; hops++ {
		st, err := e.API.ContainerStatPath(ctx, id, p)
		if cerrdefs.IsNotFound(err) {
			kind = missing
			break
		}
		if err != nil {
			return missing, err
		}
		if st.Mode&os.ModeSymlink == 0 {
			if st.Mode.IsRegular() && st.Mode.Perm()&0o111 != 0 {
				kind = executable
			}
			break
		}
		// The engine gives the link's target resolved within the container.
		if st.LinkTarget == "" || st.LinkTarget == p || hops == 8 {
			break // a loop: not something to run
		}
		p = st.LinkTarget
		cacheable = cacheable && !volatile(p)
	}
	if cacheable {
		imageFiles.Store(key, kind)
	}
	return kind, nil
}
