package broker

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// FailoverWait bounds how long a client keeps asking a stream or bucket
// that exists but does not answer: a cluster electing a new leader for it
// after losing a server takes seconds (README: one server or three).
const FailoverWait = 30 * time.Second

// jsClusterNotAvailable is the server's "JetStream system temporarily
// unavailable" (nats-server's JSClusterNotAvailErr), as while a stream has
// no leader.
const jsClusterNotAvailable jetstream.ErrorCode = 10008

// Unanswered says that err is JetStream not answering in time, as between
// two leaders of a stream, rather than an answer: a timeout of the call
// itself (not of ctx, the caller's), no responders, no stream response, or
// the server saying JetStream is unavailable for now.
func Unanswered(ctx context.Context, err error) bool {
	if err == nil || ctx.Err() != nil {
		return false
	}
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && apiErr.ErrorCode == jsClusterNotAvailable {
		return true
	}
	// Some of nats.go's key-value calls (listing keys) report the server's
	// errors with the older package's type.
	var legacyErr *nats.APIError
	if errors.As(err, &legacyErr) && legacyErr.ErrorCode == nats.JSErrCodeJetStreamNotAvailable {
		return true
	}
	return errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, nats.ErrTimeout) ||
		errors.Is(err, nats.ErrNoResponders) ||
		errors.Is(err, jetstream.ErrNoStreamResponse)
}

// TryTimeout is how long one try of a call that must survive a failover
// waits for an answer: nats.go's default JetStream API timeout.
const TryTimeout = 5 * time.Second

// AcrossFailover runs call until it gets an answer (a result or an error
// that is not Unanswered), ctx ends or FailoverWait passes, pausing briefly
// between tries. It is for reads and idempotent writes only.
func AcrossFailover(ctx context.Context, call func(context.Context) error) error {
	deadline := time.Now().Add(FailoverWait)
	for {
		// Each try has a time of its own: a request that reached a stream
		// without a leader is never answered, even once there is one.
		tryCtx, cancel := context.WithTimeout(ctx, TryTimeout)
		err := call(tryCtx)
		cancel()
		if !Unanswered(ctx, err) || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(250 * time.Millisecond):
		}
	}
}
