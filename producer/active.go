package producer

import (
	"context"
	"slices"

	"github.com/winchhq/winch/schema"
)

// listActive is List for states a job has not ended in (winch ps). The
// requests stream is their index: a work queue keeps a request until its
// job has ended (the worker acknowledges it last), so every job that is
// queued or running has its request there, whatever number of finished
// jobs the state bucket keeps. Each is read with its own state (a job whose
// request is not yet acknowledged may have ended), a thousand at a time.
// The index costs the path of a job nothing: no write of its own.
func (c *Client) listActive(ctx context.Context, states []schema.State) ([]schema.JobState, error) {
	inQueue, err := c.unclaimed(ctx, nil, true)
	if err != nil {
		return nil, err
	}
	out := inQueue[:0]
	for _, st := range inQueue {
		if containsState(states, st.State) {
			out = append(out, st)
		}
	}
	slices.SortStableFunc(out, func(a, b schema.JobState) int { return a.CreatedAt.Compare(b.CreatedAt) })
	return out, nil
}
