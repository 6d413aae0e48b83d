package broker_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/winchhq/winch/broker"
	"github.com/winchhq/winch/schedule"
)

// nats.conf's users have exactly broker.ClientPermissions,
// ServicePermissions and GatewayPermissions, which the JWT setup (ops/auth)
// uses too.
func TestShippedConfigUsesWinchPermissions(t *testing.T) {
	t.Setenv("WINCH_NATS_WORKER_PASSWORD", "worker-pw")
	t.Setenv("WINCH_NATS_ALICE_PASSWORD", "alice-pw")
	t.Setenv("WINCH_NATS_GATEWAY_PASSWORD", "gateway-pw")
	opts, err := server.ProcessConfigFile("../nats.conf")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]broker.Permissions{"alice": broker.ClientPermissions("alice"), "worker": broker.ServicePermissions(),
		"gateway": broker.GatewayPermissions()}
	for _, u := range opts.Users {
		w, ok := want[u.Username]
		if !ok {
			t.Errorf("nats.conf has user %s", u.Username)
			continue
		}
		if !slices.Equal(u.Permissions.Publish.Allow, w.Publish) || !slices.Equal(u.Permissions.Subscribe.Allow, w.Subscribe) ||
			!slices.Equal(u.Permissions.Publish.Deny, w.PublishDeny) {
			t.Errorf("nats.conf gives %s publish %v (deny %v), subscribe %v; broker says %v (deny %v), %v", u.Username,
				u.Permissions.Publish.Allow, u.Permissions.Publish.Deny, u.Permissions.Subscribe.Allow, w.Publish, w.PublishDeny, w.Subscribe)
		}
	}
}

// The shipped nats.conf loads, and with it the broker, not the payload,
// vouches for who publishes a request: alice can publish only as alice.
func TestShippedConfigTiesRequestsToTheirUser(t *testing.T) {
	t.Setenv("WINCH_NATS_WORKER_PASSWORD", "worker-pw")
	t.Setenv("WINCH_NATS_ALICE_PASSWORD", "alice-pw")
	t.Setenv("WINCH_NATS_GATEWAY_PASSWORD", "gateway-pw")
	srv, err := broker.NewServer(broker.ServerConfig{ConfigFile: "../nats.conf", ListenURL: "nats://127.0.0.1:0", DataDir: t.TempDir(), NoMonitoring: true})
	if err != nil {
		t.Fatalf("nats.conf: %v", err)
	}
	if err := srv.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()
	connectAs := func(user, pw string) (*nats.Conn, jetstream.JetStream, error) {
		nc, err := nats.Connect(srv.ClientURL(), nats.UserInfo(user, pw))
		if err != nil {
			return nil, nil, err
		}
		js, err := jetstream.New(nc)
		return nc, js, err
	}
	if _, _, err := connectAs("alice", "wrong"); err == nil {
		t.Fatal("a wrong password was accepted")
	}
	wnc, wjs, err := connectAs("worker", "worker-pw")
	if err != nil {
		t.Fatal(err)
	}
	defer wnc.Close()
	if _, err := broker.Ensure(t.Context(), wjs, broker.Topology{}); err != nil {
		t.Fatalf("the worker user cannot create the topology: %v", err)
	}
	anc, ajs, err := connectAs("alice", "alice-pw")
	if err != nil {
		t.Fatal(err)
	}
	defer anc.Close()
	if _, err := ajs.Publish(t.Context(), broker.JobSubject("default", "j1", "alice"), []byte("{}")); err != nil {
		t.Fatalf("alice cannot publish as alice: %v", err)
	}
	if _, err := ajs.Publish(t.Context(), broker.ControlSubject("cancel", "j1", "alice"), []byte("{}")); err != nil {
		t.Fatalf("alice cannot ask to cancel as alice: %v", err)
	}
	if _, err := ajs.Publish(t.Context(), broker.PriorityJobSubject("default", broker.PriorityHigh, "j3", "alice"), []byte("{}")); err != nil {
		t.Fatalf("alice cannot publish a high-priority request as alice: %v", err)
	}
	if _, err := ajs.Publish(t.Context(), broker.ScheduleSubject("nightly", "alice"), []byte("{}")); err != nil {
		t.Fatalf("alice cannot write her own schedule: %v", err)
	}
	// Everything that would let alice act as someone else, or write the
	// record of what happened, is refused by the server.
	for _, subject := range []string{
		broker.JobSubject("default", "j2", "bob"),
		broker.PriorityJobSubject("default", broker.PriorityHigh, "j2", "bob"),
		// A priority no queue's consumer takes would be stored and never
		// run, rejected or audited.
		"winch.jobs.default.urgent.j2.alice",
		broker.ControlSubject("cancel", "j1", "bob"),
		// Schedules are their owners'; fires and their records are the
		// server's and the workers'.
		broker.ScheduleSubject("nightly", "bob"),
		broker.FireSubject("nightly", "alice"),
		broker.RunSubject("nightly", "alice"),
		broker.EventSubject("j1", "finished"),
		broker.EventSubject("j1", "accepted"),
		"$KV." + broker.StateBucket + ".j1",
		"$KV." + broker.WorkersBucket + ".w1",
		// Concurrency slots: a client may not take a slot, jump the line
		// or plant a waiting job's request.
		"$KV." + broker.SlotsBucket + ".key.db-main",
		"$KV." + broker.SlotsBucket + ".req.j1",
		broker.WorkerSubject("w1"),
	} {
		ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
		if _, err := ajs.Publish(ctx, subject, []byte(`{"job_id":"j1","kind":"finished","state":"succeeded"}`)); err == nil {
			t.Errorf("alice published on %s", subject)
		}
		cancel()
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	// A client reads schedules and their fire records (winch schedule list).
	st, err := schedule.Open(ctx, ajs)
	if err != nil {
		t.Fatalf("alice cannot open the schedules: %v", err)
	}
	if _, err := st.List(ctx); err != nil {
		t.Fatalf("alice cannot list schedules: %v", err)
	}
	if _, err := st.LastRuns(ctx); err != nil {
		t.Fatalf("alice cannot read fire records: %v", err)
	}
	kv, err := ajs.KeyValue(ctx, broker.StateBucket)
	if err != nil {
		t.Fatalf("alice cannot read job states: %v", err)
	}
	putCtx, cancelPut := context.WithTimeout(t.Context(), 500*time.Millisecond)
	defer cancelPut()
	if _, err := kv.Put(putCtx, "j1", []byte(`{"job_id":"j1","state":"succeeded"}`)); err == nil {
		t.Fatal("alice wrote a job state")
	}
	if _, err := kv.Get(ctx, "j1"); err == nil {
		t.Fatal("a forged state is in the bucket")
	}
	ev, err := wjs.Stream(t.Context(), broker.EventsStream)
	if err != nil {
		t.Fatal(err)
	}
	if info, err := ev.Info(t.Context()); err != nil || info.State.Msgs != 0 {
		t.Fatalf("the events stream holds %d messages after alice's attempts (%v), want 0", info.State.Msgs, err)
	}
	if _, err := broker.EnsureQueue(t.Context(), wjs, "default", broker.Topology{}); err != nil {
		t.Fatal(err)
	}
	delCtx, cancelDel := context.WithTimeout(t.Context(), 500*time.Millisecond)
	defer cancelDel()
	if err := ajs.DeleteConsumer(delCtx, broker.JobsStream, broker.ConsumerName("default")); err == nil {
		t.Fatal("alice deleted the workers' consumer")
	}
	if err := ajs.DeleteStream(ctx, broker.JobsStream); err == nil {
		t.Fatal("alice deleted the jobs stream")
	}
	// A client deletes the ordered consumers it made (a follow's), but not
	// the services' shared durable ones: not delete, redefine or pull from
	// them. The notifiers' comes with the topology.
	ctx, cancel = context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	oc, err := ajs.OrderedConsumer(ctx, broker.EventsStream, jetstream.OrderedConsumerConfig{FilterSubjects: []string{broker.JobEventsFilter("j1")}})
	if err != nil {
		t.Fatalf("alice cannot follow a job: %v", err)
	}
	if _, err := oc.Info(ctx); err != nil {
		t.Fatal(err)
	}
	if err := ajs.DeleteConsumer(ctx, broker.EventsStream, oc.CachedInfo().Name); err != nil {
		t.Fatalf("alice cannot delete her own follower: %v", err)
	}
	if _, err := wjs.CreateConsumer(ctx, broker.EventsStream, jetstream.ConsumerConfig{Durable: broker.SinkConsumer, AckPolicy: jetstream.AckExplicitPolicy}); err != nil {
		t.Fatal(err)
	}
	if _, err := wjs.CreateConsumer(ctx, broker.SchedulesStream, jetstream.ConsumerConfig{Durable: broker.FiresConsumer, AckPolicy: jetstream.AckExplicitPolicy, FilterSubject: broker.AllFires}); err != nil {
		t.Fatal(err)
	}
	if _, err := wjs.Publish(ctx, broker.EventSubject("j1", "finished"), []byte(`{"job_id":"j1","kind":"finished","state":"succeeded"}`)); err != nil {
		t.Fatal(err)
	}
	for _, d := range []struct{ stream, name string }{
		{broker.EventsStream, broker.SinkConsumer}, {broker.EventsStream, broker.NotifierConsumer}, {broker.SchedulesStream, broker.FiresConsumer},
	} {
		short, cancelShort := context.WithTimeout(ctx, 500*time.Millisecond)
		if err := ajs.DeleteConsumer(short, d.stream, d.name); err == nil {
			t.Errorf("alice deleted %s's consumer %s", d.stream, d.name)
		}
		if _, err := ajs.CreateOrUpdateConsumer(short, d.stream, jetstream.ConsumerConfig{Durable: d.name, AckPolicy: jetstream.AckNonePolicy}); err == nil {
			t.Errorf("alice redefined %s's consumer %s", d.stream, d.name)
		}
		cancelShort()
		c, err := ajs.Consumer(ctx, d.stream, d.name)
		if err != nil {
			t.Fatalf("alice cannot read %s's consumer %s: %v", d.stream, d.name, err)
		}
		if d.stream == broker.EventsStream {
			batch, _ := c.Fetch(1, jetstream.FetchMaxWait(300*time.Millisecond))
			for range batch.Messages() {
				t.Errorf("alice took an event from %s", d.name)
			}
			info, err := c.Info(ctx)
			if err != nil || info.NumPending != 1 || info.NumAckPending != 0 {
				t.Errorf("consumer %s after alice: %+v (%v), want the event still pending", d.name, info, err)
			}
		}
	}
}
