package modules_test

import (
	"strings"
	"testing"

	"github.com/winchhq/winch/internal/jobtest"
	"github.com/winchhq/winch/modules"
	"github.com/winchhq/winch/schema"
	"github.com/winchhq/winch/worker"
	"github.com/winchhq/winch/worker/process"
)

// moduleEnv is a test's queue with a registry shared by a client and a
// worker, each with a cache of its own (the worker fetches what it lacks).
type moduleEnv struct {
	*jobtest.Env
	client *modules.Registry
	worker *modules.Registry
}

func newModuleEnv(t *testing.T) *moduleEnv {
	reg := registry(t)
	workerReg := &modules.Registry{KV: reg.KV, Git: &modules.Git{CacheDir: t.TempDir()}}
	core, err := modules.NewCatalog(modules.Core())
	if err != nil {
		t.Fatal(err)
	}
	e := jobtest.New(t, natsURL, func(cfg *worker.Config) {
		cfg.Catalog = &modules.Resolver{Core: core, Registry: workerReg}
		cfg.Executor = &process.Executor{}
	})
	return &moduleEnv{Env: e, client: reg, worker: workerReg}
}

// run submits a command as winch run does: validated against the catalog
// the registry gives now, carrying the commit it was validated against.
func (m *moduleEnv) submit(command string, params map[string]any) string {
	m.T.Helper()
	entries, err := m.client.List(m.T.Context())
	if err != nil {
		m.T.Fatal(err)
	}
	cat, err := modules.CatalogOf(entries)
	if err != nil {
		m.T.Fatal(err)
	}
	cmd, err := cat.Lookup(command)
	if err != nil {
		m.T.Fatal(err)
	}
	if _, err := cmd.Spec.ValidateParams(params); err != nil {
		m.T.Fatal(err)
	}
	return m.Submit(command, params, func(r *schema.Request) { r.ModuleCommit = cmd.Commit })
}

func (m *moduleEnv) output(id string) (string, schema.Event) {
	m.T.Helper()
	events := m.Follow(id)
	return jobtest.Output(events, schema.Stdout), events[0]
}

func TestRunsThePinnedCommitUntilSync(t *testing.T) {
	t.Parallel()
	m := newModuleEnv(t)
	up := newUpstream(t)
	c1 := up.Commit("v1", manifest("echo backing up $WINCH_PARAM_NAME with v1\n"))
	up.Tag("v1.0.0", c1)
	if _, err := m.client.Add(t.Context(), up.Dir, "v1.0.0"); err != nil {
		t.Fatal(err)
	}
	m.StartWorker(worker.Config{})
	out, accepted := m.output(m.submit("db.backup", map[string]any{"name": "main"}))
	if out != "backing up main with v1\n" || accepted.Commit != c1 {
		t.Fatalf("at v1: output %q, commit %s", out, accepted.Commit)
	}
	// The tag moves upstream: still v1 until the module is synced.
	c2 := up.Commit("v2", manifest("echo backing up $WINCH_PARAM_NAME with v2\n"))
	up.Tag("v1.0.0", c2)
	if out, _ := m.output(m.submit("db.backup", map[string]any{"name": "main"})); out != "backing up main with v1\n" {
		t.Fatalf("after the tag moved, before sync: %q", out)
	}
	if _, _, err := m.client.Sync(t.Context(), "db"); err != nil {
		t.Fatal(err)
	}
	id := m.submit("db.backup", map[string]any{"name": "main"})
	if out, accepted := m.output(id); out != "backing up main with v2\n" || accepted.Commit != c2 {
		t.Fatalf("after sync: %q at %s", out, accepted.Commit)
	}
	if st := m.Status(id); st.Commit != c2 {
		t.Fatalf("the job's state records commit %q", st.Commit)
	}
}

// Requests already queued when a branch moves keep the commit they were
// validated against; new requests get the new head.
func TestQueuedRequestsKeepTheirCommit(t *testing.T) {
	t.Parallel()
	m := newModuleEnv(t)
	up := newUpstream(t)
	up.Commit("v1", manifest("echo v1\n"))
	if _, err := m.client.Add(t.Context(), up.Dir, "main"); err != nil {
		t.Fatal(err)
	}
	queued := m.submit("db.backup", map[string]any{"name": "main"})
	up.Commit("v2", manifest("echo v2\n"))
	if _, _, err := m.client.Sync(t.Context(), "db"); err != nil {
		t.Fatal(err)
	}
	later := m.submit("db.backup", map[string]any{"name": "main"})
	m.StartWorker(worker.Config{})
	if out, _ := m.output(queued); out != "v1\n" {
		t.Fatalf("the queued request ran %q", out)
	}
	if out, _ := m.output(later); out != "v2\n" {
		t.Fatalf("the later request ran %q", out)
	}
}

// Parameters are checked again by the worker, against the manifest at the
// request's commit: a request published by hand with bad parameters is
// rejected, not run. A removed module's commands are rejected.
func TestWorkerRejectsWhatTheClientWouldNot(t *testing.T) {
	t.Parallel()
	m := newModuleEnv(t)
	up := newUpstream(t)
	c1 := up.Commit("v1", manifest("echo ran\n"))
	if _, err := m.client.Add(t.Context(), up.Dir, "main"); err != nil {
		t.Fatal(err)
	}
	m.StartWorker(worker.Config{})
	id := m.Submit("db.backup", map[string]any{"name": "Robert'); DROP TABLE students;--"}, func(r *schema.Request) { r.ModuleCommit = c1 })
	end := jobtest.Last(m.Follow(id))
	if end.State != schema.StateRejected || !strings.Contains(end.Error, `invalid parameters for db.backup: name: "Robert'); DROP TABLE students;--" does not match`) {
		t.Fatalf("bad parameters published by hand: %s %q", end.State, end.Error)
	}
	if err := m.client.Remove(t.Context(), "db"); err != nil {
		t.Fatal(err)
	}
	id = m.Submit("db.backup", map[string]any{"name": "main"}, func(r *schema.Request) { r.ModuleCommit = c1 })
	end = jobtest.Last(m.Follow(id))
	if end.State != schema.StateRejected || !strings.Contains(end.Error, "module db is not registered") {
		t.Fatalf("a removed module's command: %s %q", end.State, end.Error)
	}
	// A commit the repository does not have is no way to run anything.
	if _, err := m.client.Add(t.Context(), up.Dir, "main"); err != nil {
		t.Fatal(err)
	}
	id = m.Submit("db.backup", map[string]any{"name": "main"}, func(r *schema.Request) { r.ModuleCommit = strings.Repeat("0", 40) })
	end = jobtest.Last(m.Follow(id))
	if end.State != schema.StateRejected || !strings.Contains(end.Error, "commit not found") {
		t.Fatalf("an unknown commit: %s %q", end.State, end.Error)
	}
}
