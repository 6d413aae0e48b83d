package producer

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/winchhq/winch/broker"
	"github.com/winchhq/winch/modules"
	"github.com/winchhq/winch/schema"
)

// prepareFanout is Prepare for a fan-out: every child's parameters are
// validated before anything is published, and one bad value refuses the
// whole fan-out (an *InvalidParamsError naming each bad value by its
// number and text).
func prepareFanout(cmd modules.Command, req RunRequest) (schema.Request, error) {
	each := req.Each
	if err := cmd.Spec.CheckFanoutParam(each.Param); err != nil {
		return schema.Request{}, &InvalidParamsError{Command: cmd.Name, Params: []*ParamError{{Param: each.Param, Message: err.Error()}}}
	}
	if len(each.Values) == 0 || len(each.Values) > schema.MaxFanout {
		return schema.Request{}, &schema.RequestError{Reason: fmt.Sprintf("a fan-out takes 1 to %d values; %d were given", schema.MaxFanout, len(each.Values))}
	}
	if _, ok := req.Params[each.Param]; ok {
		return schema.Request{}, &InvalidParamsError{Command: cmd.Name, Params: []*ParamError{{Param: each.Param,
			Message: "is given both as a parameter and as the fan-out's values: give it in one place"}}}
	}
	invalid := &InvalidParamsError{Command: cmd.Name}
	var shared map[string]any
	params := make(map[string]any, len(req.Params)+1)
	for k, v := range req.Params {
		params[k] = v
	}
	for i, v := range each.Values {
		params[each.Param] = v
		normal, err := cmd.Spec.ValidateParams(params)
		if err != nil {
			var ve *schema.ValidationError
			if !errors.As(err, &ve) {
				return schema.Request{}, err
			}
			for _, p := range ve.Problems {
				field := p.Field
				if field == each.Param {
					field = fmt.Sprintf("%s (value %d, %q)", each.Param, i+1, v)
				}
				invalid.Params = append(invalid.Params, &ParamError{Param: field, Message: p.Message})
			}
			if len(invalid.Params) >= 20 {
				break // enough to act on
			}
			continue
		}
		if shared == nil {
			delete(normal, each.Param)
			shared = normal
		}
	}
	if len(invalid.Params) > 0 {
		return schema.Request{}, invalid
	}
	return schema.Request{
		ID: req.ID, Command: cmd.Name, Params: shared, Queue: req.Queue, Principal: req.Principal,
		IdempotencyKey: req.IdempotencyKey, Timeout: schema.Duration(req.Timeout), ModuleCommit: cmd.Commit,
		Notify: req.Notify, Priority: req.Priority,
		Each: &schema.Each{Param: each.Param, Values: each.Values}, Parallel: max(req.Parallel, 1), FailFast: req.FailFast,
	}, nil
}

// FanoutEvent is an event of a fan-out: of the parent (Child -1) or of
// its child number Child, whose value is Value.
type FanoutEvent struct {
	Child int
	Value string
	schema.Event
}

// ChildIndex says whether job is a child of parent, and which.
func ChildIndex(parent, job string) (int, bool) {
	rest, ok := strings.CutPrefix(job, parent+"-")
	if !ok {
		return 0, false
	}
	i, err := strconv.Atoi(rest)
	if err != nil || i < 0 || strconv.Itoa(i) != rest {
		return 0, false
	}
	return i, true
}

// FollowFanout delivers the events of a fan-out parent and of all its
// children to fn as they come, each child's with its value, until the
// parent has ended and so has every child it launched. It reads one
// ordered consumer over every job's events from the parent's creation
// (the children's ids are <parent>-<index>, which no subject filter can
// select), so it costs a reader of the whole events stream from then on.
// It returns the parent's final event.
func (c *Client) FollowFanout(ctx context.Context, parent string, fn func(FanoutEvent) error) (schema.Event, error) {
	var end schema.Event
	st, err := c.Status(ctx, parent)
	if err != nil {
		return end, err
	}
	stream, err := c.js.Stream(ctx, broker.EventsStream)
	if err != nil {
		return end, fmt.Errorf("open events stream: %w", err)
	}
	start := st.CreatedAt.Add(-time.Second)
	if st.CreatedAt.IsZero() {
		start = time.Now().Add(-time.Hour)
	}
	cons, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{broker.JobEventsFilter("*")}, DeliverPolicy: jetstream.DeliverByStartTimePolicy, OptStartTime: &start,
		InactiveThreshold: 10 * time.Second,
	})
	if err != nil {
		return end, fmt.Errorf("follow fan-out %s: %w", parent, err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(512))
	if err != nil {
		return end, fmt.Errorf("follow fan-out %s: %w", parent, err)
	}
	defer func() {
		if info := cons.CachedInfo(); info != nil {
			delCtx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_ = stream.DeleteConsumer(delCtx, info.Name)
			cancel()
		}
	}()
	var stopOnce sync.Once
	stop := func() { stopOnce.Do(it.Stop) }
	defer stop()
	go func() {
		<-ctx.Done()
		stop()
	}()
	param := ""
	if st.Fanout != nil {
		param = st.Fanout.Param
	}
	values := map[int]string{}
	ended := map[int]bool{}
	parentEnded := false
	var grace <-chan time.Time
	for {
		if parentEnded && (end.Fanout == nil || len(ended) >= end.Fanout.Launched) {
			return end, nil
		}
		if grace != nil {
			select {
			case <-grace:
				return end, nil // a child's end the stream does not have: the parent's counts stand
			default:
			}
		}
		msg, err := it.Next()
		if err != nil {
			if ctx.Err() != nil {
				return end, context.Cause(ctx)
			}
			return end, fmt.Errorf("follow fan-out %s: %w", parent, err)
		}
		ev, err := schema.DecodeEvent(msg.Data())
		if err != nil {
			continue
		}
		fe := FanoutEvent{Child: -1, Event: ev}
		switch i, ok := ChildIndex(parent, ev.JobID); {
		case ev.JobID == parent:
			if ev.Fanout != nil {
				param = ev.Fanout.Param
			}
			if ev.Terminal() {
				end, parentEnded = ev, true
				grace = time.After(10 * time.Second)
			}
		case ok:
			if v, ok := ev.Params[param].(string); ok && ev.Kind == schema.KindAccepted {
				values[i] = v
			}
			fe.Child, fe.Value = i, values[i]
			if ev.Terminal() {
				ended[i] = true
			}
		default:
			continue
		}
		if err := fn(fe); err != nil {
			return end, err
		}
	}
}
