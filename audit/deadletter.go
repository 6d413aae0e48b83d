package audit

import (
	"context"
	"fmt"
	"time"
)

// DeadLetter is an event the audit store refused, kept as published.
type DeadLetter struct {
	ReceivedAt time.Time
	JobID      string
	Subject    string
	StreamSeq  uint64
	Error      string
	// Event is the raw message (JSON), so that it can be fixed and replayed.
	Event string
}

// InsertDeadLetters keeps refused events in the dead_letters table.
func (s *Store) InsertDeadLetters(ctx context.Context, letters []DeadLetter) error {
	b, err := s.conn.PrepareBatch(ctx, "INSERT INTO "+s.db+".dead_letters (received_at, job_id, subject, stream_seq, error, event)")
	if err != nil {
		return fmt.Errorf("prepare dead letters: %w", err)
	}
	for _, d := range letters {
		if err := b.Append(d.ReceivedAt, d.JobID, d.Subject, d.StreamSeq, d.Error, d.Event); err != nil {
			_ = b.Abort()
			return fmt.Errorf("%w: append dead letter: %w", ErrRefused, err)
		}
	}
	if err := b.Send(); err != nil {
		return fmt.Errorf("insert %d dead letters: %w", len(letters), refusal(err))
	}
	return nil
}

// DeadLetters lists the refused events of the jobs (all when none), oldest
// first.
func (s *Store) DeadLetters(ctx context.Context, jobIDs ...string) ([]DeadLetter, error) {
	q := "SELECT received_at, job_id, subject, stream_seq, error, event FROM " + s.db + ".dead_letters FINAL"
	var args []any
	if len(jobIDs) > 0 {
		q += " WHERE has(?, job_id)"
		args = append(args, jobIDs)
	}
	rows, err := s.conn.Query(ctx, q+" ORDER BY received_at, stream_seq", args...)
	if err != nil {
		return nil, fmt.Errorf("read dead letters: %w", err)
	}
	defer rows.Close()
	var out []DeadLetter
	for rows.Next() {
		var d DeadLetter
		if err := rows.Scan(&d.ReceivedAt, &d.JobID, &d.Subject, &d.StreamSeq, &d.Error, &d.Event); err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, rows.Err()
}
