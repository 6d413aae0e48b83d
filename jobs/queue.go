package jobs

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/winchhq/winch/broker"
	"github.com/winchhq/winch/schema"
)

// Unclaimed finds, in the jobs stream, the request on subject (a filter that
// names one job, or one request's own subject) of a job that no worker has
// claimed, and returns the job's state as Queued makes it, with the
// request's stream sequence. found is false when the queue does not hold
// it. Who asked is the subject's principal; a request that does not decode
// (a worker will reject it) is still queued, and its subject says whose it
// is.
func Unclaimed(ctx context.Context, jobsStream jetstream.Stream, subject string) (st schema.JobState, seq uint64, found bool, err error) {
	raw, err := jobsStream.GetLastMsgForSubject(ctx, subject)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return schema.JobState{}, 0, false, nil
	}
	if err != nil {
		return schema.JobState{}, 0, false, fmt.Errorf("read the queue: %w", err)
	}
	st, ok := QueuedRequest(raw.Subject, raw.Data, raw.Time)
	if !ok {
		return schema.JobState{}, 0, false, nil
	}
	return st, raw.Sequence, true, nil
}

// QueuedRequest is the state of the job whose request, stored at t, is data
// on subject in the jobs stream, as Unclaimed makes it; ok is false for a
// subject that is not a request's.
func QueuedRequest(subject string, data []byte, t time.Time) (st schema.JobState, ok bool) {
	parts, ok := broker.ParseJobSubject(subject)
	if !ok {
		return schema.JobState{}, false
	}
	req, err := schema.DecodeRequest(data)
	if err != nil {
		req = schema.Request{ID: parts.Job, Queue: parts.Queue, CreatedAt: t.UTC()}
	}
	req.Principal = parts.Principal
	return Queued(req), true
}

// UnclaimedJob is Unclaimed for job's request, whatever its priority.
func UnclaimedJob(ctx context.Context, jobsStream jetstream.Stream, job string) (st schema.JobState, seq uint64, found bool, err error) {
	for _, f := range broker.JobRequestFilters(job) {
		if st, seq, found, err = Unclaimed(ctx, jobsStream, f); found || err != nil {
			return st, seq, found, err
		}
	}
	return st, seq, found, err
}
