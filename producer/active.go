package producer

import (
	"context"
	"fmt"

	"github.com/winchhq/winch/jobs"
	"github.com/winchhq/winch/schema"
)

// listActive is List for states a job has not ended in: the jobs in the
// index of active jobs, each read from its own state entry (the index may
// still name one that just ended), and the unclaimed ones in the queue.
// Reads go a thousand at a time (batched direct gets): one round trip per
// thousand jobs, not one per job.
func (c *Client) listActive(ctx context.Context, states []schema.State) ([]schema.JobState, error) {
	ids, err := jobs.ActiveJobs(ctx, c.state)
	if err != nil {
		return nil, err
	}
	found, bad, err := jobs.States(ctx, c.nc, ids)
	if err != nil {
		return nil, fmt.Errorf("read the states of active jobs: %w", err)
	}
	var out []schema.JobState
	known := make(map[string]bool, len(ids))
	for _, id := range ids {
		if err := bad[id]; err != nil {
			c.log.Warn("skip undecodable state entry", "job", id, "err", err)
			continue
		}
		st, ok := found[id]
		if !ok {
			continue // gone with its TTL; if still queued, the queue has it
		}
		known[id] = true
		if containsState(states, st.State) {
			out = append(out, st)
		}
	}
	return c.withUnclaimed(ctx, out, known, states, true)
}
