package producer

import (
	"context"
	"errors"
	"fmt"

	"github.com/winchhq/winch/schema"
)

// EventArchive keeps jobs' events after the events stream has let them go;
// the audit store (*audit.Store) is one.
type EventArchive interface {
	// Events returns every event of the job in order; none for a job it
	// does not have.
	Events(ctx context.Context, job string) ([]schema.Event, error)
}

// Logs delivers every event of the job to fn, in order: from the events
// stream while it has them, and from archive for a job older than the
// stream keeps. With follow, it then waits for new events until the one
// that ends the job; a job that is over and gone from the stream comes from
// archive, at once.
//
// A job found in neither gives an error wrapping ErrNoEvents; so does one
// gone from the stream when archive is nil. An id that is not a job id
// gives ErrNotFound. An error from fn stops it and is returned.
func (c *Client) Logs(ctx context.Context, job string, follow bool, archive EventArchive, fn func(schema.Event) error) error {
	if !follow || !c.goneFromStream(ctx, job) {
		mode := Replay
		if follow {
			mode = UntilDone
		}
		_, err := c.Follow(ctx, job, mode, fn)
		if !errors.Is(err, ErrNoEvents) {
			return err
		}
	}
	if archive == nil {
		return fmt.Errorf("%w: %s, and there is no archive of older jobs to look in", ErrNoEvents, job)
	}
	events, err := archive.Events(ctx, job)
	if err != nil {
		return fmt.Errorf("events of %s from the archive: %w", job, err)
	}
	if len(events) == 0 {
		return fmt.Errorf("%w: %s, nor in the archive", ErrNoEvents, job)
	}
	for _, ev := range events {
		if err := fn(ev); err != nil {
			return err
		}
	}
	return nil
}

// goneFromStream reports whether a job that is over has no events left in
// the stream, so that following it there would wait forever.
func (c *Client) goneFromStream(ctx context.Context, job string) bool {
	if st, err := c.Status(ctx, job); err == nil && !st.State.Terminal() {
		return false
	}
	_, err := c.Follow(ctx, job, Replay, func(schema.Event) error { return nil })
	return errors.Is(err, ErrNoEvents)
}
