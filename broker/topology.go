package broker

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Topology is the shape of winch's streams, consumers and buckets. Its zero
// value, through WithDefaults, is what production uses.
type Topology struct {
	// AckWait is how long a worker may go silent on a job before the broker
	// hands the job to another worker. Workers send in-progress acks and
	// heartbeats at a third of it while a job runs.
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
	def(&t.EventsMaxAge, 7*24*time.Hour)
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

// Lease is how old a running job's heartbeat may be before its worker is
// taken for lost.
func (t Topology) Lease() time.Duration { return t.WithDefaults().AckWait }

// HeartbeatInterval is how often a worker proves it still holds a job.
func (t Topology) HeartbeatInterval() time.Duration { return t.WithDefaults().AckWait / 3 }

// Ensure creates or updates the streams and buckets. It is idempotent, so
// every process that needs them may call it at start.
func Ensure(ctx context.Context, js jetstream.JetStream, t Topology) error {
	t = t.WithDefaults()
	if err := ensureStream(ctx, js, jetstream.StreamConfig{
		Name:        JobsStream,
		Description: "winch requests; one durable consumer per queue",
		Subjects:    []string{jobsPrefix + ">"},
		Retention:   jetstream.WorkQueuePolicy,
		Storage:     jetstream.FileStorage,
		Duplicates:  t.DuplicateWindow,
		Replicas:    t.Replicas,
		MaxMsgSize:  1 << 20,
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
		Bucket:      ModulesBucket,
		Description: "winch module registry",
		History:     5,
		Storage:     jetstream.FileStorage,
		Replicas:    t.Replicas,
	}); err != nil {
		return fmt.Errorf("ensure bucket %s: %w", ModulesBucket, err)
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
			have.Duplicates == want.Duplicates && have.Replicas == want.Replicas &&
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

// EnsureQueue creates or updates the durable consumer that the workers of
// queue share, and returns it.
func EnsureQueue(ctx context.Context, js jetstream.JetStream, queue string, t Topology) (jetstream.Consumer, error) {
	t = t.WithDefaults()
	// Redeliveries back off: a request that keeps losing its worker is not
	// retried in a tight loop. The first step is AckWait itself.
	backoff := make([]time.Duration, t.MaxDeliver)
	for i := range backoff {
		backoff[i] = t.AckWait * time.Duration(1<<min(i, 4))
	}
	c, err := js.CreateOrUpdateConsumer(ctx, JobsStream, jetstream.ConsumerConfig{
		Durable:       ConsumerName(queue),
		Description:   "winch workers of queue " + queue,
		FilterSubject: QueueFilter(queue),
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       t.AckWait,
		BackOff:       backoff,
		MaxDeliver:    t.MaxDeliver,
		MaxAckPending: t.MaxAckPending,
		MaxWaiting:    4096,
		Replicas:      t.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("ensure consumer for queue %s: %w", queue, err)
	}
	return c, nil
}
