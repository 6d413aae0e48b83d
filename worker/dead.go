package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/winchhq/winch/broker"
	"github.com/winchhq/winch/schema"
)

// buryAdvisory takes one of the server's advisories of a request that ran
// out of deliveries (from the dead-letter stream, a work queue shared by
// every worker, so each is handled once, and kept while no worker runs) and
// records its job as dead.
func (w *Worker) buryAdvisory(m jetstream.Msg) {
	var adv struct {
		StreamSeq  uint64 `json:"stream_seq"`
		Deliveries uint64 `json:"deliveries"`
	}
	if err := json.Unmarshal(m.Data(), &adv); err != nil {
		w.log.Warn("undecodable max-deliveries advisory; dropping it", "err", err)
		_ = m.Term()
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), settleTimeout)
	defer cancel()
	if err := w.buryRequest(ctx, adv.StreamSeq, adv.Deliveries); err != nil {
		w.log.Error("record dead request; will retry", "stream_seq", adv.StreamSeq, "err", err)
		_ = m.NakWithDelay(5 * time.Second)
		return
	}
	_ = m.Ack()
}

// buryRequest marks the job of the request at seq dead, unless a live
// worker still runs it or it is already over, and removes the request from
// the stream.
func (w *Worker) buryRequest(ctx context.Context, seq, deliveries uint64) error {
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
	id := raw.Header.Get(jetstream.MsgIDHeader)
	if parts, ok := broker.ParseJobSubject(raw.Subject); ok && schema.ValidJobID(parts.Job) {
		id = parts.Job
	}
	if !schema.ValidJobID(id) {
		id = fmt.Sprintf("seq-%d", seq)
	}
	var req *schema.Request
	if r, err := schema.DecodeRequest(raw.Data); err == nil && r.ID == id {
		req = &r
	}
	over, err := w.bury(ctx, id, req, fmt.Sprintf("delivered %d times without finishing", deliveries))
	if err != nil || !over {
		return err // not recorded (the advisory is retried), or a live worker still runs it and will settle it
	}
	w.log.Warn("request ran out of deliveries; the job is dead", "job", id, "deliveries", deliveries)
	return stream.DeleteMsg(ctx, seq)
}
