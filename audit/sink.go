package audit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
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
		c.Consumer = broker.SinkConsumer
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
// the stream holds everything meanwhile. Events ClickHouse refuses for what
// they hold (ErrRefused) are found by halving the batch and kept in the
// dead_letters table, and the sink goes on.
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
		var msgs, undecodable []jetstream.Msg
		var events []schema.Event
		var decodeErrs []error
		for m := range batch.Messages() {
			ev, err := schema.DecodeEvent(m.Data())
			if err != nil {
				// Not winch's: no column could take it; a dead letter keeps it.
				undecodable, decodeErrs = append(undecodable, m), append(decodeErrs, err)
				continue
			}
			msgs = append(msgs, m)
			events = append(events, ev)
		}
		for i, m := range undecodable {
			job := ""
			if parts := strings.Split(m.Subject(), "."); len(parts) == 4 {
				job = parts[2]
			}
			if !s.deadLetter(ctx, undecodable, m, job, "", decodeErrs[i]) {
				return
			}
			_ = m.Ack()
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, jetstream.ErrNoMessages) {
			s.log.Warn("fetch events", "err", err)
		}
		if len(events) == 0 {
			continue
		}
		if !s.put(ctx, msgs, msgs, events) {
			for _, m := range msgs {
				_ = m.Nak()
			}
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

// put writes events (msgs are their messages; batch is the whole batch
// in hand, kept from redelivery meanwhile). A part ClickHouse refuses for
// what it holds (ErrRefused) is halved until the events it refuses are
// found; those go to the dead letters and the rest in. It returns false if
// the sink is stopping first.
func (s *Sink) put(ctx context.Context, batch, msgs []jetstream.Msg, events []schema.Event) bool {
	err, ok := s.insert(ctx, batch, events)
	switch {
	case !ok:
		return false
	case err == nil:
		return true
	case len(events) == 1:
		return s.deadLetter(ctx, batch, msgs[0], events[0].JobID, events[0].MsgID(), err)
	}
	s.log.Warn("clickhouse refuses part of the batch; halving it to find the events it refuses", "events", len(events), "err", err)
	half := len(events) / 2
	return s.put(ctx, batch, msgs[:half], events[:half]) && s.put(ctx, batch, msgs[half:], events[half:])
}

// insert writes the events, retrying with backoff while ClickHouse is
// unavailable, until it takes them or refuses them for what they hold (the
// error, ErrRefused). It keeps batch from being redelivered meanwhile. ok is
// false if the sink is stopping first.
func (s *Sink) insert(ctx context.Context, batch []jetstream.Msg, events []schema.Event) (refused error, ok bool) {
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
			return nil, true
		}
		s.cfg.Metrics.InsertFailed()
		if errors.Is(err, ErrRefused) {
			return err, true
		}
		s.log.Warn("insert into clickhouse failed; retrying (the stream keeps the events)", "events", len(events), "attempt", attempt, "in", wait, "err", err)
		if attempt%5 == 1 {
			s.logLag(ctx, 0)
		}
		if !sleep(ctx, wait) {
			return nil, false
		}
		wait = min(wait*2, 5*time.Second)
		if time.Since(lastProgress) > s.cfg.AckWait/3 {
			lastProgress = time.Now()
			for _, m := range batch {
				_ = m.InProgress()
			}
		}
	}
}

// deadLetter keeps an event ClickHouse refuses in the dead_letters table,
// retrying while ClickHouse is unavailable. It returns false if the sink is
// stopping first.
func (s *Sink) deadLetter(ctx context.Context, batch []jetstream.Msg, m jetstream.Msg, job, event string, refused error) bool {
	d := DeadLetter{ReceivedAt: time.Now(), JobID: job, Subject: m.Subject(), Error: refused.Error(), Event: string(m.Data())}
	if meta, err := m.Metadata(); err == nil {
		d.StreamSeq = meta.Sequence.Stream
	}
	wait := 200 * time.Millisecond
	for attempt := 1; ; attempt++ {
		insertCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := s.store.InsertDeadLetters(insertCtx, []DeadLetter{d})
		cancel()
		switch {
		case err == nil:
			s.cfg.Metrics.DeadLettered()
			s.log.Error("clickhouse refuses an event; kept in dead_letters, the sink goes on",
				"table", s.store.Database()+".dead_letters", "job", job, "event", event, "subject", d.Subject, "stream_seq", d.StreamSeq, "err", refused)
			return true
		case errors.Is(err, ErrRefused):
			// Cannot happen with String columns; the log is then the only copy.
			s.cfg.Metrics.DeadLettered()
			s.log.Error("clickhouse refuses an event and its dead letter; the event is only in this log",
				"job", job, "subject", d.Subject, "stream_seq", d.StreamSeq, "event", d.Event, "err", refused, "dead_letter_err", err)
			return true
		}
		s.log.Warn("insert of a dead letter failed; retrying", "job", job, "attempt", attempt, "err", err)
		if !sleep(ctx, wait) {
			return false
		}
		wait = min(wait*2, 5*time.Second)
		for _, m := range batch {
			_ = m.InProgress()
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
