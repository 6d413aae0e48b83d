package docker_test

import (
	"context"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/docker/docker/client"

	"github.com/winchhq/winch/internal/jobtest"
	"github.com/winchhq/winch/schema"
	"github.com/winchhq/winch/worker"
	"github.com/winchhq/winch/worker/docker"
)

// engineDownFor runs its first `down` attempts with a docker executor whose
// engine is not there (DOCKER_HOST pointing at nothing), then with the real
// one: a blip of the engine, as a worker meets it.
type engineDownFor struct {
	down        int32
	dead, alive *docker.Executor
	runs        atomic.Int32
}

func (e *engineDownFor) Name() string { return docker.Name }

func (e *engineDownFor) Run(ctx context.Context, job *worker.Job) (worker.Outcome, error) {
	if e.runs.Add(1) <= e.down {
		return e.dead.Run(ctx, job)
	}
	return e.alive.Run(ctx, job)
}

func nowhere(t *testing.T) *docker.Executor {
	t.Helper()
	c, err := client.NewClientWithOpts(client.WithHost("unix:///nonexistent/docker.sock"), client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return &docker.Executor{API: c}
}

// An engine that does not answer is not the command's failure: the attempt
// is handed back and the next one runs it. An engine that never answers
// ends the job on the last delivery, as not started.
func TestEngineBlipHandsTheAttemptBack(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name  string
		down  int32
		state schema.State
	}{
		{"one attempt", 1, schema.StateSucceeded},
		{"every attempt", 100, schema.StateFailed},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			exec := &engineDownFor{down: tt.down, dead: nowhere(t), alive: &docker.Executor{API: api}}
			e.StartWorker(worker.Config{Executor: exec})
			id := e.Submit("core.echo", map[string]any{"text": "through"})
			events := e.Follow(id)
			end := jobtest.Last(events)
			if end.State != tt.state {
				t.Fatalf("ended %s (%s): %q: %s", end.State, end.Reason, end.Error, jobtest.Kinds(events))
			}
			released := slices.IndexFunc(events, func(ev schema.Event) bool { return ev.Kind == schema.KindReleased })
			if released < 0 || !strings.Contains(events[released].Error, "could not start the command") {
				t.Fatalf("no released event: %s", jobtest.Kinds(events))
			}
			switch tt.state {
			case schema.StateSucceeded:
				if end.Attempt != 2 || jobtest.Output(events, schema.Stdout) != "through\n" {
					t.Fatalf("attempt %d, output %q", end.Attempt, jobtest.Output(events, schema.Stdout))
				}
			default:
				if end.Reason != schema.ReasonNotStarted || int(exec.runs.Load()) != jobtest.Topology.MaxDeliver {
					t.Fatalf("reason %q after %d runs, want %q after %d", end.Reason, exec.runs.Load(), schema.ReasonNotStarted, jobtest.Topology.MaxDeliver)
				}
			}
		})
	}
}
