package broker_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/winchhq/winch/broker"
)

func TestUnanswered(t *testing.T) {
	t.Parallel()
	live := context.Background()
	ended, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name string
		ctx  context.Context
		err  error
		want bool
	}{
		{"no error", live, nil, false},
		{"the call's own deadline", live, fmt.Errorf("open state bucket: %w", context.DeadlineExceeded), true},
		{"the caller's deadline", ended, context.DeadlineExceeded, false},
		{"no responders", live, nats.ErrNoResponders, true},
		{"no stream response", live, jetstream.ErrNoStreamResponse, true},
		{"a request timeout", live, nats.ErrTimeout, true},
		{"no leader now", live, &jetstream.APIError{Code: 503, ErrorCode: 10008}, true},
		{"no leader now, older type", live, fmt.Errorf("list: %w", &nats.APIError{Code: 503, ErrorCode: nats.JSErrCodeJetStreamNotAvailable}), true},
		{"no such stream", live, &jetstream.APIError{Code: 404, ErrorCode: jetstream.JSErrCodeStreamNotFound}, false},
		{"no such key", live, jetstream.ErrKeyNotFound, false},
		{"refused", live, broker.ErrNotAuthorized, false},
		{"anything else", live, errors.New("bad request"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := broker.Unanswered(tt.ctx, tt.err); got != tt.want {
				t.Fatalf("Unanswered(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
}
