package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/winchhq/winch/broker"
	"github.com/winchhq/winch/schema"
)

// maxDeliveriesAdvisory is published by the server when a request has been
// delivered MaxDeliver times without an ack; it will not be delivered again.
const maxDeliveriesAdvisory = "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES." + broker.JobsStream + ".*"

// watchDeadLetters subscribes, in a queue group so that one worker of the
// fleet handles each, to the advisories of requests that ran out of
// deliveries, and records those jobs as dead.
func (w *Worker) watchDeadLetters() error {
	sub, err := w.nc.QueueSubscribe(maxDeliveriesAdvisory, "winch-dead-letters", func(m *nats.Msg) {
		var adv struct {
			StreamSeq  uint64 `json:"stream_seq"`
			Deliveries uint64 `json:"deliveries"`
		}
		if err := json.Unmarshal(m.Data, &adv); err != nil {
			w.log.Warn("undecodable max-deliveries advisory", "err", err)
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), settleTimeout)
		defer cancel()
		if err := w.bury(ctx, adv.StreamSeq, adv.Deliveries); err != nil {
			w.log.Error("record dead request", "stream_seq", adv.StreamSeq, "err", err)
		}
	})
	if err != nil {
		return fmt.Errorf("subscribe to max-deliveries advisories: %w", err)
	}
	w.deadSub = sub
	return nil
}

// bury marks the job of the request at seq dead, unless a live worker still
// runs it or it is already over, and removes the request from the stream.
func (w *Worker) bury(ctx context.Context, seq, deliveries uint64) error {
	stream, err := w.js.Stream(ctx, broker.JobsStream)
	if err != nil {
		return err
	}
	raw, err := stream.GetMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil // acknowledged after all
	}
	if err != nil {
		return err
	}
	id := raw.Header.Get("Nats-Msg-Id")
	if req, err := schema.DecodeRequest(raw.Data); err == nil {
		id = req.ID
	}
	if !schema.ValidJobID(id) {
		id = fmt.Sprintf("seq-%d", seq)
	}
	if entry, err := w.state.Get(ctx, id); err == nil {
		if st, err := schema.DecodeJobState(entry.Value()); err == nil && st.State == schema.StateRunning &&
			!st.HeartbeatAt.IsZero() && time.Since(st.HeartbeatAt) < w.cfg.Topology.Lease() {
			return nil // still running on a live worker, which will settle it
		}
	}
	w.log.Warn("request ran out of deliveries; the job is dead", "job", id, "deliveries", deliveries)
	w.settleDead(ctx, id, fmt.Sprintf("delivered %d times without finishing", deliveries))
	return stream.DeleteMsg(ctx, seq)
}
