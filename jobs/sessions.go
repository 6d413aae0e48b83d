package jobs

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Sessions is the liveness bucket: one entry per running worker session,
// written by the worker every heartbeat interval. A job's holder is alive
// while its session's entry is younger than the lease (Alive), so a worker
// that dies is noticed one lease after its last beat, whatever it was doing,
// and no job needs a heartbeat write of its own.
type Sessions struct {
	kv    jetstream.KeyValue
	lease time.Duration
}

// NewSessions wraps the WINCH_WORKERS bucket.
func NewSessions(kv jetstream.KeyValue, lease time.Duration) *Sessions {
	return &Sessions{kv: kv, lease: lease}
}

// SessionInfo is what a session's entry says, for operators.
type SessionInfo struct {
	Worker    string    `json:"worker"`
	Queues    []string  `json:"queues"`
	StartedAt time.Time `json:"started_at"`
}

var sessionUnsafe = regexp.MustCompile(`[^A-Za-z0-9_-]+`)

// NewSession names a new session of worker: unique even when a restarted
// worker keeps its name, so that its old session's jobs are not taken for
// its new one's.
func NewSession(worker string) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := strings.Trim(sessionUnsafe.ReplaceAllString(worker, "_"), "_")
	return fmt.Sprintf("%.40s-%x", name, b)
}

// Beat announces that session is alive.
func (s *Sessions) Beat(ctx context.Context, session string, info SessionInfo) error {
	data, _ := json.Marshal(info)
	if _, err := s.kv.Put(ctx, session, data); err != nil {
		return fmt.Errorf("announce worker session %s: %w", session, err)
	}
	return nil
}

// End removes the session's entry: its worker stopped cleanly.
func (s *Sessions) End(ctx context.Context, session string) error {
	return s.kv.Delete(ctx, session)
}

// Alive reports whether session is alive and, if it is, how long it has
// left before it is taken for dead unless it beats again.
func (s *Sessions) Alive(ctx context.Context, session string) (bool, time.Duration, error) {
	if session == "" {
		return false, 0, nil
	}
	e, err := s.kv.Get(ctx, session)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return false, 0, nil
	}
	if err != nil {
		return false, 0, fmt.Errorf("read worker session %s: %w", session, err)
	}
	now := time.Now()
	if !Alive(e.Created(), now, s.lease) {
		return false, 0, nil
	}
	return true, s.lease - now.Sub(e.Created()), nil
}
