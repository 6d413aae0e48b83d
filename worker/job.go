// Package worker consumes requests from a queue, claims each job in the state
// bucket, runs it through an executor and emits its events. Executors live
// in subpackages (worker/process, worker/docker).
package worker

import (
	"context"
	"io"
	"time"

	"github.com/winchhq/winch/schema"
)

// Executor runs one job's command. Run returns when the command has ended;
// when ctx is cancelled it stops the command (a grace period, then a kill)
// and returns. An error means the command could not be run at all.
type Executor interface {
	Name() string
	Run(ctx context.Context, job *Job) (Outcome, error)
}

// Job is what an executor needs to run one attempt of a command.
type Job struct {
	ID      string
	Attempt int
	Worker  string // the worker running it, for labels
	// Deployment tells one winch installation's jobs from another's on a
	// shared engine, so that a reaper removes only its own.
	Deployment string
	Command    string // module.command
	Spec       schema.CommandSpec
	Image      string
	// Module and Commit name where the command comes from.
	Module string
	Commit string
	// Build is the Dockerfile of a module whose image is built from its
	// files; BuildLog receives the build's output, when the executor builds.
	Build    string
	BuildLog io.Writer
	// ModuleDir holds the module's files at the pinned commit; executors
	// copy them (never mount them) to where the command runs, /module in a
	// container, and run the command there. Empty for the core module.
	ModuleDir string
	// Params are validated and normalized; Env carries them, and the job's
	// identity, as WINCH_* variables. Executors write Params to a JSON file
	// named by WINCH_PARAMS_FILE.
	Params map[string]any
	Env    []string
	// Stdout and Stderr receive the command's output; they are safe for
	// concurrent use.
	Stdout, Stderr io.Writer
	// Starting must be called just before the command is started. It
	// records that the command may be running, so that a worker that dies
	// from here on is not taken to have died before the start. If it returns
	// an error, the command must not be started and Run returns the error.
	Starting func() error
	// Started is called once, when the command is running.
	Started func(StartInfo)
}

// StartInfo says where a command runs.
type StartInfo struct {
	Executor string
	Image    string // with its digest, for containers
	PID      int
}

// Outcome is how a command ended.
type Outcome struct {
	ExitCode int
	Reason   string // schema.ReasonOOMKilled, or empty
}

// Reapable is implemented by executors whose commands can outlive the
// worker that started them (a container runs on when its worker is
// killed). The worker uses it to clear what earlier attempts of a job left
// before it runs the job again, and to reap what dead workers left behind.
type Reapable interface {
	// Leftovers lists what the executor is running or holding for jobs of
	// deployment (see Job.Deployment): all of it when job is empty, else
	// only that job's.
	Leftovers(ctx context.Context, deployment, job string) ([]Leftover, error)
	// Remove stops a leftover (grace period, then kill) and removes it.
	Remove(ctx context.Context, l Leftover) error
}

// Leftover is one thing an executor holds for one attempt of a job.
type Leftover struct {
	ID      string
	JobID   string
	Attempt int
	Worker  string
	Created time.Time
	// Started says whether the command was started in it.
	Started bool
}
