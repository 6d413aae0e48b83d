package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/winchhq/winch/producer"
	"github.com/winchhq/winch/schema"
)

// keepAlive is how often an idle event stream gets a comment, so that
// proxies keep it open and a dead reader is noticed.
const keepAlive = 15 * time.Second

// events streams a job's events as server-sent events: every event from
// the first (or after Last-Event-ID), then live ones until the event that
// ends the job. Each event's id is its sequence in the events stream, so a
// reconnecting reader resumes exactly after the last it received. A reader
// that leaves, or reads too slowly, loses its stream, never the job.
func (s *Server) events(w http.ResponseWriter, r *http.Request, id Identity) {
	job := r.PathValue("id")
	var after uint64
	last := r.Header.Get("Last-Event-ID")
	if last == "" {
		last = r.URL.Query().Get("after")
	}
	if last != "" {
		n, err := strconv.ParseUint(last, 10, 64)
		if err != nil {
			problem(w, http.StatusBadRequest, fmt.Sprintf("Last-Event-ID %q: want the id of the last event received (a whole number)", last))
			return
		}
		after = n
	}
	st, err := s.cfg.Client.Status(r.Context(), job)
	if err != nil {
		s.fail(w, err)
		return
	}
	if !s.streams.acquire(id.Principal) {
		problem(w, http.StatusTooManyRequests, fmt.Sprintf("%s already follows %d event streams, the most one principal may: close one first", id.Principal, s.cfg.Limits.StreamsPerPrincipal))
		return
	}
	defer s.streams.release(id.Principal)
	s.cfg.Metrics.Streams(+1)
	defer s.cfg.Metrics.Streams(-1)

	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	sw := &sseWriter{w: w, rc: http.NewResponseController(w), timeout: s.cfg.Limits.WriteTimeout}
	if err := sw.write([]byte("retry: 2000\n\n")); err != nil {
		return
	}
	ctx := r.Context()
	beats := make(chan struct{})
	var beating sync.WaitGroup
	beating.Go(func() {
		t := time.NewTicker(keepAlive)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-beats:
				return
			case <-t.C:
				if sw.write([]byte(": keep-alive\n\n")) != nil {
					return
				}
			}
		}
	})
	defer func() { close(beats); beating.Wait() }()

	mode := producer.UntilDone
	if st.State.Terminal() {
		mode = producer.Replay // over: what the stream has is all there is
	}
	hb := s.hubs.join(ctx, job, mode)
	defer s.hubs.release(job, hb)
	pos := after
	for {
		batch, gone, done, herr, changed := hb.next(pos)
		if gone {
			// The hub has let go of what this follower needs: it reads on
			// from a consumer of its own.
			s.followAlone(ctx, sw, job, pos, mode, id)
			return
		}
		for _, f := range batch {
			if sw.write(f.data) != nil {
				return
			}
			pos = f.seq
		}
		if len(batch) > 0 {
			continue
		}
		if done {
			if herr != nil && !errors.Is(herr, producer.ErrNoEvents) && ctx.Err() == nil {
				// The hub's reading failed; this follower reads on alone.
				s.followAlone(ctx, sw, job, pos, mode, id)
				return
			}
			if errors.Is(herr, producer.ErrNoEvents) && after == 0 {
				// A job older than the events stream keeps: its end, from its state.
				data, _ := json.Marshal(st.FinalEvent())
				_ = sw.write(fmt.Appendf(nil, "event: %s\ndata: %s\n\n", st.FinalEvent().Kind, data))
			}
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		}
	}
}

// followAlone streams the job's events after pos from a consumer of this
// follower's own.
func (s *Server) followAlone(ctx context.Context, sw *sseWriter, job string, pos uint64, mode producer.FollowMode, id Identity) {
	_, err := s.cfg.Client.FollowAfter(ctx, job, pos, mode, func(ev schema.Event, seq uint64) error {
		data, err := json.Marshal(ev)
		if err != nil {
			return err
		}
		return sw.write(fmt.Appendf(nil, "id: %d\nevent: %s\ndata: %s\n\n", seq, ev.Kind, data))
	})
	if err != nil && ctx.Err() == nil && !errors.Is(err, producer.ErrNoEvents) {
		s.log.Info("event stream ended", "job", job, "principal", id.Principal, "why", err)
	}
}

// sseWriter writes whole frames, one at a time, each within the write
// timeout: a reader that stops reading is cut off instead of holding a
// goroutine and a consumer forever.
type sseWriter struct {
	mu      sync.Mutex
	w       http.ResponseWriter
	rc      *http.ResponseController
	timeout time.Duration
	broken  error
}

func (s *sseWriter) write(frame []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.broken != nil {
		return s.broken
	}
	_ = s.rc.SetWriteDeadline(time.Now().Add(s.timeout))
	if _, err := s.w.Write(frame); err != nil {
		s.broken = err
		return err
	}
	if err := s.rc.Flush(); err != nil {
		s.broken = err
		return err
	}
	// The deadline bounds a write, not the wait for the next event (or
	// the end of the response).
	_ = s.rc.SetWriteDeadline(time.Time{})
	return nil
}
