package broker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
)

// StoredMsg is a message read from a stream with a direct get.
type StoredMsg struct {
	Subject string
	Seq     uint64
	Time    time.Time
	Header  nats.Header
	Data    []byte
}

// directMax is the most messages one direct get request asks for; the
// server answers at most 1024 subjects to a multi_last request.
const directMax = 1000

// directRequest is the server's JSApiMsgGetRequest, the fields we use.
type directRequest struct {
	Seq       uint64   `json:"seq,omitempty"`
	NextFor   string   `json:"next_by_subj,omitempty"`
	Batch     int      `json:"batch,omitempty"`
	MultiLast []string `json:"multi_last,omitempty"`
}

// ReadAll reads every message of stream on subjects matching filter, oldest
// first, with batched direct gets (ADR-31): one request per thousand
// messages, no consumer, so what a client may read with a direct get it may
// read this way. The stream must allow direct gets.
func ReadAll(ctx context.Context, nc *nats.Conn, stream, filter string, fn func(StoredMsg) error) error {
	var seq uint64
	for {
		last, pending, n, err := direct(ctx, nc, stream, directRequest{Seq: seq, NextFor: filter, Batch: directMax}, fn)
		if err != nil || n == 0 || pending == 0 {
			return err
		}
		seq = last + 1
	}
}

// ReadLast reads the last message of each of subjects (literal subjects)
// that has one, a thousand subjects per request.
func ReadLast(ctx context.Context, nc *nats.Conn, stream string, subjects []string, fn func(StoredMsg) error) error {
	for len(subjects) > 0 {
		chunk := subjects[:min(len(subjects), directMax)]
		subjects = subjects[len(chunk):]
		if _, _, _, err := direct(ctx, nc, stream, directRequest{MultiLast: chunk}, fn); err != nil {
			return err
		}
	}
	return nil
}

// direct sends one batched direct get and hands each message to fn. It
// returns the last sequence seen, how many matching messages the server
// says are left after it, and how many it read.
func direct(ctx context.Context, nc *nats.Conn, stream string, req directRequest, fn func(StoredMsg) error) (last, pending uint64, n int, err error) {
	body, err := json.Marshal(req)
	if err != nil {
		return 0, 0, 0, err
	}
	inbox := nc.NewRespInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		return 0, 0, 0, err
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := nc.PublishRequest("$JS.API.DIRECT.GET."+stream, inbox, body); err != nil {
		return 0, 0, 0, err
	}
	for {
		// Each message is due promptly once the first is: a silence of
		// 5 s is a server that went away.
		waitCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
		m, err := sub.NextMsgWithContext(waitCtx)
		cancel()
		if err != nil {
			return last, pending, n, fmt.Errorf("direct get from %s: %w", stream, err)
		}
		switch status := m.Header.Get("Status"); status {
		case "":
		case "204": // end of batch
			pending, _ = strconv.ParseUint(m.Header.Get("Nats-Num-Pending"), 10, 64)
			return last, pending, n, nil
		case "404": // nothing (more) matches
			return last, 0, n, nil
		case "503":
			return last, pending, n, fmt.Errorf("direct get from %s: %w", stream, nats.ErrNoResponders)
		default:
			return last, pending, n, fmt.Errorf("direct get from %s: %s %s", stream, status, m.Header.Get("Description"))
		}
		sm := StoredMsg{Subject: m.Header.Get("Nats-Subject"), Header: m.Header, Data: m.Data}
		sm.Seq, _ = strconv.ParseUint(m.Header.Get("Nats-Sequence"), 10, 64)
		sm.Time, _ = time.Parse(time.RFC3339Nano, m.Header.Get("Nats-Time-Stamp"))
		if sm.Subject == "" || sm.Seq == 0 {
			return last, pending, n, errors.New("direct get from " + stream + ": a reply without subject or sequence")
		}
		last, n = sm.Seq, n+1
		if err := fn(sm); err != nil {
			return last, pending, n, err
		}
	}
}
