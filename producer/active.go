package producer

import (
	"context"
	"sync"

	"github.com/winchhq/winch/jobs"
	"github.com/winchhq/winch/schema"
)

// activeReaders bounds the reads in flight for one listing (states,
// queued requests): each is a round trip to the server.
const activeReaders = 16

// listActive is List for states a job has not ended in: the jobs in the
// index of active jobs, each read from its own state entry (the index may
// still name one that just ended), and the unclaimed ones in the queue.
func (c *Client) listActive(ctx context.Context, states []schema.State) ([]schema.JobState, error) {
	ids, err := jobs.ActiveJobs(ctx, c.state)
	if err != nil {
		return nil, err
	}
	store := jobs.NewStore(c.state)
	entries := make([]jobs.Entry, len(ids))
	errs := make([]error, len(ids))
	parallel(len(ids), func(i int) { entries[i], errs[i] = store.Get(ctx, ids[i]) })
	var out []schema.JobState
	known := make(map[string]bool, len(ids))
	for i, e := range entries {
		if errs[i] != nil {
			c.log.Warn("skip unreadable state entry", "job", ids[i], "err", errs[i])
			continue
		}
		if !e.Exists() {
			continue // gone with its TTL; if still queued, the queue has it
		}
		known[ids[i]] = true
		if containsState(states, e.State.State) {
			out = append(out, e.State)
		}
	}
	return c.withUnclaimed(ctx, out, known, states, true)
}

// parallel runs fn(0..n-1) on at most activeReaders goroutines, and
// returns when every call has.
func parallel(n int, fn func(i int)) {
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(activeReaders, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				fn(i)
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
}
