// Package notify tells people when jobs end: a notifier is a durable
// JetStream consumer of the events that end jobs (like the audit sink), and
// POSTs a signed webhook to each target the job's final event names (from
// `winch run --notify`, a schedule, or the command's manifest).
//
// Delivery is at least once: a notification is acknowledged on the stream
// only once every target has answered 2xx or given up, so a notifier that
// stops or dies hands what it had to the next one. Each notification has a
// delivery id that stays the same across retries and notifiers, so a
// receiver can drop repeats. Failures are logged and counted, and never
// touch the job.
package notify

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/winchhq/winch/broker"
	"github.com/winchhq/winch/metrics"
	"github.com/winchhq/winch/schema"
)

// Headers of a notification.
const (
	// HeaderSignature is "sha256=" and the hex HMAC-SHA256 of the body with
	// the notifier's secret (WINCH_NOTIFY_SECRET).
	HeaderSignature = "Winch-Signature"
	// HeaderDelivery is the delivery id: the same for every try of one
	// notification, different for every other.
	HeaderDelivery = "Winch-Delivery"
	// HeaderAttempt counts the tries of this delivery by this notifier.
	HeaderAttempt = "Winch-Attempt"
	// HeaderEvent is job.<state>, like job.failed.
	HeaderEvent = "Winch-Event"
)

// Sign returns the HeaderSignature value of body under secret.
func Sign(secret, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// Verify reports whether signature is body's under secret, in constant
// time: what a receiver does.
func Verify(secret, body []byte, signature string) bool {
	return hmac.Equal([]byte(Sign(secret, body)), []byte(signature))
}

// Config configures a notifier.
type Config struct {
	// Consumer is the durable consumer the notifiers share (several split
	// the work).
	Consumer string
	// Secret signs every body; without it notifications go unsigned, and
	// the notifier says so at start.
	Secret []byte
	// RetryFor bounds retries: a target that keeps failing is tried until
	// this long after the job ended (and at least once, even when the
	// notifier was down for longer).
	RetryFor time.Duration
	// MinBackoff and MaxBackoff shape the waits between tries.
	MinBackoff, MaxBackoff time.Duration
	// Timeout bounds one POST.
	Timeout time.Duration
	// Concurrency bounds the notifications in hand at once, so that one
	// slow receiver does not hold up the others.
	Concurrency int
	// AckWait is how long a notification may stay unacknowledged before the
	// stream hands it to another notifier; the notifier keeps it meanwhile.
	AckWait time.Duration
	// ConsoleURL, when set, makes each notification's link.
	ConsoleURL string
	// Allow, when set, are the URL prefixes targets may have; others are
	// refused (logged and counted), so that a request cannot make the
	// notifier POST anywhere on its network.
	Allow []string
	// Metrics, when set, count deliveries, retries and failures for
	// Prometheus (Stats counts them too).
	Metrics *metrics.Notifier
	Client  *http.Client
	Logger  *slog.Logger
}

func (c Config) withDefaults() Config {
	if c.Consumer == "" {
		c.Consumer = broker.NotifierConsumer
	}
	if c.RetryFor <= 0 {
		c.RetryFor = time.Hour
	}
	if c.MinBackoff <= 0 {
		c.MinBackoff = time.Second
	}
	if c.MaxBackoff <= 0 {
		c.MaxBackoff = 5 * time.Minute
	}
	if c.Timeout <= 0 {
		c.Timeout = 10 * time.Second
	}
	if c.Concurrency <= 0 {
		c.Concurrency = broker.NotifierMaxAckPending / 4
	}
	if c.AckWait <= 0 {
		c.AckWait = broker.NotifierAckWait
	}
	if c.Client == nil {
		c.Client = &http.Client{
			Timeout: c.Timeout,
			// A webhook that redirects is misconfigured: following it would
			// turn the POST into a GET somewhere else.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Stats count what the notifier did since it started.
type Stats struct {
	Delivered int64 // targets that answered 2xx
	Retried   int64 // tries that failed and were tried again
	Failed    int64 // targets given up on: out of time, a 4xx, refused by Allow
}

// Notifier delivers notifications; Start runs it, Stop drains it.
type Notifier struct {
	cfg Config
	js  jetstream.JetStream
	nc  *nats.Conn
	log *slog.Logger

	delivered, retried, failed atomic.Int64

	stop  context.CancelFunc
	iter  jetstream.MessagesContext
	inFly sync.WaitGroup
	done  sync.WaitGroup
}

// New makes a notifier on nc.
func New(nc *nats.Conn, cfg Config) (*Notifier, error) {
	cfg = cfg.withDefaults()
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	return &Notifier{cfg: cfg, js: js, nc: nc, log: cfg.Logger.With("component", "notifier")}, nil
}

// Stats are the counts so far.
func (n *Notifier) Stats() Stats {
	return Stats{Delivered: n.delivered.Load(), Retried: n.retried.Load(), Failed: n.failed.Load()}
}

// Start ensures the durable consumer and starts delivering. ctx bounds the
// set-up only. The topology (broker.Ensure) creates the shared consumer, so
// that the events stream keeps jobs' ends from then on even before any
// notifier ran; a notifier whose ack wait or concurrency differ from the
// consumer's updates it.
func (n *Notifier) Start(ctx context.Context) error {
	want := broker.NotifierConsumerConfig(n.cfg.Consumer, n.cfg.AckWait, 4*n.cfg.Concurrency)
	cons, err := n.js.Consumer(ctx, broker.EventsStream, n.cfg.Consumer)
	switch {
	case errors.Is(err, jetstream.ErrConsumerNotFound):
		cons, err = n.js.CreateOrUpdateConsumer(ctx, broker.EventsStream, want)
	case err == nil:
		if have := cons.CachedInfo().Config; have.AckWait != want.AckWait || have.MaxAckPending != want.MaxAckPending {
			cons, err = n.js.UpdateConsumer(ctx, broker.EventsStream, want)
		}
	}
	if err != nil {
		return fmt.Errorf("ensure notifier consumer: %w", err)
	}
	iter, err := cons.Messages(jetstream.PullMaxMessages(n.cfg.Concurrency))
	if err != nil {
		return fmt.Errorf("consume final events: %w", err)
	}
	if len(n.cfg.Secret) == 0 {
		n.log.Warn("WINCH_NOTIFY_SECRET is not set: notifications go unsigned, and receivers cannot tell them from forgeries")
	}
	runCtx, stop := context.WithCancel(context.Background())
	n.stop, n.iter = stop, iter
	n.done.Add(1)
	go n.run(runCtx, iter)
	n.log.Info("notifier running", "consumer", n.cfg.Consumer, "retry_for", n.cfg.RetryFor.String())
	return nil
}

// Stop stops taking notifications and interrupts those in hand: what was
// not delivered yet is handed back to the stream for the next notifier.
func (n *Notifier) Stop(ctx context.Context) error {
	if n.stop == nil {
		return nil
	}
	n.iter.Stop()
	n.stop()
	done := make(chan struct{})
	go func() { n.done.Wait(); n.inFly.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		<-done
	}
	s := n.Stats()
	n.log.Info("notifier stopped", "delivered", s.Delivered, "retried", s.Retried, "failed", s.Failed)
	flushCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return n.nc.FlushWithContext(flushCtx) // the acks and naks of what it had
}

func (n *Notifier) run(ctx context.Context, iter jetstream.MessagesContext) {
	defer n.done.Done()
	slots := make(chan struct{}, n.cfg.Concurrency)
	for {
		msg, err := iter.Next()
		if err != nil {
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) || ctx.Err() != nil {
				return
			}
			n.log.Warn("take final events", "err", err)
			select { // the iterator reconnects by itself; do not spin meanwhile
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
			continue
		}
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			_ = msg.Nak()
			return
		}
		n.inFly.Add(1)
		go func() {
			defer func() { <-slots; n.inFly.Done() }()
			n.handle(ctx, msg)
		}()
	}
}

// handle delivers one final event to each of its targets, then acks it;
// if the notifier stops first, it is handed back.
func (n *Notifier) handle(ctx context.Context, msg jetstream.Msg) {
	ev, err := schema.DecodeEvent(msg.Data())
	if err != nil {
		n.log.Error("undecodable event; the notifier skips it", "subject", msg.Subject(), "err", err)
		_ = msg.Term()
		return
	}
	var targets []int
	for i, t := range ev.Notify {
		if t.Wants(ev.State) {
			targets = append(targets, i)
		}
	}
	if len(targets) == 0 {
		_ = msg.Ack()
		return
	}
	keep, stopKeeping := context.WithCancel(ctx)
	go func() { // the stream keeps it ours while we retry
		t := time.NewTicker(n.cfg.AckWait / 3)
		defer t.Stop()
		for {
			select {
			case <-keep.Done():
				return
			case <-t.C:
				_ = msg.InProgress()
			}
		}
	}()
	var wg sync.WaitGroup
	for _, i := range targets {
		wg.Go(func() { n.deliver(ctx, ev, i) })
	}
	wg.Wait()
	stopKeeping()
	if ctx.Err() != nil {
		_ = msg.Nak()
		return
	}
	_ = msg.Ack()
}

// DeliveryID names the notification of ev's end to its i-th target: the
// event's identity and the target's place, the same on every try.
func DeliveryID(ev schema.Event, i int) string { return ev.MsgID() + "." + strconv.Itoa(i) }

// deliver POSTs until the target answers 2xx, refuses for good, or time is
// up. It returns early, undelivered, when ctx ends.
func (n *Notifier) deliver(ctx context.Context, ev schema.Event, i int) {
	t := ev.Notify[i]
	id := DeliveryID(ev, i)
	log := n.log.With("job", ev.JobID, "delivery", id, "target", redactTarget(t.URL))
	if !n.allowed(t.URL) {
		n.fail("not_allowed")
		log.Error("notification refused: its URL is not under WINCH_NOTIFY_ALLOW", "failed_total", n.failed.Load())
		return
	}
	data, err := body(notification(ev, id, n.cfg.ConsoleURL), t.Format)
	if err != nil {
		n.fail("unencodable")
		log.Error("notification not encodable", "err", err)
		return
	}
	deadline := ev.Time.Add(n.cfg.RetryFor)
	wait := n.cfg.MinBackoff
	for attempt := 1; ; attempt++ {
		err := n.post(ctx, t.URL, id, attempt, ev, data)
		if err == nil {
			n.delivered.Add(1)
			n.cfg.Metrics.Delivered()
			log.Info("notification delivered", "state", ev.State, "attempts", attempt)
			return
		}
		if ctx.Err() != nil {
			return
		}
		var perm *permanentError
		if refused := errors.As(err, &perm); refused || time.Now().Add(wait).After(deadline) {
			n.fail(map[bool]string{true: "refused", false: "expired"}[refused])
			log.Error("notification failed; giving up", "attempts", attempt, "err", err, "failed_total", n.failed.Load())
			return
		}
		n.retried.Add(1)
		n.cfg.Metrics.Retried()
		log.Warn("notification failed; retrying", "attempt", attempt, "in", wait.Round(time.Millisecond), "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(time.Duration(float64(wait)*(1.6+0.8*rand.Float64())), n.cfg.MaxBackoff)
	}
}

// fail counts a notification given up on.
func (n *Notifier) fail(reason string) {
	n.failed.Add(1)
	n.cfg.Metrics.Failed(reason)
}

// permanentError is an answer that trying again will not change.
type permanentError struct{ msg string }

func (e *permanentError) Error() string { return e.msg }

func (n *Notifier) post(ctx context.Context, target, id string, attempt int, ev schema.Event, data []byte) error {
	reqCtx, cancel := context.WithTimeout(ctx, n.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(reqCtx, http.MethodPost, target, bytes.NewReader(data))
	if err != nil {
		return &permanentError{msg: "not a URL a request can go to"}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "winch-notifier")
	req.Header.Set(HeaderDelivery, id)
	req.Header.Set(HeaderAttempt, strconv.Itoa(attempt))
	req.Header.Set(HeaderEvent, "job."+string(ev.State))
	if len(n.cfg.Secret) > 0 {
		req.Header.Set(HeaderSignature, Sign(n.cfg.Secret, data))
	}
	resp, err := n.cfg.Client.Do(req)
	if err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err // the URL may hold a token: do not log it
		}
		return err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return nil
	case resp.StatusCode >= 500, resp.StatusCode == http.StatusTooManyRequests, resp.StatusCode == http.StatusRequestTimeout:
		return fmt.Errorf("the receiver answered %d %s", resp.StatusCode, http.StatusText(resp.StatusCode))
	}
	return &permanentError{msg: fmt.Sprintf("the receiver answered %d %s", resp.StatusCode, http.StatusText(resp.StatusCode))}
}

func (n *Notifier) allowed(target string) bool {
	if len(n.cfg.Allow) == 0 {
		return true
	}
	for _, prefix := range n.cfg.Allow {
		if strings.HasPrefix(target, prefix) {
			return true
		}
	}
	return false
}

// redactTarget is a target's scheme and host: webhook paths often hold the
// hook's token (Slack's do), which must not reach the logs.
func redactTarget(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Scheme + "://" + u.Host + "/…"
}
