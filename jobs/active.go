package jobs

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
	"github.com/winchhq/winch/schema"
)

// The index of active jobs lives in the state bucket itself, under keys
// "active.<job>" (job ids hold no dot, so no job's key starts so): one per
// job that a worker has recorded and that has not ended. `winch ps` reads
// these few keys, not every state the bucket keeps (a million finished jobs
// for a month). An entry is put beside the write of the state that makes a
// job active, and purged beside the write that ends it, each in parallel
// with the state's own write so that it adds no round trip. The purge marker
// expires after a second (a per-message TTL) and the key with it, so no
// delete marker stays for readers to walk past. So the index names every
// active job but for the instant of those writes, and perhaps one that is
// not active any more (a worker killed between the writes, a write that
// lost a race): readers take each job's state from its own entry. The value
// is the job's queue.
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
	// A bucket made before the index allows no per-message TTL until
	// broker.Ensure next runs: purge through the stream's API meanwhile.
	s.index.markerTTL = stream.CachedInfo().Config.AllowMsgTTL
	return s, nil
}

// activeIndex writes the index entries; a nil one writes nothing.
type activeIndex struct {
	kv     jetstream.KeyValue
	stream jetstream.Stream
	log    *slog.Logger
	// markerTTL: the bucket takes per-message TTLs, so an ended job's key
	// goes with a purge marker that expires (one publish), rather than a
	// purge through the stream's API (an API call and an advisory, which
	// cost the no-op path three quarters of its rate: BENCHMARKS.md).
	markerTTL bool
}

// purgeMarkerTTL is how long the purge marker of an ended job's key stays.
const purgeMarkerTTL = time.Second

// indexWrites is what one Update has asked of the index so far.
type indexWrites struct{ put, purged bool }

// alongside starts the index write that writing next over cur calls for,
// beside the state's own write (so that it costs no round trip of its own),
// and returns what waits for it. A job becoming active (a claim, a release
// back to the queue) is put in the index; a job ending leaves it. When the
// state's write loses to another writer and Update decides again, a purge
// already sent is undone by a put if the job is still active.
func (x *activeIndex) alongside(ctx context.Context, cur Entry, next schema.JobState, done *indexWrites) (wait func()) {
	if x == nil {
		return func() {}
	}
	var op func() error
	var what string
	switch {
	case !next.State.Terminal() && (done.purged || !cur.Exists() || cur.State.State != next.State):
		done.put, done.purged = true, false
		op = func() error {
			_, err := x.kv.Put(ctx, activePrefix+next.JobID, []byte(next.Queue))
			return err
		}
		what = "job not put in the index of active jobs: winch ps will not list it"
	case next.State.Terminal() && (done.put || (cur.Exists() && !cur.State.State.Terminal())) && !done.purged:
		done.purged = true
		op = func() error {
			if x.markerTTL {
				return x.kv.Purge(ctx, activePrefix+next.JobID, jetstream.PurgeTTL(purgeMarkerTTL))
			}
			return x.stream.Purge(ctx, jetstream.WithPurgeSubject(stateSubject(activePrefix+next.JobID)))
		}
		what = "ended job not removed from the index of active jobs: winch ps reads its state and leaves it out"
	default:
		return func() {}
	}
	var wg sync.WaitGroup
	var err error
	wg.Go(func() { err = op() })
	return func() {
		wg.Wait()
		if err != nil && x.log != nil {
			x.log.Warn(what, "job", next.JobID, "err", err)
		}
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
