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

// deadLetters takes the server's advisories of requests that ran out of
// deliveries from the dead-letter stream (a work queue shared by every
// worker, so each is handled once, and kept while no worker runs) and
// records their jobs as dead.
func (w *Worker) deadLetters(c jetstream.Consumer) {
	defer w.loops.Done()
	for w.fetchCtx.Err() == nil {
		ctx, cancel := context.WithTimeout(w.fetchCtx, 5*time.Second)
		batch, err := c.Fetch(10, jetstream.FetchContext(ctx))
		if err != nil {
			cancel()
			if w.fetchCtx.Err() == nil {
				w.log.Warn("fetch dead letters", "err", err)
				sleepOrDone(w.fetchCtx, time.Second)
			}
			continue
		}
		for m := range batch.Messages() {
			w.buryAdvisory(m)
		}
		cancel()
	}
}

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
	if err := w.bury(ctx, adv.StreamSeq, adv.Deliveries); err != nil {
		w.log.Error("record dead request; will retry", "stream_seq", adv.StreamSeq, "err", err)
		_ = m.NakWithDelay(5 * time.Second)
		return
	}
	_ = m.Ack()
}

func sleepOrDone(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
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
