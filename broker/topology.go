package broker

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Topology is the shape of winch's streams, consumers and buckets. Its zero
// value, through WithDefaults, is what production uses.
type Topology struct {
	// AckWait is how long a worker may go silent on a job before the broker
	// hands the job to another worker (the lease). Workers beat their
	// session, and send in-progress acks for running jobs, at a third of it.
	AckWait time.Duration
	// MaxDeliver bounds deliveries of one request; after the last, the job
	// is dead.
	MaxDeliver int
	// MaxAckPending bounds the jobs in flight on one queue across the fleet.
	MaxAckPending int
	// EventsMaxAge is how long the events stream keeps a job's events; the
	// audit store keeps them after that.
	EventsMaxAge time.Duration
	// StateTTL is how long a job's state entry lives after its last change.
	StateTTL time.Duration
	// DuplicateWindow is how long the streams remember message IDs, so that
	// a retried publish is dropped.
	DuplicateWindow time.Duration
	// Replicas of every stream and bucket: 1 on one server, 3 on a cluster.
	Replicas int
}

// WithDefaults fills in unset fields.
func (t Topology) WithDefaults() Topology {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&t.AckWait, 30*time.Second)
	// Three days, not seven: the stream is a buffer in front of the audit
	// store, and each job in it costs the broker memory and start-up time
	// (BENCHMARKS.md, "A million jobs"); three days still outlast a
	// weekend of ClickHouse down.
	def(&t.EventsMaxAge, 3*24*time.Hour)
	def(&t.StateTTL, 30*24*time.Hour)
	def(&t.DuplicateWindow, 10*time.Minute)
	if t.MaxDeliver <= 0 {
		t.MaxDeliver = 5
	}
	if t.MaxAckPending <= 0 {
		t.MaxAckPending = 1000
	}
	if t.Replicas <= 0 {
		t.Replicas = 1
	}
	return t
}

// Lease is how old a worker session's last beat may be before the worker
// is taken for lost, with the jobs it holds.
func (t Topology) Lease() time.Duration { return t.WithDefaults().AckWait }

// HeartbeatInterval is how often a worker proves it still holds a job.
func (t Topology) HeartbeatInterval() time.Duration { return t.WithDefaults().AckWait / 3 }

// ConflictError says that a process was started with cluster-wide settings
// that differ from the ones the fleet's topology has. Those settings have one
// owner, `winch init` (Apply): a worker whose flags disagree says so instead of
// silently reconfiguring every other worker.
type ConflictError struct {
	// Diffs name each setting: "ack_wait: the fleet has 30s, this process asks for 3s".
	Diffs []string
}

func (e *ConflictError) Error() string {
	return "cluster-wide settings differ from the fleet's: " + strings.Join(e.Diffs, "; ") +
		". Drop the flags to use the fleet's settings, or change them for every worker with `winch init` and the same flags"
}

// settings are the Topology fields that a process may ask for, with how
// each is stored in the jobs stream's metadata, so that every process reads
// the fleet's settings from one place.
var settings = []struct {
	key string
	get func(*Topology) any
	set func(*Topology, string) error
}{
	{"ack_wait", func(t *Topology) any { return t.AckWait }, durationSetter(func(t *Topology) *time.Duration { return &t.AckWait })},
	{"max_deliver", func(t *Topology) any { return t.MaxDeliver }, intSetter(func(t *Topology) *int { return &t.MaxDeliver })},
	{"max_ack_pending", func(t *Topology) any { return t.MaxAckPending }, intSetter(func(t *Topology) *int { return &t.MaxAckPending })},
	{"events_max_age", func(t *Topology) any { return t.EventsMaxAge }, durationSetter(func(t *Topology) *time.Duration { return &t.EventsMaxAge })},
	{"state_ttl", func(t *Topology) any { return t.StateTTL }, durationSetter(func(t *Topology) *time.Duration { return &t.StateTTL })},
	{"duplicate_window", func(t *Topology) any { return t.DuplicateWindow }, durationSetter(func(t *Topology) *time.Duration { return &t.DuplicateWindow })},
	{"replicas", func(t *Topology) any { return t.Replicas }, intSetter(func(t *Topology) *int { return &t.Replicas })},
}

const metadataPrefix = "winch."

func durationSetter(f func(*Topology) *time.Duration) func(*Topology, string) error {
	return func(t *Topology, s string) error {
		d, err := time.ParseDuration(s)
		*f(t) = d
		return err
	}
}

func intSetter(f func(*Topology) *int) func(*Topology, string) error {
	return func(t *Topology, s string) error {
		n, err := strconv.Atoi(s)
		*f(t) = n
		return err
	}
}

func isZero(v any) bool {
	switch v := v.(type) {
	case time.Duration:
		return v <= 0
	case int:
		return v <= 0
	}
	return false
}

func (t Topology) metadata() map[string]string {
	m := make(map[string]string, len(settings))
	for _, s := range settings {
		m[metadataPrefix+s.key] = fmt.Sprint(s.get(&t))
	}
	return m
}

// topologyFrom reads the settings recorded on the jobs stream; ok is false
// when none are (a stream made before settings were recorded).
func topologyFrom(meta map[string]string) (Topology, bool, error) {
	var t Topology
	found := false
	for _, s := range settings {
		v, ok := meta[metadataPrefix+s.key]
		if !ok {
			continue
		}
		found = true
		if err := s.set(&t, v); err != nil {
			return t, true, fmt.Errorf("stream %s metadata %s%s=%q: %w", JobsStream, metadataPrefix, s.key, v, err)
		}
	}
	return t.WithDefaults(), found, nil
}

// Load returns the fleet's topology, as recorded on the jobs stream.
func Load(ctx context.Context, js jetstream.JetStream) (Topology, error) {
	s, err := js.Stream(ctx, JobsStream)
	if err != nil {
		return Topology{}, fmt.Errorf("read the topology: %w", err)
	}
	t, _, err := topologyFrom(s.CachedInfo().Config.Metadata)
	return t, err
}

// Ensure makes sure winch's streams, buckets and their shape exist, and
// returns the fleet's topology. Where there is none yet, it is made with t's
// settings (defaults for the unset ones): the first process to start owns
// them. Where there is one, a setting that t asks for (a non-zero field) and
// that differs from the fleet's is a *ConflictError, and nothing is changed;
// only Apply changes settings.
func Ensure(ctx context.Context, js jetstream.JetStream, t Topology) (Topology, error) {
	return ensure(ctx, js, t, false)
}

// Apply is Ensure that changes the fleet's settings to t's non-zero fields,
// on every stream, bucket and queue consumer. It is `winch init`.
func Apply(ctx context.Context, js jetstream.JetStream, t Topology) (Topology, error) {
	return ensure(ctx, js, t, true)
}

// Check returns the fleet's topology without changing anything: a
// *ConflictError if t asks for a setting (a non-zero field) that differs,
// ErrNoTopology if there is none yet.
func Check(ctx context.Context, js jetstream.JetStream, t Topology) (Topology, error) {
	s, err := js.Stream(ctx, JobsStream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return Topology{}, ErrNoTopology
	}
	if err != nil {
		return Topology{}, fmt.Errorf("read the topology: %w", err)
	}
	have, _, err := topologyFrom(s.CachedInfo().Config.Metadata)
	if err != nil {
		return Topology{}, err
	}
	if _, diffs := merge(have, t); len(diffs) > 0 {
		return have, &ConflictError{Diffs: diffs}
	}
	return have, nil
}

// ErrNoTopology: winch's streams are not on this server yet.
var ErrNoTopology = errors.New("winch's streams are not on this NATS server (start `winch broker`, `winch dev` or `winch init` once to create them)")

// merge returns have with asked's non-zero settings, and what differed.
func merge(have, asked Topology) (Topology, []string) {
	var diffs []string
	merged := have
	for _, st := range settings {
		want := st.get(&asked)
		if isZero(want) || want == st.get(&have) {
			continue
		}
		diffs = append(diffs, fmt.Sprintf("%s: the fleet has %v, this process asks for %v", st.key, st.get(&have), want))
		_ = st.set(&merged, fmt.Sprint(want))
	}
	return merged, diffs
}

func ensure(ctx context.Context, js jetstream.JetStream, asked Topology, apply bool) (Topology, error) {
	t := asked.WithDefaults()
	if s, err := js.Stream(ctx, JobsStream); err == nil {
		have, recorded, err := topologyFrom(s.CachedInfo().Config.Metadata)
		if err != nil {
			return Topology{}, err
		}
		if recorded {
			merged, diffs := merge(have, asked)
			if len(diffs) > 0 && !apply {
				return have, &ConflictError{Diffs: diffs}
			}
			t = merged
		}
	} else if !errors.Is(err, jetstream.ErrStreamNotFound) {
		return Topology{}, fmt.Errorf("read the topology: %w", err)
	}
	if err := ensureAll(ctx, js, t); err != nil {
		return Topology{}, err
	}
	if apply {
		if err := updateQueues(ctx, js, t); err != nil {
			return Topology{}, err
		}
	}
	return t, nil
}

func ensureAll(ctx context.Context, js jetstream.JetStream, t Topology) error {
	if err := ensureStream(ctx, js, jetstream.StreamConfig{
		Name:        JobsStream,
		Description: "winch requests; one durable consumer per queue",
		Subjects:    []string{jobsPrefix + ">"},
		Retention:   jetstream.WorkQueuePolicy,
		Storage:     jetstream.FileStorage,
		Duplicates:  t.DuplicateWindow,
		Replicas:    t.Replicas,
		MaxMsgSize:  1 << 20,
		// Direct gets let clients and workers find a queued request by its
		// job (winch ps, winch status, cancel) without a consumer.
		AllowDirect: true,
		Metadata:    t.metadata(),
	}); err != nil {
		return fmt.Errorf("ensure stream %s: %w", JobsStream, err)
	}
	if err := ensureStream(ctx, js, jetstream.StreamConfig{
		Name:        EventsStream,
		Description: "everything that happens to winch jobs, per job in order",
		Subjects:    []string{eventsPrefix + ">"},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		MaxAge:      t.EventsMaxAge,
		Duplicates:  t.DuplicateWindow,
		Replicas:    t.Replicas,
		// Every follower (winch run, winch logs -f) is a consumer while it
		// follows; the server's default of 1000 per stream is too few.
		MaxConsumers: 100_000,
	}); err != nil {
		return fmt.Errorf("ensure stream %s: %w", EventsStream, err)
	}
	if err := ensureStream(ctx, js, jetstream.StreamConfig{
		Name:        ControlStream,
		Description: "winch control requests (cancel), until a worker has decided them",
		Subjects:    []string{controlPrefix + ">"},
		Retention:   jetstream.WorkQueuePolicy,
		Storage:     jetstream.FileStorage,
		MaxAge:      t.EventsMaxAge,
		Duplicates:  t.DuplicateWindow,
		Replicas:    t.Replicas,
		MaxMsgSize:  64 << 10,
	}); err != nil {
		return fmt.Errorf("ensure stream %s: %w", ControlStream, err)
	}
	if err := ensureStream(ctx, js, jetstream.StreamConfig{
		Name:        DeadStream,
		Description: "requests that ran out of deliveries, until a worker records their jobs dead",
		Subjects:    []string{MaxDeliveriesAdvisories},
		Retention:   jetstream.WorkQueuePolicy,
		Storage:     jetstream.FileStorage,
		MaxAge:      t.EventsMaxAge,
		Duplicates:  t.DuplicateWindow,
		Replicas:    t.Replicas,
	}); err != nil {
		return fmt.Errorf("ensure stream %s: %w", DeadStream, err)
	}
	if err := ensureStream(ctx, js, jetstream.StreamConfig{
		Name:        SchedulesStream,
		Description: "winch schedules (fired by the server), their fires until a worker relays them, and a record of each fire",
		Subjects:    []string{AllSchedules, AllFires, AllRuns},
		// Limits, not a work queue: clients read schedules and records with
		// ordered consumers (last per subject), which a work queue refuses.
		// MaxMsgsPerSubject bounds what stays: one message per schedule
		// (roll-ups), the last RunsKept fires and records of each.
		Retention: jetstream.LimitsPolicy,
		Storage:   jetstream.FileStorage,
		// ADR-51: the server fires these messages itself. It needs roll-ups
		// (a schedule is one message per subject, replaced to pause, resume
		// or remove it).
		AllowMsgSchedules: true,
		AllowRollup:       true,
		MaxMsgsPerSubject: RunsKept,
		Duplicates:        t.DuplicateWindow,
		Replicas:          t.Replicas,
		MaxMsgSize:        1 << 20,
		AllowDirect:       true,
	}); err != nil {
		return fmt.Errorf("ensure stream %s: %w", SchedulesStream, err)
	}
	if err := ensureNotifierConsumer(ctx, js); err != nil {
		return err
	}
	if err := ensureBucket(ctx, js, jetstream.KeyValueConfig{
		Bucket:      StateBucket,
		Description: "the latest state of each winch job",
		History:     1,
		TTL:         t.StateTTL,
		Storage:     jetstream.FileStorage,
		Replicas:    t.Replicas,
	}); err != nil {
		return fmt.Errorf("ensure bucket %s: %w", StateBucket, err)
	}
	if err := ensureBucket(ctx, js, jetstream.KeyValueConfig{
		Bucket:      WorkersBucket,
		Description: "winch worker sessions, each refreshed every heartbeat interval",
		History:     1,
		// An entry older than a few leases belongs to a worker that is gone.
		TTL:      4 * t.Lease(),
		Storage:  jetstream.FileStorage,
		Replicas: t.Replicas,
	}); err != nil {
		return fmt.Errorf("ensure bucket %s: %w", WorkersBucket, err)
	}
	if err := ensureBucket(ctx, js, jetstream.KeyValueConfig{
		Bucket:      ModulesBucket,
		Description: "winch module registry",
		History:     5,
		Storage:     jetstream.FileStorage,
		Replicas:    t.Replicas,
	}); err != nil {
		return fmt.Errorf("ensure bucket %s: %w", ModulesBucket, err)
	}
	if err := ensureBucket(ctx, js, jetstream.KeyValueConfig{
		Bucket:      SlotsBucket,
		Description: "winch concurrency limits: the holders of each key's slots, the jobs waiting for one and their requests",
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    t.Replicas,
	}); err != nil {
		return fmt.Errorf("ensure bucket %s: %w", SlotsBucket, err)
	}
	return nil
}

// ensureStream creates the stream, or updates it when its configuration
// differs in what winch sets. An update of an unchanged stream is not free
// (the server rewrites its store's configuration), and every worker calls
// this at start.
func ensureStream(ctx context.Context, js jetstream.JetStream, want jetstream.StreamConfig) error {
	for range 3 {
		s, err := js.Stream(ctx, want.Name)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			if _, err = js.CreateStream(ctx, want); errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
				continue // created by another process just now: compare with it
			}
			return err
		}
		if err != nil {
			return err
		}
		have := s.CachedInfo().Config
		if have.Description == want.Description && slices.Equal(have.Subjects, want.Subjects) &&
			have.Retention == want.Retention && have.Storage == want.Storage && have.MaxAge == want.MaxAge &&
			have.Duplicates == want.Duplicates && have.Replicas == want.Replicas && have.AllowDirect == want.AllowDirect &&
			have.AllowMsgSchedules == want.AllowMsgSchedules && unlimited(int(have.MaxMsgsPerSubject)) == unlimited(int(want.MaxMsgsPerSubject)) &&
			maps.Equal(winchMetadata(have.Metadata), winchMetadata(want.Metadata)) &&
			unlimited(int(have.MaxMsgSize)) == unlimited(int(want.MaxMsgSize)) && unlimited(have.MaxConsumers) == unlimited(want.MaxConsumers) {
			return nil
		}
		_, err = js.UpdateStream(ctx, want)
		return err
	}
	return fmt.Errorf("stream %s keeps changing", want.Name)
}

// unlimited normalizes a limit the way the server stores it: 0 is -1.
func unlimited(n int) int {
	if n == 0 {
		return -1
	}
	return n
}

// ensureBucket does for a key-value bucket what ensureStream does.
func ensureBucket(ctx context.Context, js jetstream.JetStream, want jetstream.KeyValueConfig) error {
	if s, err := js.Stream(ctx, "KV_"+want.Bucket); err == nil {
		have := s.CachedInfo().Config
		if have.Description == want.Description && have.MaxMsgsPerSubject == int64(want.History) &&
			have.MaxAge == want.TTL && have.Replicas == max(want.Replicas, 1) && have.Storage == want.Storage {
			return nil
		}
	}
	_, err := js.CreateOrUpdateKeyValue(ctx, want)
	return err
}

// winchMetadata is the part of a stream's metadata that winch writes (the
// server adds its own keys).
func winchMetadata(m map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range m {
		if strings.HasPrefix(k, metadataPrefix) {
			out[k] = v
		}
	}
	return out
}

// Priorities are the priorities of requests, highest first, as the broker
// names them ("" is normal).
var Priorities = []string{PriorityHigh, "", PriorityLow}

// FinalEventSubjects are the subjects of the events that end jobs
// (finished, rejected): what notifiers take.
var FinalEventSubjects = []string{EventSubject("*", "finished"), EventSubject("*", "rejected")}

// The notifiers' consumer's settings unless a notifier asks for others.
const (
	NotifierAckWait       = 30 * time.Second
	NotifierMaxAckPending = 64
)

// NotifierConsumerConfig is the durable consumer of the events that end
// jobs which notifiers named name share; zero ackWait or maxAckPending are
// the defaults above. It is the one definition: the topology creates
// NotifierConsumer with it, and a notifier creates or updates its own with
// it.
func NotifierConsumerConfig(name string, ackWait time.Duration, maxAckPending int) jetstream.ConsumerConfig {
	if ackWait <= 0 {
		ackWait = NotifierAckWait
	}
	if maxAckPending <= 0 {
		maxAckPending = NotifierMaxAckPending
	}
	return jetstream.ConsumerConfig{
		Durable:        name,
		Description:    "winch notifiers: webhooks when jobs end",
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        ackWait,
		MaxDeliver:     -1, // the retry bound is the notifier's, by time
		MaxAckPending:  maxAckPending,
		DeliverPolicy:  jetstream.DeliverNewPolicy,
		FilterSubjects: FinalEventSubjects,
	}
}

// ensureNotifierConsumer creates the notifiers' consumer with the topology,
// so that the events stream keeps jobs' ends for notifiers from then on: a
// run with --notify that ends before any notifier ever started is still
// announced once one starts. One that exists is left as it is (a notifier
// may have set its own ack wait).
func ensureNotifierConsumer(ctx context.Context, js jetstream.JetStream) error {
	_, err := js.Consumer(ctx, EventsStream, NotifierConsumer)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		_, err = js.CreateConsumer(ctx, EventsStream, NotifierConsumerConfig(NotifierConsumer, 0, 0))
		if errors.Is(err, jetstream.ErrConsumerExists) {
			err = nil // another process made it meanwhile
		}
	}
	if err != nil {
		return fmt.Errorf("ensure consumer %s of %s: %w", NotifierConsumer, EventsStream, err)
	}
	return nil
}

// queueConsumer is the configuration of the consumer of queue's requests of
// priority under t.
func queueConsumer(queue, priority string, t Topology) jetstream.ConsumerConfig {
	// Redeliveries back off: a request that keeps losing its worker is not
	// retried in a tight loop. The first step is AckWait itself.
	backoff := make([]time.Duration, t.MaxDeliver)
	for i := range backoff {
		backoff[i] = t.AckWait * time.Duration(1<<min(i, 4))
	}
	desc := "winch workers of queue " + queue
	if priority != "" {
		desc += ", " + priority + " priority"
	}
	return jetstream.ConsumerConfig{
		Durable:       PriorityConsumerName(queue, priority),
		Description:   desc,
		FilterSubject: PriorityFilter(queue, priority),
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       t.AckWait,
		BackOff:       backoff,
		MaxDeliver:    t.MaxDeliver,
		MaxAckPending: t.MaxAckPending,
		MaxWaiting:    4096,
		Replicas:      t.Replicas,
	}
}

// EnsureQueue makes sure the durable consumers that the workers of queue
// share exist with the fleet's topology t (as Ensure returned it), one per
// priority, and returns the normal one. An existing consumer that matches is
// left untouched.
func EnsureQueue(ctx context.Context, js jetstream.JetStream, queue string, t Topology) (jetstream.Consumer, error) {
	cs, err := EnsureQueues(ctx, js, queue, t)
	if err != nil {
		return nil, err
	}
	return cs[1], nil
}

// EnsureQueues is EnsureQueue returning every consumer of queue, in the
// order of Priorities (high, normal, low).
func EnsureQueues(ctx context.Context, js jetstream.JetStream, queue string, t Topology) ([]jetstream.Consumer, error) {
	// Normal first: a queue made before priorities has a normal consumer
	// that takes every subject of the queue, which must narrow before the
	// others may exist beside it (filters may not overlap).
	out := make([]jetstream.Consumer, len(Priorities))
	for _, i := range []int{1, 0, 2} {
		c, err := ensureQueueConsumer(ctx, js, queueConsumer(queue, Priorities[i], t.WithDefaults()))
		if err != nil {
			return nil, fmt.Errorf("ensure consumer for queue %s: %w", queue, err)
		}
		out[i] = c
	}
	return out, nil
}

func ensureQueueConsumer(ctx context.Context, js jetstream.JetStream, want jetstream.ConsumerConfig) (jetstream.Consumer, error) {
	if c, err := js.Consumer(ctx, JobsStream, want.Durable); err == nil {
		have := c.CachedInfo().Config
		if have.AckWait == want.AckWait && have.MaxDeliver == want.MaxDeliver && have.MaxAckPending == want.MaxAckPending &&
			slices.Equal(have.BackOff, want.BackOff) && have.FilterSubject == want.FilterSubject && have.Description == want.Description {
			return c, nil
		}
	}
	return js.CreateOrUpdateConsumer(ctx, JobsStream, want)
}

// updateQueues brings every existing queue consumer to t.
func updateQueues(ctx context.Context, js jetstream.JetStream, t Topology) error {
	s, err := js.Stream(ctx, JobsStream)
	if err != nil {
		return err
	}
	names := s.ConsumerNames(ctx)
	for name := range names.Name() {
		if queue, ok := strings.CutPrefix(name, "queue-"); ok {
			if _, err := EnsureQueue(ctx, js, queue, t); err != nil {
				return err
			}
		}
	}
	return names.Err()
}
