package jobs

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/winchhq/winch/schema"
)

// maxTries bounds how often Update reads again after losing a
// compare-and-set: more means the job is being fought over, which is a bug
// or an attack, not contention to wait out.
const maxTries = 8

// ErrContended says the job's state kept changing under Update.
var ErrContended = errors.New("the job's state kept changing under us")

// Store is the state bucket: one entry per job, the job's latest state.
// It is the only writer of the bucket.
type Store struct {
	kv jetstream.KeyValue
}

// NewStore wraps the WINCH_JOBS_STATE bucket.
func NewStore(kv jetstream.KeyValue) *Store { return &Store{kv: kv} }

// Entry is a job's state at a revision; Rev 0 means it has no entry.
type Entry struct {
	State schema.JobState
	Rev   uint64
}

// Exists reports whether the job has a state entry.
func (e Entry) Exists() bool { return e.Rev != 0 }

// StateOr is the job's state, or absent, what stands for it (usually
// Queued of its request: a job no worker has recorded is queued).
func (e Entry) StateOr(absent schema.JobState) schema.JobState {
	if e.Exists() {
		return e.State
	}
	return absent
}

// Get reads a job's state; a job without one gives an Entry with Rev 0.
func (s *Store) Get(ctx context.Context, id string) (Entry, error) {
	kve, err := s.kv.Get(ctx, id)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return Entry{State: schema.JobState{JobID: id}}, nil
	}
	if err != nil {
		return Entry{}, fmt.Errorf("read state of %s: %w", id, err)
	}
	st, err := schema.DecodeJobState(kve.Value())
	if err != nil {
		return Entry{}, fmt.Errorf("state of %s: %w", id, err)
	}
	return Entry{State: st, Rev: kve.Revision()}, nil
}

// Update decides the job's next state from its current one and writes it
// with compare-and-set. known, if given, is taken as the current entry
// without reading it (a worker that holds the job knows it; Rev 0 means
// "create"). When another writer came first, Update reads and decides again,
// at most maxTries times. decide says whether to write; Update returns the
// entry that stands. An error from decide stops Update and is returned with
// the entry decide saw.
func (s *Store) Update(ctx context.Context, id string, known *Entry, decide func(Entry) (schema.JobState, bool, error)) (Entry, error) {
	var cur Entry
	if known != nil {
		cur = *known
	} else {
		var err error
		if cur, err = s.Get(ctx, id); err != nil {
			return Entry{}, err
		}
	}
	for range maxTries {
		next, write, err := decide(cur)
		if err != nil || !write {
			return cur, err
		}
		var rev uint64
		if cur.Rev == 0 {
			rev, err = s.kv.Create(ctx, id, next.Encode())
		} else {
			rev, err = s.kv.Update(ctx, id, next.Encode(), cur.Rev)
		}
		if err == nil {
			return Entry{State: next, Rev: rev}, nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) && !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return cur, fmt.Errorf("write state of %s: %w", id, err)
		}
		if cur, err = s.Get(ctx, id); err != nil {
			return Entry{}, err
		}
	}
	return cur, fmt.Errorf("%s: %w", id, ErrContended)
}

// Watch streams every change of the job's state, from its current one.
func (s *Store) Watch(ctx context.Context, id string) (jetstream.KeyWatcher, error) {
	return s.kv.Watch(ctx, id)
}
