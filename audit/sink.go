package audit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/winchhq/winch/broker"
	"github.com/winchhq/winch/metrics"
	"github.com/winchhq/winch/schema"
)

// SinkConfig configures a sink.
type SinkConfig struct {
	// Consumer is the durable consumer the sinks share; several sinks on
	// the same name split the events between them.
	Consumer string
	// BatchSize and MaxWait shape inserts: a batch goes when it is full or
	// MaxWait after the fetch began.
	BatchSize int
	MaxWait   time.Duration
	// AckWait is how long a batch may stay unacknowledged before JetStream
	// hands it to another sink; the sink keeps it while it retries.
	AckWait time.Duration
	// LagEvery is how often the sink logs its lag while it is behind.
	LagEvery time.Duration
	// FilterSubjects, when set, limits the sink to these event subjects
	// (default: all of winch.events.>).
	FilterSubjects []string
	Logger         *slog.Logger
	// Metrics, when set, counts inserts and the lag (WINCH_METRICS_ADDR).
	Metrics *metrics.Sink
}

func (c SinkConfig) withDefaults() SinkConfig {
	if c.Consumer == "" {
		c.Consumer = "audit-sink"
	}
	if c.BatchSize <= 0 {
		c.BatchSize = 5000
	}
	if c.MaxWait <= 0 {
		c.MaxWait = time.Second
	}
	if c.AckWait <= 0 {
		c.AckWait = 30 * time.Second
	}
	if c.LagEvery <= 0 {
		c.LagEvery = 10 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Sink moves events from the events stream into the audit store, in
// batches, and acknowledges them only once ClickHouse has confirmed the
// insert. While ClickHouse is down it retries the same batch with backoff;
// the stream holds everything meanwhile.
type Sink struct {
	cfg   SinkConfig
	store *Store
	js    jetstream.JetStream
	nc    *nats.Conn
	log   *slog.Logger

	cons jetstream.Consumer
	stop context.CancelFunc
	done sync.WaitGroup
}

// NewSink makes a sink; Start runs it.
func NewSink(nc *nats.Conn, store *Store, cfg SinkConfig) (*Sink, error) {
	cfg = cfg.withDefaults()
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	return &Sink{cfg: cfg, store: store, js: js, nc: nc, log: cfg.Logger.With("component", "sink")}, nil
}

// Start applies the migrations, ensures the consumer and starts moving
// events. ctx bounds the set-up only.
func (s *Sink) Start(ctx context.Context) error {
	if _, err := s.store.Migrate(ctx); err != nil {
		return err
	}
	cons, err := s.js.CreateOrUpdateConsumer(ctx, broker.EventsStream, jetstream.ConsumerConfig{
		Durable:        s.cfg.Consumer,
		Description:    "winch audit sinks: events into ClickHouse",
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        s.cfg.AckWait,
		MaxDeliver:     -1, // an event is retried until ClickHouse has it
		MaxAckPending:  4 * s.cfg.BatchSize,
		DeliverPolicy:  jetstream.DeliverAllPolicy,
		FilterSubjects: s.cfg.FilterSubjects,
	})
	if err != nil {
		return fmt.Errorf("ensure sink consumer: %w", err)
	}
	s.cons = cons
	runCtx, stop := context.WithCancel(context.Background())
	s.stop = stop
	s.done.Add(1)
	go s.run(runCtx)
	s.log.Info("sink running", "database", s.store.Database(), "consumer", s.cfg.Consumer, "batch", s.cfg.BatchSize)
	return nil
}

// Stop finishes the batch in hand (or hands it back, if ClickHouse does not
// take it within ctx) and stops.
func (s *Sink) Stop(ctx context.Context) error {
	if s.stop == nil {
		return nil
	}
	s.stop()
	done := make(chan struct{})
	go func() { s.done.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		<-done
	}
	return s.nc.FlushWithContext(context.Background())
}

func (s *Sink) run(ctx context.Context) {
	defer s.done.Done()
	lastLag := time.Time{}
	for ctx.Err() == nil {
		batch, err := s.cons.Fetch(s.cfg.BatchSize, jetstream.FetchMaxWait(s.cfg.MaxWait))
		if err != nil {
			s.log.Warn("fetch events", "err", err)
			sleep(ctx, time.Second)
			continue
		}
		var msgs []jetstream.Msg
		var events []schema.Event
		for m := range batch.Messages() {
			ev, err := schema.DecodeEvent(m.Data())
			if err != nil {
				// Not winch's: nothing could store it. Say so loudly.
				s.log.Error("undecodable event; dropping it from the sink's consumer", "subject", m.Subject(), "err", err)
				_ = m.TermWithReason("undecodable event")
				continue
			}
			msgs = append(msgs, m)
			events = append(events, ev)
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, jetstream.ErrNoMessages) {
			s.log.Warn("fetch events", "err", err)
		}
		if len(events) == 0 {
			continue
		}
		if !s.insert(ctx, msgs, events) {
			return
		}
		for _, m := range msgs {
			_ = m.Ack()
		}
		if time.Since(lastLag) > s.cfg.LagEvery {
			lastLag = time.Now()
			s.logLag(ctx, len(events))
		}
	}
}

// insert writes the batch, retrying with backoff until ClickHouse takes it.
// It keeps the messages from being redelivered meanwhile. It returns false
// if the sink is stopping first; the messages are then handed back.
func (s *Sink) insert(ctx context.Context, msgs []jetstream.Msg, events []schema.Event) bool {
	wait := 200 * time.Millisecond
	lastProgress := time.Now()
	for attempt := 1; ; attempt++ {
		insertCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		began := time.Now()
		err := s.store.Insert(insertCtx, events)
		cancel()
		if err == nil {
			s.cfg.Metrics.Inserted(len(events), time.Since(began))
			if attempt > 1 {
				s.log.Info("clickhouse took the batch", "events", len(events), "attempts", attempt)
			}
			return true
		}
		s.cfg.Metrics.InsertFailed()
		s.log.Warn("insert into clickhouse failed; retrying (the stream keeps the events)", "events", len(events), "attempt", attempt, "in", wait, "err", err)
		if attempt%5 == 1 {
			s.logLag(ctx, 0)
		}
		if !sleep(ctx, wait) {
			for _, m := range msgs {
				_ = m.Nak()
			}
			return false
		}
		wait = min(wait*2, 5*time.Second)
		if time.Since(lastProgress) > s.cfg.AckWait/3 {
			lastProgress = time.Now()
			for _, m := range msgs {
				_ = m.InProgress()
			}
		}
	}
}

func (s *Sink) logLag(ctx context.Context, inserted int) {
	infoCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	info, err := s.cons.Info(infoCtx)
	if err != nil {
		return
	}
	s.cfg.Metrics.Pending(info.NumPending)
	if inserted == 0 || info.NumPending > 0 {
		s.log.Info("sink lag", "pending", info.NumPending, "in_flight", info.NumAckPending, "inserted", inserted)
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	select {
	case <-ctx.Done():
		return false
	case <-time.After(d):
		return true
	}
}
