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
	m, ok, err := s.last(ctx, broker.ScheduleFilter(name))
	if err != nil {
		return Entry{}, fmt.Errorf("read schedule %s: %w", name, err)
	}
	if !ok {
		return Entry{}, fmt.Errorf("%w: %s", ErrNotFound, name)
	}
	e, ok, err := entry(m)
	if err != nil {
		return Entry{}, err
	}
	if !ok {
		return Entry{}, fmt.Errorf("%w: %s", ErrNotFound, name)
	}
	return e, nil
}

// entry reads a schedule subject's genuine last message (see planted).
func entry(m stored) (Entry, bool, error) {
	if m.Header.Get(HeaderRemoved) != "" {
		return Entry{}, false, nil
	}
	d, err := Decode(m.Data)
	if err != nil {
		return Entry{}, false, err
	}
	if p, ok := broker.ParseScheduleSubject(m.Subject); !ok || p.Name != d.Name || p.Owner != d.Owner {
		// Published by one principal as another's: not a schedule (its
		// fires are refused too).
		return Entry{}, false, nil
	}
	d.Paused = m.Header.Get(HeaderSchedule) == ""
	return Entry{Definition: d, Stored: m.Time.UTC()}, true, nil
}

// stored is one message of the schedules stream.
type stored struct {
	Subject  string
	Header   nats.Header
	Data     []byte
	Time     time.Time
	Sequence uint64
}

// planted says whether the server's scheduler put m where it is: a fire of
// some schedule whose Nats-Schedule-Target named this subject. ADR-51 lets
// a schedule target any subject of its stream, so anyone who may publish a
// schedule of their own can have its fire land on another principal's
// schedule or fire-record subject; the copy has no Nats-Schedule headers
// (it would read as a paused schedule) but the server adds Nats-Scheduler,
// which no client can set without a purge. winch writes schedules and
// records without it, so a message on those subjects that has it is never
// the owner's: it is skipped, and what was there before reads instead.
func planted(h nats.Header) bool { return h.Get(HeaderScheduler) != "" }

// last is the last message on filter that was not planted (ok false:
// none). Planted copies are rare, so the last message is read directly and
// the subject's history only when that one was planted.
func (s *Store) last(ctx context.Context, filter string) (stored, bool, error) {
	raw, err := s.stream.GetLastMsgForSubject(ctx, filter)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return stored{}, false, nil
	}
	if err != nil {
		return stored{}, false, err
	}
	if !planted(raw.Header) {
		return stored{Subject: raw.Subject, Header: raw.Header, Data: raw.Data, Time: raw.Time, Sequence: raw.Sequence}, true, nil
	}
	var out stored
	found := false
	err = s.read(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{filter}}, func(m stored) error {
		if !planted(m.Header) {
			out, found = m, true
		}
		return nil
	})
	return out, found, err
}

// List returns every schedule, by name.
func (s *Store) List(ctx context.Context) ([]Entry, error) {
	var out []Entry
	err := s.lastEach(ctx, broker.AllSchedules, func(m stored) error {
		e, ok, err := entry(m)
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
	err := s.lastEach(ctx, broker.AllRuns, func(m stored) error {
		p, ok := broker.ParseScheduleSubject(m.Subject)
		var r Run
		if ok && json.Unmarshal(m.Data, &r) == nil {
			out[broker.ScheduleSubject(p.Name, p.Owner)] = r
		}
		return nil
	})
	return out, err
}

// RecordedOwner finds the owner of schedule name from its fire records,
// for a schedule that is gone.
func (s *Store) RecordedOwner(ctx context.Context, name string) (string, bool, error) {
	m, ok, err := s.last(ctx, broker.RunSubject(name, "*"))
	if err != nil || !ok {
		return "", false, err
	}
	p, ok := broker.ParseScheduleSubject(m.Subject)
	return p.Owner, ok, nil
}

// Runs returns the kept fire records of one schedule, oldest first.
func (s *Store) Runs(ctx context.Context, name, owner string) ([]Run, error) {
	var out []Run
	err := s.read(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{broker.RunSubject(name, owner)}}, func(m stored) error {
		var r Run
		if !planted(m.Header) && json.Unmarshal(m.Data, &r) == nil {
			out = append(out, r)
		}
		return nil
	})
	return out, err
}

// LastRun is the last fire record of one schedule (ok false: none).
func (s *Store) LastRun(ctx context.Context, name, owner string) (Run, bool, error) {
	m, ok, err := s.last(ctx, broker.RunSubject(name, owner))
	if err != nil || !ok {
		return Run{}, false, err
	}
	var r Run
	if err := json.Unmarshal(m.Data, &r); err != nil {
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

// lastEach calls fn with the last message of each subject on filter that
// was not planted (see planted).
func (s *Store) lastEach(ctx context.Context, filter string, fn func(stored) error) error {
	var again []string
	err := s.read(ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{filter}, DeliverPolicy: jetstream.DeliverLastPerSubjectPolicy,
	}, func(m stored) error {
		if planted(m.Header) {
			again = append(again, m.Subject)
			return nil
		}
		return fn(m)
	})
	if err != nil {
		return err
	}
	for _, subject := range again {
		m, ok, err := s.last(ctx, subject)
		if err != nil {
			return fmt.Errorf("read schedules: %w", err)
		}
		if ok {
			if err := fn(m); err != nil {
				return err
			}
		}
	}
	return nil
}

// LaterFire says whether a genuine fire of schedule name of owner was
// stored after the fire at seq (several were missed: only the latest
// runs). A fire planted on the subject by another's schedule does not
// count: it is refused when relayed, and must not make the owner's skip.
func (s *Store) LaterFire(ctx context.Context, name, owner string, seq uint64) (bool, error) {
	later := false
	err := s.read(ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{broker.FireSubject(name, owner)},
		DeliverPolicy:  jetstream.DeliverByStartSequencePolicy, OptStartSeq: seq + 1,
	}, func(m stored) error {
		later = later || m.Header.Get(HeaderScheduler) == broker.ScheduleSubject(name, owner)
		return nil
	})
	return later, err
}

// read calls fn with every message an ordered consumer of cfg delivers, up
// to the end of the stream as it was when read began.
func (s *Store) read(ctx context.Context, cfg jetstream.OrderedConsumerConfig, fn func(stored) error) error {
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
			if err := fn(stored{Subject: m.Subject(), Header: m.Headers(), Data: m.Data(), Time: meta.Timestamp, Sequence: meta.Sequence.Stream}); err != nil {
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
