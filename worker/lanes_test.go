package worker_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/winchhq/winch/broker"
	"github.com/winchhq/winch/internal/jobtest"
	"github.com/winchhq/winch/internal/testenv"
	"github.com/winchhq/winch/schema"
	"github.com/winchhq/winch/worker"
)

// A worker runs its slots on several connections to the broker (lanes),
// each fetching and carrying whole jobs (claim, events in order, end, ack),
// and closes the connections it opened when it stops. The server's own
// connection list (its monitoring endpoint) is the witness.
func TestWorkerSpreadsJobsOverItsConnections(t *testing.T) {
	t.Parallel()
	monitor := testenv.FreePort(t)
	conf := filepath.Join(t.TempDir(), "nats.conf")
	if err := os.WriteFile(conf, fmt.Appendf(nil, "listen: 127.0.0.1:-1\nhttp: 127.0.0.1:%d\n", monitor), 0o600); err != nil {
		t.Fatal(err)
	}
	srv, err := broker.NewServer(broker.ServerConfig{ConfigFile: conf, DataDir: t.TempDir(), Name: "lanes"})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	e := jobtest.New(t, srv.ClientURL(), withDefaults)
	nc, err := broker.Connect(t.Context(), broker.ConnectConfig{URL: srv.ClientURL(), Name: "lanes-worker"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	w := startWorkerOn(t, nc, worker.Config{ID: "lanes", Queues: []string{e.Queue}, Concurrency: 6, Connections: 3, Logger: e.Logger()})

	// Six jobs that run at once take the six runners, two on each lane.
	var ids []string
	for i := range 6 {
		ids = append(ids, e.Submit("core.sleep", map[string]any{"seconds": 1}, func(r *schema.Request) { r.Principal = fmt.Sprint("tester-", i) }))
	}
	for i, id := range ids {
		events := e.Follow(id)
		if got := jobtest.Kinds(events); got != "accepted(running) started finished(succeeded)" {
			t.Errorf("job %d: events %s, want accepted(running) started finished(succeeded)", i, got)
		}
		for j, ev := range events {
			if ev.Seq != j+1 {
				t.Errorf("job %d: event %d (%s) has seq %d", i, j, ev.Kind, ev.Seq)
			}
		}
		if last := jobtest.Last(events); last.State != schema.StateSucceeded {
			t.Errorf("job %d ended %s: %s", i, last.State, last.Error)
		}
	}
	conns := connz(t, monitor)
	for _, name := range []string{"lanes-worker", "lanes-worker (lane 1)", "lanes-worker (lane 2)"} {
		// Two jobs' claims, events and ends at least.
		if conns[name] < 8 {
			t.Errorf("connection %q sent %d messages, want its share of the jobs (connections: %v)", name, conns[name], conns)
		}
	}

	if err := w.Stop(t.Context()); err != nil {
		t.Fatal(err)
	}
	for name := range connz(t, monitor) {
		if strings.Contains(name, "(lane") {
			t.Errorf("connection %q is still open after the worker stopped", name)
		}
	}

	// By default, a busy worker has two lanes and a small one a single one.
	for _, tt := range []struct {
		concurrency int
		want        []string
	}{
		{8, []string{"c8", "c8 (lane 1)"}},
		{4, []string{"c4"}},
	} {
		name := fmt.Sprint("c", tt.concurrency)
		nc, err := broker.Connect(t.Context(), broker.ConnectConfig{URL: srv.ClientURL(), Name: name})
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		w := startWorkerOn(t, nc, worker.Config{ID: name, Queues: []string{e.Queue}, Concurrency: tt.concurrency})
		var got []string
		for n := range connz(t, monitor) {
			if strings.HasPrefix(n, name) {
				got = append(got, n)
			}
		}
		slices.Sort(got)
		if !slices.Equal(got, tt.want) {
			t.Errorf("concurrency %d: connections %v, want %v", tt.concurrency, got, tt.want)
		}
		_ = w.Stop(t.Context())
	}
}

// startWorkerOn starts a worker of the test's defaults on nc, stopped when
// the test ends.
func startWorkerOn(t *testing.T, nc *nats.Conn, cfg worker.Config) *worker.Worker {
	t.Helper()
	cfg.Topology = jobtest.Topology
	withDefaults(&cfg)
	w, err := worker.New(nc, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.Stop(context.Background()) })
	return w
}

// connz reads the server's connection list: messages received from each
// connection, by name.
func connz(t *testing.T, port int) map[string]int {
	t.Helper()
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/connz", port))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Connections []struct {
			Name   string `json:"name"`
			InMsgs int    `json:"in_msgs"`
		} `json:"connections"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, c := range body.Connections {
		out[c.Name] = c.InMsgs
	}
	return out
}
