package docker_test

import (
	"context"
	"fmt"
	"io"
	"os"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"

	"github.com/winchhq/winch/internal/jobtest"
	"github.com/winchhq/winch/internal/testenv"
	"github.com/winchhq/winch/modules"
	"github.com/winchhq/winch/worker"
	"github.com/winchhq/winch/worker/docker"
)

var (
	natsURL string
	// api is the real engine; dockerErr says why there is none.
	api       *client.Client
	dockerErr error
)

func TestMain(m *testing.M) {
	jobtest.ChildMain(func(cfg *worker.Config) {
		c, err := docker.Connect(context.Background())
		if err != nil {
			panic(err)
		}
		api = c
		withDefaults(cfg)
	})
	os.Exit(testenv.WithNATS(func(_, url string) int {
		natsURL = url
		ctx := context.Background()
		api, dockerErr = docker.Connect(ctx)
		if dockerErr == nil {
			dockerErr = ensureToolbox(ctx)
		}
		code := m.Run()
		if api != nil {
			if n := removeLeftContainers(ctx); n > 0 {
				fmt.Fprintf(os.Stderr, "%d containers with a winch label were left after the tests\n", n)
				code = 1
			}
			api.Close()
		}
		return code
	}))
}

// ensureToolbox builds winch-toolbox if the engine lacks it.
func ensureToolbox(ctx context.Context) error {
	_, err := api.ImageInspect(ctx, docker.DefaultImage)
	if cerrdefs.IsNotFound(err) {
		return docker.BuildToolbox(ctx, api, docker.DefaultImage, docker.BusyboxPath, io.Discard)
	}
	return err
}

func removeLeftContainers(ctx context.Context) int {
	list, err := api.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("label", docker.LabelJob))})
	if err != nil {
		fmt.Fprintln(os.Stderr, "list containers:", err)
		return 1
	}
	for _, c := range list {
		fmt.Fprintln(os.Stderr, "left:", c.Names, c.Labels)
		_ = api.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true, RemoveVolumes: true})
	}
	return len(list)
}

// newEnv is a test's queue and client, its workers running commands in
// containers on the real engine.
func newEnv(t *testing.T) *jobtest.Env {
	t.Helper()
	if dockerErr != nil {
		testenv.Missing(t, "docker", dockerErr)
	}
	return jobtest.New(t, natsURL, withDefaults)
}

func withDefaults(cfg *worker.Config) {
	if cfg.Catalog == nil {
		cfg.Catalog = testCatalog()
	}
	if cfg.Executor == nil {
		cfg.Executor = &docker.Executor{API: api, KillGrace: 500 * time.Millisecond}
	}
	if cfg.ReapInterval == 0 {
		cfg.ReapInterval = 300 * time.Millisecond
	}
}

func testCatalog() *modules.Catalog { return jobtest.Catalog("testdata/winch.yaml") }

// containersOf lists the containers of a job, running or not.
func containersOf(t *testing.T, job string) []container.Summary {
	t.Helper()
	list, err := api.ContainerList(context.Background(), container.ListOptions{All: true,
		Filters: filters.NewArgs(filters.Arg("label", docker.LabelJob+"="+job))})
	if err != nil {
		t.Fatal(err)
	}
	return list
}
