package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"sync"

	"github.com/winchhq/winch/producer"
	"github.com/winchhq/winch/schema"
)

// A hub follows one job's events once, for every HTTP follower of that
// job: one consumer on the events stream and one encoding per event, however
// many people watch (a thousand followers of a chatty job would otherwise
// be a thousand consumers, each event decoded and encoded a thousand
// times). Each follower reads the hub's frames at its own pace, so a slow
// one holds back no one. The hub keeps at most maxBytes of frames; a
// follower that needs one it has let go reads from a consumer of its own.

// frame is one event, rendered as a server-sent event.
type frame struct {
	seq  uint64
	data []byte
}

type hub struct {
	mu       sync.Mutex
	frames   []frame
	bytes    int
	dropped  uint64 // frames up to this stream sequence are gone
	done     bool   // the job's last event is in, or following failed
	err      error
	changed  chan struct{} // closed at every change
	refs     int
	stop     context.CancelFunc
	maxBytes int
}

// hubs holds the hub of each followed job.
type hubs struct {
	mu       sync.Mutex
	byJob    map[string]*hub
	client   *producer.Client
	maxBytes int
	wg       sync.WaitGroup
}

func newHubs(client *producer.Client, maxBytes int) *hubs {
	return &hubs{byJob: map[string]*hub{}, client: client, maxBytes: maxBytes}
}

// join returns the job's hub, starting one if none follows it; leave it
// with release.
func (hs *hubs) join(ctx context.Context, job string, mode producer.FollowMode) *hub {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	if h := hs.byJob[job]; h != nil {
		h.mu.Lock()
		h.refs++
		h.mu.Unlock()
		return h
	}
	hctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	h := &hub{changed: make(chan struct{}), refs: 1, stop: cancel, maxBytes: hs.maxBytes}
	hs.byJob[job] = h
	hs.wg.Go(func() {
		_, err := hs.client.FollowAfter(hctx, job, 0, mode, func(ev schema.Event, seq uint64) error {
			data, err := json.Marshal(ev)
			if err != nil {
				return err
			}
			h.add(frame{seq: seq, data: fmt.Appendf(nil, "id: %d\nevent: %s\ndata: %s\n\n", seq, ev.Kind, data)})
			return nil
		})
		h.finish(err)
		if err != nil && !errors.Is(err, producer.ErrNoEvents) {
			// A hub that failed (NATS went away) is no one's to join: the
			// next follower starts a new one.
			hs.mu.Lock()
			if hs.byJob[job] == h {
				delete(hs.byJob, job)
			}
			hs.mu.Unlock()
		}
	})
	return h
}

// release leaves the hub; the last follower to leave stops it.
func (hs *hubs) release(job string, h *hub) {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	h.mu.Lock()
	h.refs--
	last := h.refs == 0
	h.mu.Unlock()
	if last {
		h.stop()
		if hs.byJob[job] == h {
			delete(hs.byJob, job)
		}
	}
}

// wait lets the hubs' followers of NATS end (after Stop ended the streams).
func (hs *hubs) wait() { hs.wg.Wait() }

func (h *hub) add(f frame) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.frames = append(h.frames, f)
	h.bytes += len(f.data)
	for h.bytes > h.maxBytes && len(h.frames) > 1 {
		h.bytes -= len(h.frames[0].data)
		// Not zeroed: a follower may be reading it; the array goes once
		// no follower holds it and an append has moved the rest.
		h.dropped = h.frames[0].seq
		h.frames = h.frames[1:]
	}
	close(h.changed)
	h.changed = make(chan struct{})
}

func (h *hub) finish(err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.done, h.err = true, err
	close(h.changed)
	h.changed = make(chan struct{})
}

// next returns the frames after stream sequence pos; gone when the hub has
// let some of them go; done and the hub's error when there will be no more;
// changed to wait on otherwise.
func (h *hub) next(pos uint64) (batch []frame, gone, done bool, err error, changed <-chan struct{}) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if pos < h.dropped {
		return nil, true, false, nil, nil
	}
	i := sort.Search(len(h.frames), func(i int) bool { return h.frames[i].seq > pos })
	// frames is only appended to, and dropped from the front: the slice
	// stays valid to read without the lock.
	return h.frames[i:len(h.frames):len(h.frames)], false, h.done, h.err, h.changed
}
