package gateway_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/winchhq/winch/broker"
	"github.com/winchhq/winch/gateway"
	"github.com/winchhq/winch/modules"
	"github.com/winchhq/winch/producer"
	"github.com/winchhq/winch/schema"
	"github.com/winchhq/winch/worker"
	"github.com/winchhq/winch/worker/process"
)

// The shipped nats.conf's gateway user publishes for the principals the
// gateway authenticates, and can write no state or event.
func TestShippedConfigGatewayUser(t *testing.T) {
	t.Setenv("WINCH_NATS_WORKER_PASSWORD", "worker-pw")
	t.Setenv("WINCH_NATS_ALICE_PASSWORD", "alice-pw")
	t.Setenv("WINCH_NATS_GATEWAY_PASSWORD", "gateway-pw")
	srv, err := broker.NewServer(broker.ServerConfig{ConfigFile: "../nats.conf", ListenURL: "nats://127.0.0.1:0", DataDir: t.TempDir(), NoMonitoring: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()
	ctx := t.Context()
	addr := srv.ClientURL()[len("nats://"):]
	wnc, err := broker.Connect(ctx, broker.ConnectConfig{URL: "nats://worker:worker-pw@" + addr})
	if err != nil {
		t.Fatal(err)
	}
	defer wnc.Close()
	wjs, _ := jetstream.New(wnc)
	topo := broker.Topology{AckWait: 2 * time.Second}
	if _, err := broker.Ensure(ctx, wjs, topo); err != nil {
		t.Fatal(err)
	}
	core, _ := modules.NewCatalog(modules.Core())
	w, err := worker.New(wnc, worker.Config{ID: "conf-worker", Catalog: core, Executor: &process.Executor{}, Topology: topo})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = w.Stop(context.Background()) }()

	gnc, err := broker.Connect(ctx, broker.ConnectConfig{URL: "nats://gateway:gateway-pw@" + addr})
	if err != nil {
		t.Fatal(err)
	}
	defer gnc.Close()
	client, err := producer.New(ctx, gnc, nil)
	if err != nil {
		t.Fatalf("the gateway user cannot read the topology: %v", err)
	}
	gw, err := gateway.New(gateway.Config{Addr: "127.0.0.1:0", Client: client, Tokens: testTokens()})
	if err != nil {
		t.Fatal(err)
	}
	if err := gw.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = gw.Stop(context.Background()) }()
	f := &fixture{t: t, url: gw.URL(), http: &http.Client{Timeout: 30 * time.Second}}
	for _, tok := range []string{bobToken, aliceToken} {
		var sub gateway.Submitted
		f.must(http.StatusAccepted, "POST", "/v1/jobs", tok, `{"command":"core.echo","params":{"text":"via the gateway user"}}`, &sub)
		events := f.follow(tok, sub.ID)
		last := events[len(events)-1].Event
		if last.State != schema.StateSucceeded || last.Principal != sub.Principal || output(events, schema.Stdout) != "via the gateway user\n" {
			t.Fatalf("%s's job: %s %+v", sub.Principal, kinds(events), last)
		}
	}
	sleeper := f.submitDefault(bobToken, `{"command":"core.sleep","params":{"seconds":30}}`)
	f.must(http.StatusForbidden, "POST", "/v1/jobs/"+sleeper+"/cancel", aliceToken, "", nil)
	f.must(http.StatusOK, "POST", "/v1/jobs/"+sleeper+"/cancel", bobToken, "", nil)
	f.must(http.StatusOK, "GET", "/v1/commands", bobToken, "", nil)
	f.must(http.StatusOK, "GET", "/v1/jobs", bobToken, "", nil)
	// The gateway user writes no state and no event.
	gjs, _ := jetstream.New(gnc)
	for _, subject := range []string{broker.EventSubject("j1", "finished"), "$KV." + broker.StateBucket + ".j1", broker.WorkerSubject("w1"), "$KV." + broker.ModulesBucket + ".x", "$KV." + broker.SlotsBucket + ".key.x"} {
		pctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		if _, err := gjs.Publish(pctx, subject, []byte(`{"job_id":"j1","kind":"finished","state":"succeeded"}`)); err == nil {
			t.Errorf("the gateway user published on %s", subject)
		}
		cancel()
	}
}

func (f *fixture) submitDefault(token, body string) string {
	f.t.Helper()
	var sub gateway.Submitted
	f.must(http.StatusAccepted, "POST", "/v1/jobs", token, body, &sub)
	return sub.ID
}
