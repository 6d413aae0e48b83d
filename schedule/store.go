package schedule

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/winchhq/winch/broker"
)

// Run records what one fire of a schedule became, on
// winch.runs.<name>.<owner> (the last broker.RunsKept of them).
type Run struct {
	// Job is the job the fire made (or would have made, when skipped).
	Job string `json:"job"`
	// Fire is when it was due; Relayed when a worker made it a request.
	Fire    time.Time `json:"fire"`
	Relayed time.Time `json:"relayed"`
	// Skipped says why the fire did not run, when it did not.
	Skipped string `json:"skipped,omitempty"`
	// Next is when the server says the schedule fires next (zero: never).
	Next time.Time `json:"next,omitzero"`
}

// ErrNotFound: no schedule has that name.
var ErrNotFound = errors.New("no such schedule")

// Store reads and writes schedules in the WINCH_SCHEDULES stream. Clients
// write only their own schedules' subjects (nats.conf); workers write fire
// records.
type Store struct {
	js     jetstream.JetStream
	stream jetstream.Stream
}

// Open opens the schedules stream (made by broker.Ensure).
func Open(ctx context.Context, js jetstream.JetStream) (*Store, error) {
	s, err := js.Stream(ctx, broker.SchedulesStream)
	if err != nil {
		return nil, fmt.Errorf("open the schedules stream: %w", err)
	}
	return &Store{js: js, stream: s}, nil
}

// Put publishes d on its owner's schedule subject, replacing what was there
// (a roll-up). Unless d is paused, the message carries the server's
// scheduling headers and the server fires it from now on.
func (s *Store) Put(ctx context.Context, d Definition) error {
	msg := nats.NewMsg(broker.ScheduleSubject(d.Name, d.Owner))
	msg.Data = d.Encode()
	msg.Header.Set(HeaderRollup, "sub")
	if !d.Paused {
		spec := d.Spec()
		msg.Header.Set(HeaderSchedule, spec.Pattern())
		if spec.TimeZone != "" {
			msg.Header.Set(HeaderScheduleTimeZone, spec.TimeZone)
		}
		msg.Header.Set(HeaderScheduleTarget, broker.FireSubject(d.Name, d.Owner))
	}
	if _, err := s.js.PublishMsg(ctx, msg); err != nil {
		return fmt.Errorf("publish schedule %s: %w", d.Name, err)
	}
	return nil
}

// Remove replaces the schedule with a marker that it was removed: the
// server forgets it, and nothing fires again.
func (s *Store) Remove(ctx context.Context, name, owner string) error {
	msg := nats.NewMsg(broker.ScheduleSubject(name, owner))
	msg.Header.Set(HeaderRollup, "sub")
	msg.Header.Set(HeaderRemoved, "true")
	if _, err := s.js.PublishMsg(ctx, msg); err != nil {
		return fmt.Errorf("remove schedule %s: %w", name, err)
	}
	return nil
}

// Entry is a schedule as stored: its definition and whether the server is
// firing it (a definition without the scheduling headers is paused).
type Entry struct {
	Definition
	// Stored is when the schedule was last written (added, paused, resumed).
	Stored time.Time `json:"stored,omitzero"`
	// Gone: the schedule was removed, or was an --at that fired; only its
	// fire records are left.
	Gone bool `json:"gone,omitempty"`
}

// Get returns the schedule name, whoever owns it; ErrNotFound if there is
// none (or it was removed).
func (s *Store) Get(ctx context.Context, name string) (Entry, error) {
	if !ValidName(name) {
		return Entry{}, fmt.Errorf("%w: %q is not a schedule name (1 to 40 lower-case letters, digits, '-' or '_', starting with a letter)", ErrSpec, name)
	}
	raw, err := s.stream.GetLastMsgForSubject(ctx, broker.ScheduleFilter(name))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return Entry{}, fmt.Errorf("%w: %s", ErrNotFound, name)
	}
	if err != nil {
		return Entry{}, fmt.Errorf("read schedule %s: %w", name, err)
	}
	e, ok, err := entry(raw.Header, raw.Data, raw.Time)
	if err != nil {
		return Entry{}, err
	}
	if !ok {
		return Entry{}, fmt.Errorf("%w: %s", ErrNotFound, name)
	}
	return e, nil
}

func entry(h nats.Header, data []byte, stored time.Time) (Entry, bool, error) {
	if h.Get(HeaderRemoved) != "" {
		return Entry{}, false, nil
	}
	d, err := Decode(data)
	if err != nil {
		return Entry{}, false, err
	}
	d.Paused = h.Get(HeaderSchedule) == ""
	return Entry{Definition: d, Stored: stored.UTC()}, true, nil
}

// List returns every schedule, by name.
func (s *Store) List(ctx context.Context) ([]Entry, error) {
	var out []Entry
	err := s.lastPerSubject(ctx, broker.AllSchedules, func(m jetstream.Msg, stored time.Time) error {
		e, ok, err := entry(m.Headers(), m.Data(), stored)
		if err != nil || !ok {
			return nil // a foreign message is not a schedule
		}
		out = append(out, e)
		return nil
	})
	sort.Slice(out, func(i, j int) bool {
		if out[i].Name != out[j].Name {
			return out[i].Name < out[j].Name
		}
		return out[i].Owner < out[j].Owner
	})
	return out, err
}

// LastRuns returns the last fire record of every schedule that has one, by
// schedule subject (broker.ScheduleSubject).
func (s *Store) LastRuns(ctx context.Context) (map[string]Run, error) {
	out := map[string]Run{}
	err := s.lastPerSubject(ctx, broker.AllRuns, func(m jetstream.Msg, _ time.Time) error {
		p, ok := broker.ParseScheduleSubject(m.Subject())
		var r Run
		if ok && json.Unmarshal(m.Data(), &r) == nil {
			out[broker.ScheduleSubject(p.Name, p.Owner)] = r
		}
		return nil
	})
	return out, err
}

// RecordedOwner finds the owner of schedule name from its fire records,
// for a schedule that is gone.
func (s *Store) RecordedOwner(ctx context.Context, name string) (string, bool, error) {
	raw, err := s.stream.GetLastMsgForSubject(ctx, broker.RunSubject(name, "*"))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	p, ok := broker.ParseScheduleSubject(raw.Subject)
	return p.Owner, ok, nil
}

// Runs returns the kept fire records of one schedule, oldest first.
func (s *Store) Runs(ctx context.Context, name, owner string) ([]Run, error) {
	var out []Run
	err := s.read(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{broker.RunSubject(name, owner)}}, func(m jetstream.Msg, _ time.Time) error {
		var r Run
		if json.Unmarshal(m.Data(), &r) == nil {
			out = append(out, r)
		}
		return nil
	})
	return out, err
}

// LastRun is the last fire record of one schedule (ok false: none).
func (s *Store) LastRun(ctx context.Context, name, owner string) (Run, bool, error) {
	raw, err := s.stream.GetLastMsgForSubject(ctx, broker.RunSubject(name, owner))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return Run{}, false, nil
	}
	if err != nil {
		return Run{}, false, err
	}
	var r Run
	if err := json.Unmarshal(raw.Data, &r); err != nil {
		return Run{}, false, err
	}
	return r, true, nil
}

// Record publishes what a fire became (workers only). The fire's job id is
// its message id, so a fire relayed twice is recorded once.
func (s *Store) Record(ctx context.Context, name, owner string, r Run) error {
	b, _ := json.Marshal(r)
	msg := nats.NewMsg(broker.RunSubject(name, owner))
	msg.Data = b
	msg.Header.Set(jetstream.MsgIDHeader, "run-"+r.Job)
	_, err := s.js.PublishMsg(ctx, msg)
	return err
}

func (s *Store) lastPerSubject(ctx context.Context, filter string, fn func(jetstream.Msg, time.Time) error) error {
	return s.read(ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{filter}, DeliverPolicy: jetstream.DeliverLastPerSubjectPolicy,
	}, fn)
}

// read calls fn with every message an ordered consumer of cfg delivers, up
// to the end of the stream as it was when read began.
func (s *Store) read(ctx context.Context, cfg jetstream.OrderedConsumerConfig, fn func(jetstream.Msg, time.Time) error) error {
	c, err := s.stream.OrderedConsumer(ctx, cfg)
	if err != nil {
		return fmt.Errorf("read schedules: %w", err)
	}
	info, err := c.Info(ctx)
	if err != nil {
		return fmt.Errorf("read schedules: %w", err)
	}
	left := info.NumPending
	for left > 0 {
		batch, err := c.Fetch(int(min(left, 1000)), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return fmt.Errorf("read schedules: %w", err)
		}
		got := 0
		for m := range batch.Messages() {
			got++
			meta, err := m.Metadata()
			if err != nil {
				return err
			}
			if err := fn(m, meta.Timestamp); err != nil {
				return err
			}
			left = meta.NumPending
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
			return fmt.Errorf("read schedules: %w", err)
		}
		if got == 0 {
			break
		}
	}
	return nil
}
