package docker_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/image"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/winchhq/winch/internal/gittest"
	"github.com/winchhq/winch/internal/jobtest"
	"github.com/winchhq/winch/internal/testenv"
	"github.com/winchhq/winch/modules"
	"github.com/winchhq/winch/schema"
	"github.com/winchhq/winch/worker"
	"github.com/winchhq/winch/worker/docker"
)

// moduleWorkers registers the module at up (main) in a registry of the
// test's own and returns an env whose workers resolve commands through it,
// each worker with its own module cache and its own executor.
func moduleWorkers(t *testing.T, up *gittest.Repo) (*jobtest.Env, modules.Entry) {
	t.Helper()
	if dockerErr != nil {
		testenv.Missing(t, "docker", dockerErr)
	}
	e := jobtest.New(t, natsURL, nil)
	kv, err := e.JS.CreateKeyValue(t.Context(), jetstream.KeyValueConfig{Bucket: fmt.Sprintf("MODS_%d", time.Now().UnixNano())})
	if err != nil {
		t.Fatal(err)
	}
	reg := &modules.Registry{KV: kv, Git: &modules.Git{CacheDir: t.TempDir()}}
	entry, err := reg.Add(t.Context(), up.Dir, "main")
	if err != nil {
		t.Fatal(err)
	}
	core, _ := modules.NewCatalog(modules.Core())
	env := jobtest.New(t, natsURL, func(cfg *worker.Config) {
		cfg.Catalog = &modules.Resolver{Core: core, Registry: &modules.Registry{KV: kv, Git: &modules.Git{CacheDir: t.TempDir()}}}
		cfg.Executor = &docker.Executor{API: api, KillGrace: 500 * time.Millisecond}
	})
	return env, entry
}

const imageModule = `module: %s
image: ""
build: Dockerfile
commands:
  hello:
    help: Print what the image holds, and hold the worker's one slot a second
    run: ["sh", "-c", "cat /hello.txt; sleep 1"]
`

// Two workers asking for a module's image at once build it once; the build
// log is an event of the job that built it, and both jobs run in it. Each
// worker has one slot and each job holds it through the build and a second
// more, so the second job goes to the other worker.
func TestDerivedImageBuiltOncePerCommit(t *testing.T) {
	t.Parallel()
	name := fmt.Sprintf("img%d", time.Now().UnixNano()%1e9)
	up := gittest.New(t)
	up.Commit("v1", map[string]string{
		"winch.yaml": fmt.Sprintf(imageModule, name),
		"Dockerfile": "FROM " + docker.DefaultImage + "\nCOPY hello.txt /hello.txt\n",
		"hello.txt":  "hello from the module's image\n",
	})
	e, entry := moduleWorkers(t, up)
	ref := docker.DerivedImage(name, entry.Commit)
	t.Cleanup(func() { _, _ = api.ImageRemove(context.Background(), ref, image.RemoveOptions{Force: true}) })
	e.StartWorker(worker.Config{ID: "build-1-" + e.Queue, Concurrency: 1})
	e.StartWorker(worker.Config{ID: "build-2-" + e.Queue, Concurrency: 1})
	var ids []string
	for range 2 {
		ids = append(ids, e.Submit(name+".hello", nil, func(r *schema.Request) { r.ModuleCommit = entry.Commit }))
	}
	builds, workers := 0, map[string]bool{}
	for _, id := range ids {
		events := e.Follow(id)
		end := jobtest.Last(events)
		if end.State != schema.StateSucceeded || jobtest.Output(events, schema.Stdout) != "hello from the module's image\n" {
			t.Fatalf("job %s ended %s (%s): %q", id, end.State, end.Error, jobtest.Output(events, schema.Stdout))
		}
		if strings.Contains(jobtest.Output(events, schema.StreamBuild), "building "+ref) {
			builds++
		}
		for _, ev := range events {
			if ev.Kind == schema.KindStarted && !strings.HasPrefix(ev.Image, ref+"@sha256:") {
				t.Fatalf("ran in %s, not %s", ev.Image, ref)
			}
		}
		workers[e.Status(id).Worker] = true
	}
	if builds != 1 || len(workers) != 2 {
		t.Fatalf("%d builds for %d workers, want 1 for 2", builds, len(workers))
	}
}

// A module's build sees only the module: a Dockerfile that reaches out of
// it, or a link that points out of it, fails the job.
func TestDerivedImageCannotReachOutsideTheModule(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name, want string
		setup      func(up *gittest.Repo)
	}{
		{"dockerfile", "outside the build context", func(up *gittest.Repo) {
			up.Commit("v1", map[string]string{"Dockerfile": "FROM " + docker.DefaultImage + "\nCOPY ../../../etc/passwd /stolen\n"})
		}},
		{"symlink", "points outside the module", func(up *gittest.Repo) {
			up.Symlink("stolen", "/etc/passwd")
			up.Commit("v1", map[string]string{"Dockerfile": "FROM " + docker.DefaultImage + "\nCOPY stolen /stolen\n"})
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			name := fmt.Sprintf("esc%d", time.Now().UnixNano()%1e9)
			up := gittest.New(t)
			up.Commit("manifest", map[string]string{"winch.yaml": fmt.Sprintf(imageModule, name)})
			tt.setup(up)
			e, entry := moduleWorkers(t, up)
			t.Cleanup(func() {
				_, _ = api.ImageRemove(context.Background(), docker.DerivedImage(name, entry.Commit), image.RemoveOptions{Force: true})
			})
			e.StartWorker(worker.Config{})
			end := jobtest.Last(e.Follow(e.Submit(name+".hello", nil, func(r *schema.Request) { r.ModuleCommit = entry.Commit })))
			if end.State != schema.StateFailed || !strings.Contains(end.Error, tt.want) {
				t.Fatalf("ended %s: %q", end.State, end.Error)
			}
		})
	}
}
