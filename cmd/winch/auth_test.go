package main

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/winchhq/winch/broker"
	"github.com/winchhq/winch/modules"
	"github.com/winchhq/winch/worker"
	"github.com/winchhq/winch/worker/process"
)

// The shipped nats.conf, for real: a worker as the worker user, and a person
// (alice) using the CLI with only the permissions nats.conf gives her.
func TestShippedConfigServesTheCLI(t *testing.T) {
	t.Setenv("WINCH_NATS_WORKER_PASSWORD", "worker-pw")
	t.Setenv("WINCH_NATS_ALICE_PASSWORD", "alice-pw")
	t.Setenv("WINCH_NATS_GATEWAY_PASSWORD", "gateway-pw")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	srv, err := broker.NewServer(broker.ServerConfig{ConfigFile: "../../nats.conf", ListenURL: "nats://" + addr, DataDir: t.TempDir(), NoMonitoring: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()

	ctx := context.Background()
	nc, err := broker.Connect(ctx, broker.ConnectConfig{URL: "nats://worker:worker-pw@" + addr})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := broker.Ensure(ctx, js, broker.Topology{AckWait: 2 * time.Second}); err != nil {
		t.Fatal(err)
	}
	core, _ := modules.NewCatalog(modules.Core())
	w, err := worker.New(nc, worker.Config{ID: "auth-worker", Catalog: core, Executor: &process.Executor{}, Topology: broker.Topology{AckWait: 2 * time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = w.Stop(ctx) }()

	alice := []string{"WINCH_NATS_URL=nats://alice:alice-pw@" + addr, "WINCH_PRINCIPAL=alice", "WINCH_MODULE_CACHE=" + t.TempDir()}
	check := func(wantCode int, want string, args ...string) string {
		t.Helper()
		out, code := runWinch(t, alice, args...)
		if code != wantCode || !strings.Contains(out, want) {
			t.Fatalf("winch %s as alice: exit %d (want %d), output lacks %q:\n%s", strings.Join(args, " "), code, wantCode, want, out)
		}
		return out
	}
	check(0, "hello, as alice", "run", "core.echo", "--text", "hello, as alice")
	check(0, "core.echo", "commands")
	id := strings.TrimSpace(check(0, "", "run", "--detach", "core.sleep", "--seconds", "30"))
	check(0, id, "ps")
	// A request no worker takes is listed too: ps reads the queue with
	// batched direct gets, which a client may make.
	waiting := strings.TrimSpace(check(0, "", "run", "--detach", "--queue", "nobody-serves-it", "core.echo", "--text", "waiting"))
	check(0, waiting, "ps")
	check(0, "principal:", "status", id)
	// Cancelling someone else's job: alice cannot even ask as bob (the
	// server refuses), and mallory, who may publish as herself (here with
	// the worker user's rights), is refused by the workers, on the record.
	check(exitNoPerm, `you may not send control requests as "bob"`, append([]string{"--as", "bob"}, "cancel", id)...)
	mallory := []string{"WINCH_NATS_URL=nats://worker:worker-pw@" + addr, "WINCH_PRINCIPAL=mallory", "WINCH_MODULE_CACHE=" + t.TempDir()}
	if out, code := runWinch(t, mallory, "cancel", id); code != exitNoPerm || !strings.Contains(out, "mallory may not cancel job "+id+" of alice") {
		t.Fatalf("mallory cancelling alice's job: exit %d\n%s", code, out)
	}
	check(0, "state:      running", "status", id)
	check(0, "cancelled", "cancel", id)
	check(0, "finished  cancelled", "logs", id)
	check(0, "cancel_refused", "logs", id)
	check(0, "", "modules", "list")

	// Publishing as someone else is refused by the server.
	out, code := runWinch(t, append(alice, "WINCH_PRINCIPAL=bob"), "run", "core.echo", "--text", "forged")
	if code != exitNoPerm || !strings.Contains(out, `not permitted by the NATS server: you may not publish requests as "bob"`) {
		t.Fatalf("alice publishing as bob: exit %d\n%s", code, out)
	}
}
