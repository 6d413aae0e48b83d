package jobs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/winchhq/winch/broker"
	"github.com/winchhq/winch/schema"
)

// The index of active jobs lives in the state bucket itself, under keys
// "active.<job>" (job ids hold no dot, so no job's key starts so): one per
// job that a worker has recorded and that has not ended. `winch ps` reads
// these few keys, not every state the bucket keeps (a million finished jobs
// for a month). An entry is put before the state that makes a job active is
// written, and removed after the state that ends it is, so the index holds
// every active job and, after a crash between the two writes, perhaps one
// that is not: readers take the job's state from its own entry. Removal
// purges the key from the stream, leaving no delete marker behind for
// readers to walk past. The value is the job's queue.
const activePrefix = "active."

// IndexKey reports whether key is an entry of the active index rather than
// a job's state (for readers of the whole bucket).
func IndexKey(key string) bool { return strings.HasPrefix(key, activePrefix) }

// OpenStore opens the state bucket with its index of active jobs: the store
// every worker writes through. log hears of index writes that fail (the
// state is written all the same).
func OpenStore(ctx context.Context, js jetstream.JetStream, log *slog.Logger) (*Store, error) {
	kv, err := js.KeyValue(ctx, broker.StateBucket)
	if err != nil {
		return nil, fmt.Errorf("open state bucket: %w", err)
	}
	stream, err := js.Stream(ctx, "KV_"+broker.StateBucket)
	if err != nil {
		return nil, fmt.Errorf("open state bucket's stream: %w", err)
	}
	s := NewStore(kv)
	s.index = &activeIndex{kv: kv, stream: stream, log: log}
	return s, nil
}

// activeIndex writes the index entries; a nil one writes nothing.
type activeIndex struct {
	kv     jetstream.KeyValue
	stream jetstream.Stream
	log    *slog.Logger
}

// before runs before next is written over cur: a job becoming active (a
// claim, a release back to the queue) is put in the index.
func (x *activeIndex) before(ctx context.Context, cur Entry, next schema.JobState) {
	if x == nil || next.State.Terminal() || (cur.Exists() && cur.State.State == next.State) {
		return
	}
	if _, err := x.kv.Put(ctx, activePrefix+next.JobID, []byte(next.Queue)); err != nil && x.log != nil {
		x.log.Warn("job not put in the index of active jobs: winch ps will not list it", "job", next.JobID, "err", err)
	}
}

// after runs once next is written over cur: a job that ended leaves the
// index.
func (x *activeIndex) after(ctx context.Context, cur Entry, next schema.JobState) {
	if x == nil || !next.State.Terminal() || !cur.Exists() || cur.State.State.Terminal() {
		return
	}
	err := x.stream.Purge(ctx, jetstream.WithPurgeSubject(stateSubject(activePrefix+next.JobID)))
	if err != nil && x.log != nil {
		x.log.Warn("ended job not removed from the index of active jobs: winch ps reads its state and leaves it out", "job", next.JobID, "err", err)
	}
}

// ActiveJobs lists the jobs in the index of active jobs of the state bucket
// kv: every job a worker has recorded and that has not ended, and perhaps
// a few that have (read their states).
func ActiveJobs(ctx context.Context, kv jetstream.KeyValue) ([]string, error) {
	w, err := kv.Watch(ctx, activePrefix+"*", jetstream.MetaOnly(), jetstream.IgnoreDeletes())
	if err != nil {
		return nil, fmt.Errorf("read the index of active jobs: %w", err)
	}
	defer func() { _ = w.Stop() }()
	var ids []string
	for {
		select {
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		case e, ok := <-w.Updates():
			if !ok {
				return nil, errors.New("read the index of active jobs: the watch ended early")
			}
			if e == nil { // every current entry delivered
				return ids, nil
			}
			ids = append(ids, strings.TrimPrefix(e.Key(), activePrefix))
		}
	}
}

// States reads the states of the jobs ids, a thousand per request (batched
// direct gets on the bucket's stream), for readers of many jobs at once. A
// job without a state is not in the map; one whose entry does not decode
// is in errs.
func States(ctx context.Context, nc *nats.Conn, ids []string) (states map[string]schema.JobState, errs map[string]error, err error) {
	subjects := make([]string, len(ids))
	for i, id := range ids {
		subjects[i] = stateSubject(id)
	}
	states, errs = make(map[string]schema.JobState, len(ids)), map[string]error{}
	err = broker.ReadLast(ctx, nc, "KV_"+broker.StateBucket, subjects, func(m broker.StoredMsg) error {
		id := strings.TrimPrefix(m.Subject, stateSubject(""))
		if op := m.Header.Get("KV-Operation"); op == "DEL" || op == "PURGE" {
			return nil
		}
		st, err := schema.DecodeJobState(m.Data)
		if err != nil {
			errs[id] = err
			return nil
		}
		states[id] = st
		return nil
	})
	return states, errs, err
}

func stateSubject(key string) string { return "$KV." + broker.StateBucket + "." + key }
