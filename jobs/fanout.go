package jobs

import (
	"fmt"
	"strings"
	"time"

	"github.com/winchhq/winch/schema"
)

// A fan-out (docs/ARCHITECTURE.md, "Fan-out") is a parent job whose
// request carries values; a worker claims it like any job and drives it:
// it publishes one child request per value (job <parent>-<index>), in
// order, keeping at most Parallel unfinished, and ends the parent when the
// children have ended. The children are ordinary jobs. The parent's state
// keeps the progress (schema.FanoutProgress); a worker that takes over a
// parent whose driver died counts again from the children's states, so
// that none is forgotten, and a child published twice runs once (its id).

// CountChild adds a child that ended in state to p.
func CountChild(p schema.FanoutProgress, state schema.State) schema.FanoutProgress {
	switch state {
	case schema.StateSucceeded:
		p.Succeeded++
	case schema.StateCancelled:
		p.Cancelled++
	default:
		p.Failed++
	}
	return p
}

// Stopping reports whether the fan-out launches no more children: its
// cancel was asked for, or a child failed and it fails fast.
func Stopping(cur schema.JobState, p schema.FanoutProgress) bool {
	return cur.CancelRequested || (p.FailFast && p.Failed > 0)
}

// Progress records the fan-out's progress, by its holder.
func Progress(cur schema.JobState, session string, attempt int, p schema.FanoutProgress) (schema.JobState, error) {
	if !Holds(cur, session, attempt) {
		return cur, ErrNotHolder
	}
	cur.Fanout = &p
	return cur, nil
}

// FinishFanout ends the parent, once every launched child has ended: it
// succeeded if every child did; it was cancelled if its cancel was asked
// for; it failed otherwise, and says how many children ended how. Children
// never launched (the fan-out stopped) are skipped.
func FinishFanout(cur schema.JobState, session string, attempt int, p schema.FanoutProgress, seq int, now time.Time) (schema.JobState, error) {
	if !Holds(cur, session, attempt) {
		return cur, ErrNotHolder
	}
	if p.Running() > 0 {
		return cur, fmt.Errorf("fan-out %s: %d children still run", cur.JobID, p.Running())
	}
	p.Skipped = p.Total - p.Launched
	cur.Fanout = &p
	cur.FinishedAt, cur.FinalSeq = now, seq
	switch {
	case cur.CancelRequested:
		cur.State, cur.Error = schema.StateCancelled, "cancelled by "+cur.CancelledBy+": "+summary(p)
	case p.Succeeded == p.Total:
		cur.State, cur.Error = schema.StateSucceeded, ""
	default:
		cur.State, cur.Error = schema.StateFailed, summary(p)
	}
	return cur, nil
}

// summary says how a fan-out's children ended: "2 of 40 children failed,
// 1 cancelled, 30 succeeded, 7 skipped".
func summary(p schema.FanoutProgress) string {
	parts := []string{fmt.Sprintf("%d of %d children failed", p.Failed, p.Total)}
	if p.Cancelled > 0 {
		parts = append(parts, fmt.Sprintf("%d cancelled", p.Cancelled))
	}
	parts = append(parts, fmt.Sprintf("%d succeeded", p.Succeeded))
	if p.Skipped > 0 {
		parts = append(parts, fmt.Sprintf("%d skipped", p.Skipped))
	}
	return strings.Join(parts, ", ")
}
