// Package docker runs commands in Docker containers, isolated by default:
// no privileges, every capability dropped, no new privileges, a read-only
// root with a small /tmp, a non-root user, no network unless the command's
// manifest asks for one, memory, CPU and pids limits, and never the Docker
// socket. Output is streamed as it comes; the container is removed once its
// output is collected. The engine's init is PID 1 in each container: it
// relays signals to the command and reaps what it leaves.
package docker

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/stdcopy"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/winchhq/winch/schema"
	"github.com/winchhq/winch/worker"
	"github.com/winchhq/winch/worker/files"
)

// Name is the executor's name in events and job states.
const Name = "docker"

// Labels put on every container winch creates.
const (
	LabelJob     = "winch.job"
	LabelAttempt = "winch.attempt"
	LabelWorker  = "winch.worker"
	LabelCommand = "winch.command"
	// LabelDeployment tells installations sharing an engine apart.
	LabelDeployment = "winch.deployment"
)

// User is who commands run as: nobody, unless an image says otherwise.
const User = "65534:65534"

// DefaultImage runs commands whose module names no image.
const DefaultImage = "winch-toolbox:latest"

// Defaults are the limits of a command that declares none.
var Defaults = schema.Resources{Memory: 512 << 20, CPUs: 1, Pids: 256}

// API is the part of the Docker Engine API the executor uses.
type API interface {
	Ping(ctx context.Context) (types.Ping, error)
	ImageInspect(ctx context.Context, ref string, opts ...client.ImageInspectOption) (image.InspectResponse, error)
	ContainerCreate(ctx context.Context, cfg *container.Config, host *container.HostConfig, net *network.NetworkingConfig, platform *ocispec.Platform, name string) (container.CreateResponse, error)
	ContainerInspect(ctx context.Context, id string) (container.InspectResponse, error)
	ContainerAttach(ctx context.Context, id string, opts container.AttachOptions) (types.HijackedResponse, error)
	ContainerWait(ctx context.Context, id string, cond container.WaitCondition) (<-chan container.WaitResponse, <-chan error)
	ContainerStart(ctx context.Context, id string, opts container.StartOptions) error
	ContainerKill(ctx context.Context, id, signal string) error
	ContainerRemove(ctx context.Context, id string, opts container.RemoveOptions) error
	ContainerList(ctx context.Context, opts container.ListOptions) ([]container.Summary, error)
	CopyToContainer(ctx context.Context, id, path string, content io.Reader, opts container.CopyToContainerOptions) error
	ContainerStatPath(ctx context.Context, id, path string) (container.PathStat, error)
	Builder
}

var _ API = (*client.Client)(nil)

// Connect returns a client for the engine that DOCKER_HOST (or the default
// socket) names, speaking the engine's API version.
func Connect(ctx context.Context) (*client.Client, error) {
	c, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return nil, err
	}
	if _, err := c.Ping(ctx); err != nil {
		c.Close()
		return nil, fmt.Errorf("docker engine not reachable: %w", err)
	}
	return c, nil
}

// ErrImageMissing says a command's image is not on the engine.
var ErrImageMissing = errors.New("image not found on the docker engine")

// Executor runs each command in a container of its own.
type Executor struct {
	API API
	// DefaultImage runs commands whose module names none.
	DefaultImage string
	// KillGrace is how long a stopped command has between SIGTERM and
	// SIGKILL.
	KillGrace time.Duration
	Logger    *slog.Logger
	// Timings, when set, hears how long the engine took to create and to
	// start each container (the worker's metrics).
	Timings Timings
}

// Timings hears how long the container engine took.
type Timings interface {
	ContainerCreated(took time.Duration)
	ContainerStarted(took time.Duration)
}

var (
	_ worker.Executor = (*Executor)(nil)
	_ worker.Reapable = (*Executor)(nil)
)

// Name implements worker.Executor.
func (e *Executor) Name() string { return Name }

// image is the image the job runs in: its module's derived image (built
// here if need be), its module's image, or the default.
func (e *Executor) image(ctx context.Context, job *worker.Job) (string, error) {
	switch {
	case job.Build != "":
		ref := DerivedImage(job.Module, job.Commit)
		return ref, e.ensureBuilt(ctx, ref, job)
	case job.Image != "":
		return job.Image, nil
	case e.DefaultImage != "":
		return e.DefaultImage, nil
	}
	return DefaultImage, nil
}

// CheckImage says, before any job needs it, whether the default image is
// there, and if not, how to get it.
func (e *Executor) CheckImage(ctx context.Context) error {
	ref := e.DefaultImage
	if ref == "" {
		ref = DefaultImage
	}
	_, err := e.imageID(ctx, ref)
	return err
}

func (e *Executor) imageID(ctx context.Context, ref string) (string, error) {
	img, err := e.API.ImageInspect(ctx, ref)
	if cerrdefs.IsNotFound(err) {
		return "", fmt.Errorf("%w: %s (build the images winch needs from local files with `make images`; no registry is used)", ErrImageMissing, ref)
	}
	if err != nil {
		return "", fmt.Errorf("inspect image %s: %w", ref, err)
	}
	return img.ID, nil
}

// ContainerName is the container of one attempt of a job: deterministic, so
// that a second start of the same attempt finds the first container.
func ContainerName(job string, attempt int) string {
	return fmt.Sprintf("winch-%s-%d", job, attempt)
}

// Run implements worker.Executor.
//
// Its errors tell the worker what to do with the attempt. Before the
// command starts, a failure that is not the command's is
// worker.Transient, and the worker hands the attempt back: the engine
// unreachable or failing (a refused or missing socket, a timeout, an
// engine-side error on create, inspect, copy or attach), the image missing
// or not inspectable, a derived image whose build fails. What is the
// command's own is permanent: its program is not in the image, the engine
// refuses the container its manifest describes, its module holds a link out
// of itself, its parameters cannot be encoded. An error that comes of the
// job's context ending is returned as is: the worker knows why it ended.
//
// Transient is only returned before job.Starting is called. From there on
// the worker has recorded that the command may be running, and only an
// attempt that did not start may be handed back, so a failed start, a
// broken wait stream and anything after are permanent.
func (e *Executor) Run(ctx context.Context, job *worker.Job) (worker.Outcome, error) {
	notStarted := func(err error) (worker.Outcome, error) {
		return worker.Outcome{}, beforeStart(ctx, err)
	}
	ref, err := e.image(ctx, job)
	if err != nil {
		return notStarted(err)
	}
	imageID, err := e.imageID(ctx, ref)
	if err != nil {
		return notStarted(err)
	}
	id, created, err := e.create(ctx, job, ref)
	if err != nil {
		return notStarted(err)
	}
	// Whatever happens from here, the container goes, and with a context of
	// its own: the job's may be over.
	defer e.remove(id)

	inspect, err := e.API.ContainerInspect(ctx, id)
	if err != nil {
		return notStarted(fmt.Errorf("inspect container: %w", err))
	}
	if created {
		if err := e.copyParams(ctx, id, job.Params); err != nil {
			return notStarted(err)
		}
		if job.ModuleDir != "" {
			if err := e.copyModule(ctx, id, job.ModuleDir); err != nil {
				return notStarted(err)
			}
		}
	}

	// Attach and wait before starting, so that no output and no exit is
	// missed. The wait outlives a cancel of ctx: after a stop we still want
	// the exit.
	hj, err := e.API.ContainerAttach(ctx, id, container.AttachOptions{Stream: true, Stdout: true, Stderr: true})
	if err != nil {
		return notStarted(fmt.Errorf("attach to container: %w", err))
	}
	defer hj.Close()
	copied := make(chan error, 1)
	go func() {
		_, err := stdcopy.StdCopy(job.Stdout, job.Stderr, hj.Reader)
		copied <- err
	}()
	waitCtx, stopWaiting := context.WithCancel(context.Background())
	defer stopWaiting()
	exited := e.wait(waitCtx, id, container.WaitConditionNextExit)
	if inspect.State != nil && inspect.State.Running {
		// A container of this attempt already runs (a redelivery): follow it
		// rather than start a second.
		e.log().Info("following the running container of this attempt", "container", id, "job", job.ID)
	} else if inspect.State != nil && inspect.State.Status == "exited" {
		return e.outcome(id, inspect.State.ExitCode, true)
	} else {
		// The init, not the engine, executes the command: a program that is
		// not there would be its exit 127, after a start. It is looked for
		// first, so that it is an error and nothing starts.
		if err := e.checkProgram(ctx, id, imageID, job); err != nil {
			return notStarted(err)
		}
		// Starting's error is the worker's own, returned as is. From here
		// on no error is transient (see above).
		if err := job.Starting(); err != nil {
			return worker.Outcome{}, err
		}
		began := time.Now()
		if err := e.API.ContainerStart(ctx, id, container.StartOptions{}); err != nil {
			return worker.Outcome{}, fmt.Errorf("start container: %w", err)
		}
		if e.Timings != nil {
			e.Timings.ContainerStarted(time.Since(began))
		}
	}
	job.Started(worker.StartInfo{Executor: Name, Image: ref + "@" + imageID})

	var res waitResult
	stopped := false // by the worker: its SIGKILL is no OOM kill
	select {
	case res = <-exited:
	case <-ctx.Done():
		e.stop(id)
		stopped = true
		res = <-exited
	}
	if res.err != nil {
		return worker.Outcome{}, fmt.Errorf("wait for container: %w", res.err)
	}
	// The output stream ends with the container; give it the grace period
	// to drain, then cut it.
	select {
	case <-copied:
	case <-time.After(e.grace() + time.Second):
		hj.Close()
		<-copied
	}
	return e.outcome(id, int(res.code), !stopped)
}

// permanentError marks an error met before the start that is the command's
// own: a retry meets it again.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

func permanent(err error) error { return &permanentError{err: err} }

// beforeStart classifies an error met before the command was started (and
// before job.Starting): transient unless it is the command's own or comes
// of the job's context ending.
func beforeStart(ctx context.Context, err error) error {
	var p *permanentError
	if ctx.Err() != nil || errors.As(err, &p) {
		return err
	}
	return worker.Transient(err)
}

type waitResult struct {
	code int64
	err  error
}

// wait delivers the container's exit once. The client's own channels are
// unbuffered and would keep its goroutine alive if nobody read them; this
// one reads them until ctx ends.
func (e *Executor) wait(ctx context.Context, id string, cond container.WaitCondition) <-chan waitResult {
	out := make(chan waitResult, 1)
	resC, errC := e.API.ContainerWait(ctx, id, cond)
	go func() {
		select {
		case r := <-resC:
			out <- waitResult{code: r.StatusCode}
		case err := <-errC:
			out <- waitResult{err: err}
		}
	}()
	return out
}

func (e *Executor) outcome(id string, code int, mayBeOOM bool) (worker.Outcome, error) {
	out := worker.Outcome{ExitCode: code}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	// The engine learns of an OOM kill from its own event, which can come
	// after the exit, well after it on a loaded machine (CI saw more than 3
	// s while other tests ran containers): a container SIGKILLed by
	// something other than the worker (exit 137) gets up to oomWait for
	// it. The worker's own stops (cancel, timeout, drain) do not wait.
	for start := time.Now(); ; {
		info, err := e.API.ContainerInspect(ctx, id)
		if err == nil && info.State != nil && info.State.OOMKilled {
			out.Reason = schema.ReasonOOMKilled
			return out, nil
		}
		if err != nil || code != 128+9 || !mayBeOOM || time.Since(start) > oomWait {
			return out, nil
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// oomWait bounds how long an unexplained SIGKILL waits for the engine to
// say that it was the OOM killer's.
const oomWait = 10 * time.Second

// create makes the attempt's container, or finds the one a previous
// delivery of the same attempt made.
func (e *Executor) create(ctx context.Context, job *worker.Job, ref string) (id string, created bool, err error) {
	spec := job.Spec
	res := spec.Resources
	if res.Memory == 0 {
		res.Memory = Defaults.Memory
	}
	if res.CPUs == 0 {
		res.CPUs = Defaults.CPUs
	}
	if res.Pids == 0 {
		res.Pids = Defaults.Pids
	}
	netMode := spec.Network
	if netMode == "" {
		netMode = "none"
	}
	env := append([]string{
		"PATH=" + searchPath,
		"HOME=/tmp",
		"TMPDIR=/tmp",
		"WINCH_PARAMS_FILE=" + paramsDir + "/params.json",
	}, job.Env...)
	cfg := &container.Config{
		Image: ref,
		Cmd:   spec.Run,
		// An image's entrypoint would wrap the argv; the manifest's argv is
		// what runs.
		Entrypoint:      []string{},
		Env:             env,
		User:            User,
		AttachStdout:    true,
		AttachStderr:    true,
		NetworkDisabled: netMode == "none",
		Labels: map[string]string{
			LabelJob:        job.ID,
			LabelAttempt:    strconv.Itoa(job.Attempt),
			LabelWorker:     job.Worker,
			LabelCommand:    job.Command,
			LabelDeployment: job.Deployment,
		},
	}
	pids := res.Pids
	// Files are copied into volumes of the container's own (the read-only
	// root takes no copies), removed with it: never bind mounts, so that
	// this works when the worker itself runs in a container.
	mounts := []mount.Mount{{Type: mount.TypeVolume, Target: paramsDir}}
	if job.ModuleDir != "" {
		mounts = append(mounts, mount.Mount{Type: mount.TypeVolume, Target: moduleDir})
	}
	cfg.WorkingDir = workDir(job)
	withInit := true
	host := &container.HostConfig{
		// The engine's init is PID 1 and runs the command: it passes
		// signals on (a command that sets no handler ends on SIGTERM, not
		// after the kill grace) and reaps orphaned processes.
		Init:           &withInit,
		NetworkMode:    container.NetworkMode(netMode),
		Privileged:     false,
		CapDrop:        []string{"ALL"},
		SecurityOpt:    []string{"no-new-privileges"},
		ReadonlyRootfs: true,
		Tmpfs:          map[string]string{"/tmp": "rw,nosuid,nodev,size=64m"},
		Mounts:         mounts,
		// Output reaches winch through the attach stream; the engine need
		// not keep a second copy on disk.
		LogConfig: container.LogConfig{Type: "none"},
		Resources: container.Resources{
			Memory:     int64(res.Memory),
			MemorySwap: int64(res.Memory), // no swap beyond the limit
			NanoCPUs:   int64(res.CPUs * 1e9),
			PidsLimit:  &pids,
		},
	}
	name := ContainerName(job.ID, job.Attempt)
	began := time.Now()
	resp, err := e.API.ContainerCreate(ctx, cfg, host, nil, nil, name)
	if err == nil && e.Timings != nil {
		e.Timings.ContainerCreated(time.Since(began))
	}
	if cerrdefs.IsConflict(err) {
		existing, ierr := e.API.ContainerInspect(ctx, name)
		if ierr != nil {
			return "", false, fmt.Errorf("container %s exists but cannot be inspected: %w", name, ierr)
		}
		return existing.ID, false, nil
	}
	if cerrdefs.IsInvalidArgument(err) {
		// The engine refuses the container the manifest describes (limits,
		// network, an empty argv): so would any other.
		return "", false, permanent(fmt.Errorf("create container: %w", err))
	}
	if err != nil {
		return "", false, fmt.Errorf("create container: %w", err)
	}
	return resp.ID, true, nil
}

// paramsDir holds the parameter file inside the container, moduleDir the
// module's files.
const (
	paramsDir = "/winch"
	moduleDir = "/module"
)

// searchPath is the commands' PATH.
const searchPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// workDir is where the command runs: in its module's files, or in /tmp.
func workDir(job *worker.Job) string {
	if job.ModuleDir != "" {
		return moduleDir
	}
	return "/tmp"
}

func (e *Executor) copyModule(ctx context.Context, id, dir string) error {
	pr, tarred := tarStream(dir)
	err := e.API.CopyToContainer(ctx, id, moduleDir, pr, container.CopyToContainerOptions{})
	_ = pr.CloseWithError(err)
	if terr := <-tarred; errors.Is(terr, files.ErrEscape) {
		return permanent(fmt.Errorf("copy the module's files into the container: %w", terr))
	}
	if err != nil {
		return fmt.Errorf("copy the module's files into the container: %w", err)
	}
	return nil
}

// tarStream packs dir into a pipe. Its reader's user closes it when done;
// the channel then says how the packing ended. The engine's client wraps
// an error of the stream it sends as a failure to connect, so whether the
// module's files were at fault is told from the packing itself.
func tarStream(dir string) (*io.PipeReader, <-chan error) {
	pr, pw := io.Pipe()
	tarred := make(chan error, 1)
	go func() {
		err := files.Tar(dir, pw)
		pw.CloseWithError(err)
		tarred <- err
	}()
	return pr, tarred
}

func (e *Executor) copyParams(ctx context.Context, id string, params map[string]any) error {
	data, err := json.Marshal(params)
	if err != nil {
		return permanent(fmt.Errorf("encode parameters: %w", err))
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Name: "params.json", Mode: 0o440, Size: int64(len(data)), Uid: 65534, Gid: 65534, ModTime: time.Now()}); err != nil {
		return err
	}
	if _, err := tw.Write(data); err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if err := e.API.CopyToContainer(ctx, id, paramsDir, &buf, container.CopyToContainerOptions{}); err != nil {
		return fmt.Errorf("copy parameters into the container: %w", err)
	}
	return nil
}

func (e *Executor) grace() time.Duration {
	if e.KillGrace <= 0 {
		return time.Second
	}
	return e.KillGrace
}

// stop sends SIGTERM, then SIGKILL after the grace period if the container
// is still running.
func (e *Executor) stop(id string) {
	ctx, cancel := context.WithTimeout(context.Background(), e.grace()+10*time.Second)
	defer cancel()
	if err := e.API.ContainerKill(ctx, id, "SIGTERM"); err != nil && !isGone(err) {
		e.log().Warn("SIGTERM to container", "container", id, "err", err)
	}
	select {
	case res := <-e.wait(ctx, id, container.WaitConditionNotRunning):
		if res.err == nil {
			return
		}
	case <-time.After(e.grace()):
	}
	if err := e.API.ContainerKill(ctx, id, "SIGKILL"); err != nil && !isGone(err) {
		e.log().Warn("SIGKILL to container", "container", id, "err", err)
	}
}

func (e *Executor) remove(id string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := e.API.ContainerRemove(ctx, id, container.RemoveOptions{Force: true, RemoveVolumes: true})
	switch {
	case err == nil, cerrdefs.IsNotFound(err):
	case cerrdefs.IsConflict(err):
		// Another run of the same attempt is removing it already.
		e.log().Debug("remove container", "container", id, "err", err)
	default:
		e.log().Error("remove container", "container", id, "err", err)
	}
}

func isGone(err error) bool {
	return cerrdefs.IsNotFound(err) || cerrdefs.IsConflict(err) || strings.Contains(err.Error(), "is not running")
}

func (e *Executor) log() *slog.Logger {
	if e.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return e.Logger
}

// Leftovers implements worker.Reapable: winch's containers, by label.
func (e *Executor) Leftovers(ctx context.Context, deployment, job string) ([]worker.Leftover, error) {
	f := filters.NewArgs(filters.Arg("label", LabelDeployment+"="+deployment), filters.Arg("label", LabelJob))
	if job != "" {
		f = filters.NewArgs(filters.Arg("label", LabelDeployment+"="+deployment), filters.Arg("label", LabelJob+"="+job))
	}
	list, err := e.API.ContainerList(ctx, container.ListOptions{All: true, Filters: f})
	if err != nil {
		return nil, fmt.Errorf("list containers: %w", err)
	}
	out := make([]worker.Leftover, 0, len(list))
	for _, c := range list {
		attempt, _ := strconv.Atoi(c.Labels[LabelAttempt])
		out = append(out, worker.Leftover{
			ID: c.ID, JobID: c.Labels[LabelJob], Attempt: attempt, Worker: c.Labels[LabelWorker],
			Created: time.Unix(c.Created, 0), Started: c.State != "created",
		})
	}
	return out, nil
}

// Remove implements worker.Reapable.
func (e *Executor) Remove(ctx context.Context, l worker.Leftover) error {
	e.stop(l.ID)
	err := e.API.ContainerRemove(ctx, l.ID, container.RemoveOptions{Force: true, RemoveVolumes: true})
	switch {
	case err == nil, cerrdefs.IsNotFound(err):
		return nil
	case cerrdefs.IsConflict(err):
		// Someone else (a reaper, another worker's claim) is removing it
		// already: it is going; wait until it is gone, as the caller
		// relies on it (a job never runs in two containers at once).
		for {
			if _, err := e.API.ContainerInspect(ctx, l.ID); cerrdefs.IsNotFound(err) {
				return nil
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("remove container %s: another removal did not end: %w", l.ID, ctx.Err())
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	return fmt.Errorf("remove container %s: %w", l.ID, err)
}
