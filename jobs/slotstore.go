package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/winchhq/winch/broker"
	"github.com/winchhq/winch/schema"
)

// SlotStore is the slots bucket (WINCH_SLOTS): one entry per concurrency
// key (schema.SlotBucketKey) and, for each waiting job, the request it will
// run with, kept aside until a slot is freed ("req.<job>"). Only workers
// write it.
type SlotStore struct {
	kv jetstream.KeyValue
}

// NewSlotStore wraps the WINCH_SLOTS bucket.
func NewSlotStore(kv jetstream.KeyValue) *SlotStore { return &SlotStore{kv: kv} }

// GetSlot reads a key's entry; a key nobody holds has an empty one.
func (s *SlotStore) GetSlot(ctx context.Context, key string) (Slot, uint64, error) {
	e, err := s.kv.Get(ctx, schema.SlotBucketKey(key))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return Slot{Key: key}, 0, nil
	}
	if err != nil {
		return Slot{}, 0, fmt.Errorf("read concurrency slots of %q: %w", key, err)
	}
	var sl Slot
	if err := json.Unmarshal(e.Value(), &sl); err != nil {
		return Slot{}, 0, fmt.Errorf("concurrency slots of %q: %w", key, err)
	}
	return sl, e.Revision(), nil
}

// slotTries bounds UpdateSlot's compare-and-sets. A key's entry is
// contended by design (every run of a busy key writes it twice), unlike a
// job's state, so losing a race is expected and retried, after a short
// random pause that grows.
const slotTries = 64

// UpdateSlot decides a key's next entry from its current one and writes it
// with compare-and-set, deciding again when another worker came first. It
// returns the entry that stands.
func (s *SlotStore) UpdateSlot(ctx context.Context, key string, decide func(Slot) Slot) (Slot, error) {
	for try := range slotTries {
		if try > 0 {
			select {
			case <-ctx.Done():
				return Slot{}, ctx.Err()
			case <-time.After(time.Duration(rand.Int64N(int64(min(try, 10)) * int64(time.Millisecond)))):
			}
		}
		var cur Slot
		var rev uint64
		err := broker.AcrossFailover(ctx, func(ctx context.Context) (err error) {
			cur, rev, err = s.GetSlot(ctx, key)
			return err
		})
		if err != nil {
			return Slot{}, err
		}
		next := decide(cur)
		if !SlotChanged(cur, next) {
			return cur, nil
		}
		data, _ := json.Marshal(next)
		// Each write waits for its own answer: one that reached a stream
		// without a leader is never answered, even once there is one. It
		// may have been stored all the same; the compare-and-set makes the
		// next try, which reads again, safe either way.
		tryCtx, cancel := context.WithTimeout(ctx, broker.TryTimeout)
		if rev == 0 {
			_, err = s.kv.Create(tryCtx, schema.SlotBucketKey(key), data)
		} else {
			_, err = s.kv.Update(tryCtx, schema.SlotBucketKey(key), data, rev)
		}
		cancel()
		if err == nil {
			return next, nil
		}
		if broker.Unanswered(ctx, err) {
			// Between two leaders: wait for the next one, not for a rival.
			select {
			case <-ctx.Done():
				return Slot{}, fmt.Errorf("write concurrency slots of %q: %w", key, err)
			case <-time.After(min(time.Duration(try+1)*200*time.Millisecond, 2*time.Second)):
			}
			continue
		}
		if !errors.Is(err, jetstream.ErrKeyExists) && !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return Slot{}, fmt.Errorf("write concurrency slots of %q: %w", key, err)
		}
	}
	return Slot{}, fmt.Errorf("concurrency slots of %q: %w", key, ErrContended)
}

// KeptRequest is a waiting job's request, as it was published.
type KeptRequest struct {
	Subject string          `json:"subject"`
	Request json.RawMessage `json:"request"`
}

func requestKey(job string) string { return "req." + job }

// KeepRequest keeps a waiting job's request until it is woken.
func (s *SlotStore) KeepRequest(ctx context.Context, job string, r KeptRequest) error {
	data, _ := json.Marshal(r)
	if _, err := s.kv.Put(ctx, requestKey(job), data); err != nil {
		return fmt.Errorf("keep the request of waiting job %s: %w", job, err)
	}
	return nil
}

// KeptRequest reads what KeepRequest kept; found is false when nothing is.
func (s *SlotStore) KeptRequest(ctx context.Context, job string) (r KeptRequest, found bool, err error) {
	e, err := s.kv.Get(ctx, requestKey(job))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return r, false, nil
	}
	if err != nil {
		return r, false, fmt.Errorf("read the kept request of %s: %w", job, err)
	}
	if err := json.Unmarshal(e.Value(), &r); err != nil {
		return r, false, fmt.Errorf("kept request of %s: %w", job, err)
	}
	return r, true, nil
}

// WaitingJobs lists the jobs whose requests are kept (waiting for a slot,
// or woken a moment ago), for readers: it reads the bucket's stream with
// batched direct gets, which a client may make, and no consumer.
func WaitingJobs(ctx context.Context, nc *nats.Conn) ([]string, error) {
	prefix := "$KV." + broker.SlotsBucket + "." + requestKey("")
	var ids []string
	err := broker.ReadAll(ctx, nc, "KV_"+broker.SlotsBucket, prefix+">", func(m broker.StoredMsg) error {
		if op := m.Header.Get("KV-Operation"); op == "DEL" || op == "PURGE" {
			return nil
		}
		ids = append(ids, strings.TrimPrefix(m.Subject, prefix))
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list the waiting jobs: %w", err)
	}
	return ids, nil
}

// DropRequest forgets a kept request: its job was taken, or ended.
func (s *SlotStore) DropRequest(ctx context.Context, job string) error {
	err := s.kv.Delete(ctx, requestKey(job))
	if err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("drop the kept request of %s: %w", job, err)
	}
	return nil
}
