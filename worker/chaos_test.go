package worker_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/winchhq/winch/broker"
	"github.com/winchhq/winch/internal/jobtest"
	"github.com/winchhq/winch/internal/testenv"
	"github.com/winchhq/winch/producer"
	"github.com/winchhq/winch/schema"
)

// Chaos settings. WINCH_CHAOS_JOBS sets the number of jobs (make chaos runs
// chaosMakeJobs), WINCH_CHAOS_SEED repeats a run's jobs and kill schedule.
const (
	chaosJobs       = 100
	chaosWorkers    = 3
	chaosSlots      = 2                // concurrency of each worker
	chaosKillFor    = 4 * time.Minute  // kills stop after this, done or not
	chaosNoProgress = 30 * time.Second // after the kills: stuck if nothing ends for this long
)

// chaosJob is one submitted job and what it may end as.
type chaosJob struct {
	id, command string
	params      map[string]any
	retry       bool
}

// mixedJob is the i-th job of a chaos run: short sleeps, output, failures,
// and commands that may not run twice (test.once, and test.record, which
// counts its own starts in startsPath).
func mixedJob(rng *rand.Rand, i int, startsPath string) chaosJob {
	secs := func(lo, hi float64) float64 { return float64(int((lo+rng.Float64()*(hi-lo))*100)) / 100 }
	var command string
	var params map[string]any
	switch r := rng.IntN(100); {
	case r < 30:
		command, params = "core.sleep", map[string]any{"seconds": secs(0.05, 0.5)}
	case r < 45:
		command, params = "core.echo", map[string]any{"text": "chaos " + strconv.Itoa(i)}
	case r < 55:
		command, params = "core.exit", map[string]any{"code": 3}
	case r < 75:
		command, params = "test.once", map[string]any{"seconds": secs(0.1, 1)}
	default:
		command, params = "test.record", map[string]any{"log": startsPath, "seconds": secs(0.1, 1)}
	}
	return chaosJob{command: command, params: params, retry: !strings.HasPrefix(command, "test.")}
}

// TestChaosKillLoop SIGKILLs a random worker process every 2-4 seconds,
// starting a new one each time, while mixed jobs run, and checks winch's
// guarantees: every acknowledged request reaches a terminal state (none
// lost, none stuck), and a command declared retry: false never starts twice
// (counted by the command itself in a file, and by started events).
func TestChaosKillLoop(t *testing.T) {
	n := chaosJobs
	if v := os.Getenv("WINCH_CHAOS_JOBS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n <= 0 {
			t.Fatalf("WINCH_CHAOS_JOBS=%q: want a positive number", v)
		}
	}
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv("WINCH_CHAOS_SEED"); v != "" {
		var err error
		if seed, err = strconv.ParseUint(v, 10, 64); err != nil {
			t.Fatalf("WINCH_CHAOS_SEED=%q: %v", v, err)
		}
	}
	t.Logf("%d jobs, %d workers of %d slots, seed %d (WINCH_CHAOS_SEED=%d repeats the jobs and the kill schedule)", n, chaosWorkers, chaosSlots, seed, seed)
	rng := rand.New(rand.NewPCG(seed, 0))

	// A server of its own: a topology with deliveries enough for many kills
	// (the package's has MaxDeliver 3, which would make most killed jobs
	// dead), and an events stream that holds only this test's events.
	dir := t.TempDir()
	srv, err := testenv.StartNATS(filepath.Join(dir, "nats"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	e := jobtest.NewWithTopology(t, srv.ClientURL(), broker.Topology{AckWait: 2 * time.Second, MaxDeliver: 10}, withDefaults)

	// The workers' logs go to a file, shown for the jobs that break a
	// guarantee.
	logPath := filepath.Join(dir, "workers.log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	started := 0
	startWorker := func() *jobtest.Child {
		started++
		return e.StartChildTo(fmt.Sprintf("chaos-%d", started), logFile, jobtest.ChildConcurrencyEnv+"="+strconv.Itoa(chaosSlots),
			// A lane per slot: a killed worker's connections all die with it.
			jobtest.ChildConnectionsEnv+"="+strconv.Itoa(chaosSlots))
	}
	workers := make([]*jobtest.Child, chaosWorkers)
	for i := range workers {
		workers[i] = startWorker()
	}

	// Each start of test.record appends "<job> <attempt>" to this file.
	startsPath := filepath.Join(dir, "starts.log")
	begin := time.Now()
	all := make([]chaosJob, 0, n)
	for i := range n {
		j := mixedJob(rng, i, startsPath)
		j.id = e.Submit(j.command, j.params)
		all = append(all, j)
	}
	t.Logf("submitted %d jobs in %v", n, time.Since(begin).Round(time.Millisecond))

	// Kill a worker every 2-4 s until every job is over or the kills' time
	// is up; then let the workers left finish.
	run := newRunTracker(all)
	poll := func() int { return run.poll(t, e) }
	nextInterval := func() time.Duration { return 2*time.Second + time.Duration(rng.Int64N(int64(2*time.Second)+1)) }
	kills := 0
	killUntil := begin.Add(chaosKillFor)
	nextKill := time.Now().Add(nextInterval())
	lastEnd, ended := time.Now(), 0
	left := n
	for {
		if left = poll(); left == 0 {
			break
		}
		if len(run.final) > ended {
			lastEnd, ended = time.Now(), len(run.final)
		}
		now := time.Now()
		if now.Before(killUntil) {
			if !now.Before(nextKill) {
				i := rng.IntN(len(workers))
				workers[i].Kill()
				kills++
				workers[i] = startWorker()
				nextKill = time.Now().Add(nextInterval())
			}
		} else if now.Sub(lastEnd) > chaosNoProgress && now.Sub(killUntil) > chaosNoProgress {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	elapsed := time.Since(begin)
	t.Logf("%d of %d jobs over after %v, %d workers killed (SIGKILL), %d started", len(run.final), n, elapsed.Round(time.Millisecond), kills, started)

	summary := run.check(t, e, startsPath, logPath)
	t.Logf("final states after %v, %d kills, %s", elapsed.Round(time.Millisecond), kills, summary)
}

// runTracker follows the jobs of a run to their ends.
type runTracker struct {
	all   []chaosJob
	final map[string]schema.JobState
	lost  map[string]error
}

func newRunTracker(all []chaosJob) *runTracker {
	return &runTracker{all: all, final: map[string]schema.JobState{}, lost: map[string]error{}}
}

// poll reads the state of every job not yet over, and says how many are
// left. A job with neither a state nor a request is lost (for now).
func (r *runTracker) poll(t *testing.T, e *jobtest.Env) int {
	left := 0
	for _, j := range r.all {
		if _, ok := r.final[j.id]; ok {
			continue
		}
		st, err := e.Client.Status(t.Context(), j.id)
		switch {
		case errors.Is(err, producer.ErrNotFound):
			r.lost[j.id] = err
			left++
		case err != nil:
			left++ // the broker may be failing over: ask again
		case st.State.Terminal():
			r.final[j.id] = st
			delete(r.lost, j.id)
		default:
			left++
		}
	}
	return left
}

// check holds a run to winch's guarantees: every request left the queue,
// no job is lost or stuck, each ended as its command allows, with a final
// event that agrees with its state, and a command declared retry: false
// started at most once (by its events and, for test.record, by its own
// count in startsPath). It reports each violation with the job's events
// and its lines of logPath, and returns a summary of the final states.
func (r *runTracker) check(t *testing.T, e *jobtest.Env, startsPath, logPath string) string {
	all, final, lost := r.all, r.final, r.lost
	// Every request left the stream: each was acknowledged or buried.
	if pending := e.Drained(); pending != 0 {
		t.Errorf("%d requests left in the jobs stream", pending)
	}
	events := chaosEvents(t, e)
	starts := chaosStarts(t, startsPath)

	counts := map[string]int{}
	var violations []string
	bad := map[string]bool{}
	violate := func(j chaosJob, format string, args ...any) {
		violations = append(violations, fmt.Sprintf("job %s (%s): ", j.id, j.command)+fmt.Sprintf(format, args...))
		bad[j.id] = true
	}
	retried := 0
	for _, j := range all {
		st, over := final[j.id]
		if !over {
			if err, ok := lost[j.id]; ok {
				violate(j, "lost: %v", err)
				counts["LOST"]++
				continue
			}
			st = e.Status(j.id)
			violate(j, "stuck %s (attempt %d on %s)", st.State, st.Attempt, st.Worker)
			counts["STUCK "+string(st.State)]++
			continue
		}
		if st.Attempt > 1 {
			retried++
		}
		key := string(st.State)
		if st.Reason != "" {
			key += " " + st.Reason
		} else if st.State == schema.StateFailed && st.ExitCode != nil {
			key += " exit " + strconv.Itoa(*st.ExitCode)
		}
		counts[j.command+": "+key]++
		counts[key]++
		evs := events[j.id]
		if last := lastFinal(evs); last == nil {
			violate(j, "ended %s but no final event was published", st.State)
		} else if last.State != st.State {
			violate(j, "ended %s but its final event says %s", st.State, last.State)
		}
		switch {
		case st.State == schema.StateSucceeded && j.command != "core.exit":
		case st.State == schema.StateDead && st.Reason == schema.ReasonDead:
		case j.command == "core.exit" && st.State == schema.StateFailed && st.ExitCode != nil && *st.ExitCode == 3:
		case !j.retry && st.State == schema.StateFailed && (st.Reason == schema.ReasonWorkerLost || st.Reason == schema.ReasonInterrupted):
		case st.State == schema.StateFailed && st.Reason != "":
			t.Logf("job %s (%s) failed with reason %s: %s", j.id, j.command, st.Reason, st.Error)
		default:
			violate(j, "ended %s (reason %q, exit %v): %s", st.State, st.Reason, exitCode(st.ExitCode), st.Error)
		}
		if j.retry {
			continue
		}
		if k := startedEvents(evs); k > 1 {
			violate(j, "retry: false, yet %d started events", k)
		}
		if j.command == "test.record" && len(starts[j.id]) > 1 {
			violate(j, "retry: false, yet it started %d times (attempts %v by its own count)", len(starts[j.id]), starts[j.id])
		}
		// The counts count: a job that succeeded started once, by both.
		if st.State == schema.StateSucceeded && startedEvents(evs) != 1 {
			violate(j, "succeeded with %d started events", startedEvents(evs))
		}
		if st.State == schema.StateSucceeded && j.command == "test.record" && len(starts[j.id]) != 1 {
			violate(j, "succeeded, yet started %d times by its own count", len(starts[j.id]))
		}
	}

	var keys []string
	for k := range counts {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	for _, k := range keys {
		if !strings.Contains(k, ": ") {
			fmt.Fprintf(&b, "\n  %-36s %d", k, counts[k])
		}
	}
	for _, k := range keys {
		if strings.Contains(k, ": ") {
			fmt.Fprintf(&b, "\n    %-34s %d", k, counts[k])
		}
	}
	twice := 0
	for _, s := range starts {
		if len(s) > 1 {
			twice++
		}
	}
	summary := fmt.Sprintf("%d jobs ran more than one attempt, %d test.record starts recorded (%d jobs started more than once):%s",
		retried, countStarts(starts), twice, b.String())
	t.Logf("orphans: %s", chaosOrphans(all))

	if len(violations) == 0 {
		return summary
	}
	logs, _ := os.ReadFile(logPath)
	for _, v := range violations {
		t.Error(v)
	}
	shown := 0
	for _, j := range all {
		if !bad[j.id] || shown == 5 {
			continue
		}
		shown++
		st, _ := e.Client.Status(t.Context(), j.id)
		t.Logf("job %s: state %s reason %q attempt %d worker %s session %s started %v retry %v error %q",
			j.id, st.State, st.Reason, st.Attempt, st.Worker, st.Session, st.StartedAt, st.Retry, st.Error)
		for _, ev := range events[j.id] {
			if ev.Kind != schema.KindLog {
				t.Logf("  event attempt %d seq %d %s state %s reason %q worker %s error %q", ev.Attempt, ev.Seq, ev.Kind, ev.State, ev.Reason, ev.Worker, ev.Error)
			}
		}
		t.Logf("  starts by its own count (attempts): %v", starts[j.id])
		for line := range bytes.Lines(logs) {
			if bytes.Contains(line, []byte(j.id)) {
				t.Logf("  log: %s", bytes.TrimSpace(line))
			}
		}
	}
	return summary
}

// chaosEvents reads every event of the test's server, by job.
func chaosEvents(t *testing.T, e *jobtest.Env) map[string][]schema.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	// After a server of a cluster came back, the one this test talks to
	// may not answer at once: wait through it, as winch's clients do.
	var s jetstream.Stream
	var info *jetstream.StreamInfo
	err := broker.AcrossFailover(ctx, func(ctx context.Context) (err error) {
		if s, err = e.JS.Stream(ctx, broker.EventsStream); err != nil {
			return err
		}
		info, err = s.Info(ctx)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	byJob := map[string][]schema.Event{}
	if info.State.Msgs == 0 {
		return byJob
	}
	cons, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverAllPolicy})
	if err != nil {
		t.Fatal(err)
	}
	for seq := uint64(0); seq < info.State.LastSeq; {
		batch, err := cons.Fetch(1000, jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		got := 0
		for m := range batch.Messages() {
			got++
			meta, err := m.Metadata()
			if err != nil {
				t.Fatal(err)
			}
			seq = meta.Sequence.Stream
			ev, err := schema.DecodeEvent(m.Data())
			if err != nil {
				t.Fatalf("event %d: %v", seq, err)
			}
			byJob[ev.JobID] = append(byJob[ev.JobID], ev)
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
			t.Fatal(err)
		}
		if got == 0 {
			t.Fatalf("events stream: read up to %d of %d", seq, info.State.LastSeq)
		}
	}
	return byJob
}

// chaosStarts reads the starts that test.record recorded: the attempts
// that started, by job.
func chaosStarts(t *testing.T, path string) map[string][]int {
	t.Helper()
	starts := map[string][]int{}
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return starts
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		id, attempt, ok := strings.Cut(sc.Text(), " ")
		a, err := strconv.Atoi(attempt)
		if !ok || err != nil {
			t.Errorf("starts file: bad line %q", sc.Text())
			continue
		}
		starts[id] = append(starts[id], a)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return starts
}

func countStarts(starts map[string][]int) int {
	n := 0
	for _, s := range starts {
		n += len(s)
	}
	return n
}

// startedEvents counts the distinct attempts that announced a start.
func startedEvents(events []schema.Event) int {
	seen := map[int]bool{}
	for _, ev := range events {
		if ev.Kind == schema.KindStarted {
			seen[ev.Attempt] = true
		}
	}
	return len(seen)
}

// lastFinal is the last event that ends the job, if any.
func lastFinal(events []schema.Event) *schema.Event {
	for i := len(events) - 1; i >= 0; i-- {
		if events[i].Terminal() {
			return &events[i]
		}
	}
	return nil
}

func exitCode(p *int) any {
	if p == nil {
		return "none"
	}
	return *p
}

// chaosOrphans describes the processes still alive that run for one of the
// jobs (the command, or its supervisor): every job is over, so any is a
// leftover of a killed worker.
func chaosOrphans(all []chaosJob) string {
	time.Sleep(time.Second) // let supervisors that just saw their worker die finish
	ids := map[string]bool{}
	for _, j := range all {
		ids[j.id] = true
	}
	procs, err := os.ReadDir("/proc")
	if err != nil {
		return "cannot tell: " + err.Error()
	}
	var found []string
	for _, p := range procs {
		if _, err := strconv.Atoi(p.Name()); err != nil {
			continue
		}
		env, err := os.ReadFile(filepath.Join("/proc", p.Name(), "environ"))
		if err != nil {
			continue
		}
		for kv := range bytes.SplitSeq(env, []byte{0}) {
			if id, ok := bytes.CutPrefix(kv, []byte("WINCH_JOB_ID=")); ok && ids[string(id)] {
				cmdline, _ := os.ReadFile(filepath.Join("/proc", p.Name(), "cmdline"))
				found = append(found, fmt.Sprintf("pid %s job %s: %s", p.Name(), id, bytes.ReplaceAll(bytes.TrimRight(cmdline, "\x00"), []byte{0}, []byte{' '})))
				break
			}
		}
	}
	if len(found) == 0 {
		return "none"
	}
	return fmt.Sprintf("%d processes of jobs that are over are still alive:\n  %s", len(found), strings.Join(found, "\n  "))
}
