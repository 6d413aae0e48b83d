package producer

import (
	"context"
	"fmt"
	"slices"

	"github.com/winchhq/winch/jobs"
	"github.com/winchhq/winch/schema"
)

// listActive is List for states a job has not ended in (winch ps). The
// requests stream is their index: a work queue keeps a request until its
// job has ended (the worker acknowledges it last), so every job that is
// queued or running has its request there, whatever number of finished
// jobs the state bucket keeps. Each is read with its own state (a job whose
// request is not yet acknowledged may have ended), a thousand at a time.
// The index costs the path of a job nothing: no write of its own. A job
// waiting for a concurrency slot is the exception: its request left the
// queue for the slots bucket, where it is read from.
func (c *Client) listActive(ctx context.Context, states []schema.State) ([]schema.JobState, error) {
	inQueue, err := c.unclaimed(ctx, nil, true)
	if err != nil {
		return nil, err
	}
	listed := make(map[string]bool, len(inQueue))
	out := inQueue[:0]
	for _, st := range inQueue {
		listed[st.JobID] = true
		if containsState(states, st.State) {
			out = append(out, st)
		}
	}
	if !containsState(states, schema.StateWaiting) {
		return sortByCreation(out), nil
	}
	waiting, err := jobs.WaitingJobs(ctx, c.nc)
	if err != nil {
		return nil, err
	}
	waiting = slices.DeleteFunc(waiting, func(id string) bool { return listed[id] })
	recorded, _, err := jobs.States(ctx, c.nc, waiting)
	if err != nil {
		return nil, fmt.Errorf("read the states of waiting jobs: %w", err)
	}
	for _, id := range waiting {
		if st, ok := recorded[id]; ok && containsState(states, st.State) {
			out = append(out, st)
		}
	}
	return sortByCreation(out), nil
}

func sortByCreation(out []schema.JobState) []schema.JobState {
	slices.SortStableFunc(out, func(a, b schema.JobState) int { return a.CreatedAt.Compare(b.CreatedAt) })
	return out
}
