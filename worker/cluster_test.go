package worker_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/winchhq/winch/broker"
	"github.com/winchhq/winch/internal/jobtest"
	"github.com/winchhq/winch/internal/testenv"
	"github.com/winchhq/winch/producer"
	"github.com/winchhq/winch/schedule"
	"github.com/winchhq/winch/schema"
	"github.com/winchhq/winch/worker"
)

// TestClusterServerLoss runs winch on three clustered NATS servers with
// every stream and bucket replicated three times, and takes servers away
// while mixed jobs run: first the server that leads the requests stream is
// SIGKILLed, then, once it is back, a follower is killed and kept down for
// longer than a lease. Through both, every acknowledged request must end
// (none lost, none stuck), no retry: false command may start twice, a
// follower of a job that runs across the failover sees each of its events
// once, and the servers brought back catch up.
func TestClusterServerLoss(t *testing.T) {
	const (
		firstJobs  = 160 // the leader is killed after killAfter of them
		killAfter  = 50
		secondJobs = 40 // submitted while a follower is down
	)
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv("WINCH_CHAOS_SEED"); v != "" {
		var err error
		if seed, err = strconv.ParseUint(v, 10, 64); err != nil {
			t.Fatalf("WINCH_CHAOS_SEED=%q: %v", v, err)
		}
	}
	rng := rand.New(rand.NewPCG(seed, 0))
	t.Logf("seed %d (WINCH_CHAOS_SEED repeats the jobs)", seed)

	c := testenv.StartCluster(t, 3)
	topo := broker.Topology{Replicas: 3, AckWait: 2 * time.Second, MaxDeliver: 10}
	e := jobtest.NewWithTopology(t, c.URLs(), topo, withDefaults)
	ctx := t.Context()

	dir := t.TempDir()
	logPath := filepath.Join(dir, "workers.log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	for i := range 2 {
		e.StartChildTo(fmt.Sprintf("cluster-%d", i+1), logFile, jobtest.ChildConcurrencyEnv+"=3", jobtest.ChildConnectionsEnv+"=3")
	}
	startsPath := filepath.Join(dir, "starts.log")

	// submit publishes a request as winch run does: Submit waits through
	// a failover for the requests stream to have it.
	var all []chaosJob
	submit := func(j chaosJob) {
		sub, err := e.Client.Submit(ctx, schema.Request{Command: j.command, Params: j.params, Queue: e.Queue, Principal: "tester"})
		if err != nil {
			t.Fatalf("submit %s: %v", j.command, err)
		}
		j.id = sub.Request.ID
		all = append(all, j)
	}

	// A job that runs across the failover, with a follower that must see
	// each of its events once.
	submit(chaosJob{command: "core.sleep", params: map[string]any{"seconds": 4}, retry: true})
	followedID := all[0].id
	var follow sync.WaitGroup
	var seen []schema.Event
	var followErr error
	follow.Go(func() {
		fctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		defer cancel()
		_, followErr = e.Client.Follow(fctx, followedID, producer.UntilDone, func(ev schema.Event) error {
			seen = append(seen, ev)
			return nil
		})
	})
	e.WaitFor(followedID, schema.KindStarted)

	// 1. Kill the leader of the requests stream while jobs are submitted.
	var killedAt time.Time
	leader := -1
	for i := range firstJobs {
		if i == killAfter {
			if leader, err = c.Leader(ctx, e.JS, broker.JobsStream); err != nil || leader < 0 {
				t.Fatalf("leader of %s: %d %v", broker.JobsStream, leader, err)
			}
			c.Kill(leader)
			killedAt = time.Now()
			t.Logf("killed %s, the leader of %s, after %d jobs", c.Name(leader), broker.JobsStream, i)
		}
		j := mixedJob(rng, i, startsPath)
		before := time.Now()
		submit(j)
		if i == killAfter {
			t.Logf("first request after the kill acknowledged in %v", time.Since(before).Round(time.Millisecond))
		}
	}
	newLeader, err := c.Leader(ctx, e.JS, broker.JobsStream)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s now leads %s (%v after the kill)", c.Name(newLeader), broker.JobsStream, time.Since(killedAt).Round(time.Millisecond))
	c.Start(leader)
	run := newRunTracker(all)
	waitAllOver(t, e, run, 2*time.Minute)
	waitReplicasCurrent(t, c, e)

	// 2. Kill a follower and keep it down for longer than a lease while
	// more jobs run; then bring it back.
	if leader, err = c.Leader(ctx, e.JS, broker.JobsStream); err != nil {
		t.Fatal(err)
	}
	down := (leader + 1) % 3
	c.Kill(down)
	t.Logf("killed %s, a follower of %s", c.Name(down), broker.JobsStream)
	for i := range secondJobs {
		submit(mixedJob(rng, firstJobs+i, startsPath))
	}
	time.Sleep(2 * topo.AckWait)
	c.Start(down)
	run = newRunTracker(all)
	waitAllOver(t, e, run, 2*time.Minute)
	waitReplicasCurrent(t, c, e)

	follow.Wait()
	if followErr != nil {
		t.Fatalf("follow %s across the failover: %v", followedID, followErr)
	}
	checkOnce(t, followedID, seen)
	t.Logf("%d jobs: %s", len(all), run.check(t, e, startsPath, logPath))
}

// waitAllOver polls until every job of run is over, or fails after limit.
func waitAllOver(t *testing.T, e *jobtest.Env, run *runTracker, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for run.poll(t, e) > 0 {
		if time.Now().After(deadline) {
			t.Logf("%d of %d jobs not over after %v", len(run.all)-len(run.final), len(run.all), limit)
			return // check says which, and how
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// waitReplicasCurrent waits until every replica of winch's streams has
// caught up with its leader.
func waitReplicasCurrent(t *testing.T, c *testenv.Cluster, e *jobtest.Env) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	for _, stream := range []string{broker.JobsStream, broker.EventsStream, "KV_" + broker.StateBucket} {
		if err := c.WaitCurrent(ctx, e.JS, stream); err != nil {
			t.Fatal(err)
		}
	}
}

// checkOnce: a follower saw each event of each attempt once, in order,
// and the job's end last.
func checkOnce(t *testing.T, id string, events []schema.Event) {
	t.Helper()
	next := map[int]int{}
	for _, ev := range events {
		if ev.Seq != next[ev.Attempt]+1 {
			t.Errorf("job %s: follower saw event %d of attempt %d after %d (%s): an event lost or repeated", id, ev.Seq, ev.Attempt, next[ev.Attempt], ev.Kind)
		}
		next[ev.Attempt] = ev.Seq
	}
	if len(events) == 0 || !events[len(events)-1].Terminal() {
		t.Errorf("job %s: the follower did not see the job end: %s", id, jobtest.Kinds(events))
	}
}

// The NATS server keeps a schedule's timer on the leader of the schedules
// stream: when that server is SIGKILLed, another takes the stream over and
// the schedule goes on firing, with no election of winch's; across it,
// each fire's job starts at most once and none is recorded twice.
func TestClusterScheduleLeaderLoss(t *testing.T) {
	c := testenv.StartCluster(t, 3)
	topo := jobtest.Topology // the in-process workers' settings
	topo.Replicas = 3
	e := jobtest.NewWithTopology(t, c.URLs(), topo, withDefaults)
	ctx := t.Context()
	e.StartWorker(worker.Config{ID: "w1"})
	e.StartWorker(worker.Config{ID: "w2"})
	log := filepath.Join(t.TempDir(), "starts")
	name := "cluster-tick"
	addSchedule(t, e, name, "alice", schedule.Spec{Every: time.Second}, "", "test.record", map[string]any{"log": log, "seconds": 0})
	waitRuns(t, e, name, 3, 20*time.Second)

	leader, err := c.Leader(ctx, e.JS, broker.SchedulesStream)
	if err != nil || leader < 0 {
		t.Fatalf("leader of %s: %d %v", broker.SchedulesStream, leader, err)
	}
	c.Kill(leader)
	killedAt := time.Now()
	t.Logf("killed %s, the leader of %s", c.Name(leader), broker.SchedulesStream)
	// Fires due after the kill: the new leader fires them.
	var runs []producer.ScheduleRun
	if !jobtest.Eventually(60*time.Second, func() bool {
		_, got, err := e.Client.Schedule(ctx, name)
		if err != nil {
			return false
		}
		runs = got
		after := 0
		for _, r := range runs {
			if r.Fire.After(killedAt) && r.Skipped == "" {
				after++
			}
		}
		return after >= 3
	}) {
		t.Fatalf("after the leader was killed, fires: %+v", runs)
	}
	newLeader, err := c.Leader(ctx, e.JS, broker.SchedulesStream)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s leads %s now", c.Name(newLeader), broker.SchedulesStream)
	if err := e.Client.RemoveSchedule(ctx, name, "alice"); err != nil {
		t.Fatal(err)
	}
	_, runs, err = e.Client.Schedule(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	fires := map[time.Time]int{}
	for _, r := range runs {
		fires[r.Fire]++
		if r.Skipped != "" {
			continue
		}
		var st schema.JobState
		if !jobtest.Eventually(30*time.Second, func() bool {
			st, err = e.Client.Status(ctx, r.Job)
			return err == nil && st.State == schema.StateSucceeded
		}) {
			t.Errorf("the fire due %v: job %s is %s (%v)", r.Fire, r.Job, st.State, err)
		}
	}
	for due, k := range fires {
		if k != 1 {
			t.Errorf("the fire due %v was recorded %d times", due, k)
		}
	}
	starts := map[string]int{}
	for _, j := range startOrder(t, log) {
		starts[j]++
	}
	for j, k := range starts {
		if k != 1 {
			t.Errorf("job %s started %d times", j, k)
		}
	}
	t.Logf("%d fires recorded, %d jobs started, across the loss of the schedules stream's leader", len(runs), len(starts))
}
