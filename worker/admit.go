package worker

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/winchhq/winch/broker"
	"github.com/winchhq/winch/modules"
	"github.com/winchhq/winch/schema"
)

// admission is a request that may run: decoded, from whom its subject
// says, for a command that exists, allowed, with valid parameters.
type admission struct {
	req    schema.Request
	cmd    modules.Command
	params map[string]any // validated and normalized
	masked map[string]any // the same, secrets masked
	// slotKey and slotLimit are the command's concurrency limit for these
	// parameters ("" when it has none); woken says the job's slot was
	// handed to it while it waited.
	slotKey   string
	slotLimit int
	woken     bool
}

// rejection is a request that can never run, with what may be recorded of it.
type rejection struct {
	id        string
	req       schema.Request // Params masked, or nil when which are secret is unknown
	principal string         // who published it: the subject's
	reason    error
}

func (r *rejection) Error() string { return r.reason.Error() }

// errRetryLater: the request may run, but not now (its module could not be
// fetched); it is delivered again.
var errRetryLater = errors.New("retry later")

// admit decides whether a delivered request may run. It returns a
// *rejection for one that never can, errRetryLater (wrapped) for one that
// may later, and the admission otherwise. Who may run a command is checked
// before anything else about the request is looked at.
func (w *Worker) admit(d delivery, subject string, data []byte, fallbackID string, lastTry bool) (admission, error) {
	parts, subjectOK := broker.ParseJobSubject(subject)
	req, err := schema.DecodeRequest(data)
	if err != nil {
		id := fallbackID
		if subjectOK && schema.ValidJobID(parts.Job) {
			id = parts.Job
		}
		return admission{}, &rejection{id: id, principal: parts.Principal, reason: err}
	}
	if !subjectOK || parts.Principal != req.Principal || parts.Job != req.ID {
		req.Params = nil
		return admission{}, &rejection{id: req.ID, req: req, principal: parts.Principal, reason: fmt.Errorf(
			"the request says job %q from principal %q, but was published on %s, which names job %q from %q: the subject names who published it",
			req.ID, req.Principal, subject, parts.Job, parts.Principal)}
	}
	// The subject decided which worker took it, and when: the request must
	// say the same, or its audit row would tell another story.
	if parts.Queue != req.Queue || parts.Priority != req.Priority.SubjectToken() {
		req.Params = nil
		return admission{}, &rejection{id: req.ID, req: req, principal: parts.Principal, reason: fmt.Errorf(
			"the request says queue %q, priority %q, but was published on %s: publish it on the subject of its queue and priority (broker.PriorityJobSubject)",
			req.Queue, req.Priority.Or(), subject)}
	}
	cmd, err := w.resolve(d, req)
	switch {
	case errors.Is(err, modules.ErrUnknownCommand), err != nil && lastTry:
		req.Params = nil // which of them are secret is not known: keep none
		return admission{}, &rejection{id: req.ID, req: req, principal: req.Principal, reason: err}
	case err != nil:
		return admission{}, fmt.Errorf("%w: %w", errRetryLater, err)
	}
	if err := w.cfg.Roles.Check(req.Principal, req.Command, cmd.Spec.Roles); err != nil {
		req.Params = cmd.Spec.MaskParams(req.Params)
		return admission{}, &rejection{id: req.ID, req: req, principal: req.Principal, reason: err}
	}
	if req.Each != nil {
		return w.admitFanout(req, cmd)
	}
	params, err := cmd.Spec.ValidateParams(req.Params)
	if err != nil {
		req.Params = cmd.Spec.MaskParams(req.Params)
		return admission{}, &rejection{id: req.ID, req: req, principal: req.Principal,
			reason: fmt.Errorf("invalid parameters for %s: %w", req.Command, err)}
	}
	adm := admission{req: req, cmd: cmd, params: params, masked: cmd.Spec.MaskParams(params)}
	if c := cmd.Spec.Concurrency; c != nil && req.Each == nil {
		adm.slotKey, adm.slotLimit = cmd.Spec.ConcurrencyKey(params), c.Limit
	}
	return adm, nil
}

// resolveTimeout bounds finding a command, which may mean fetching its
// module's repository.
const resolveTimeout = 5 * time.Minute

// resolve finds the request's command, keeping the request from being
// redelivered while a module is fetched.
func (w *Worker) resolve(d delivery, req schema.Request) (modules.Command, error) {
	ctx, cancel := context.WithTimeout(w.jobsCtx, resolveTimeout)
	defer cancel()
	defer keepInProgress(d, w.topo.HeartbeatInterval())()
	return w.cfg.Catalog.Resolve(ctx, req.Command, req.ModuleCommit)
}

// rejectedID names the job of a request that could not be decoded: its
// Nats-Msg-Id if that is a valid ID, else its stream sequence.
func rejectedID(msg jetstream.Msg, meta *jetstream.MsgMetadata) string {
	if id := msg.Headers().Get(jetstream.MsgIDHeader); schema.ValidJobID(id) {
		return id
	}
	return "seq-" + strconv.FormatUint(meta.Sequence.Stream, 10)
}

// admitFanout admits a fan-out parent: every child's parameters must be
// valid, or none runs. The parent's own parameters are those the children
// share.
func (w *Worker) admitFanout(req schema.Request, cmd modules.Command) (admission, error) {
	if err := cmd.Spec.CheckFanoutParam(req.Each.Param); err != nil {
		req.Params = cmd.Spec.MaskParams(req.Params)
		return admission{}, &rejection{id: req.ID, req: req, principal: req.Principal, reason: fmt.Errorf("each: %w", err)}
	}
	for i := range req.Each.Values {
		if _, err := cmd.Spec.ValidateParams(req.FanoutChild(i).Params); err != nil {
			req.Params = cmd.Spec.MaskParams(req.Params)
			req.Each = nil // which values are secret is the command's to say: keep none
			return admission{}, &rejection{id: req.ID, req: req, principal: req.Principal,
				reason: fmt.Errorf("invalid parameters for %s, value %d of each: %w", req.Command, i+1, err)}
		}
	}
	return admission{req: req, cmd: cmd, params: req.Params, masked: cmd.Spec.MaskParams(req.Params)}, nil
}
