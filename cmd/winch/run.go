package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/winchhq/winch/broker"
	"github.com/winchhq/winch/modules"
	"github.com/winchhq/winch/producer"
	"github.com/winchhq/winch/schema"
)

// RunCmd is `winch run MODULE.COMMAND [--param value ...]`.
type RunCmd struct {
	Detach         bool          `short:"d" help:"Print the job id and return at once, without following."`
	Queue          string        `env:"WINCH_QUEUE" default:"default" help:"Queue to send the request to."`
	Timeout        time.Duration `help:"Stop the command after this long (the command's own timeout applies too)."`
	ID             string        `help:"Job id to use (default: a new one)."`
	IdempotencyKey string        `help:"Name the job by this key: the same key from the same principal runs once."`
	WaitNotice     time.Duration `hidden:"" default:"2s" help:"Say where the job waits if no worker has taken it after this long."`
	Yes            bool          `short:"y" help:"Do not ask for confirmation in a context marked confirm: true."`
	NotifyTargetFlags
	CancelOnInterrupt bool          `help:"Ctrl-C (or SIGTERM) cancels the job and waits for its end (without it, Ctrl-C detaches, and a second Ctrl-C within ${interrupt_window} cancels)."`
	InterruptWindow   time.Duration `hidden:"" default:"${interrupt_window}" help:"How long after a Ctrl-C a second one cancels the job."`
	Priority          string        `enum:"high,normal,low" default:"normal" help:"Which waiting request a free worker takes first (${enum})."`
	At                string        `help:"Run once, later, at this time (RFC 3339, or YYYY-MM-DD HH:MM[:SS] local); prints the job id and returns."`
	In                time.Duration `help:"Run once, after this long (like 2h); prints the job id and returns."`
	FanoutFlags

	Args []string `arg:"" passthrough:"" name:"command" predictor:"command" help:"MODULE.COMMAND, then its parameters as --name value (see winch commands)."`
}

// Run validates, publishes and, unless detached, follows the run, and exits
// with the command's exit code.
func (c *RunCmd) Run(ctx context.Context, g *Globals) error {
	client, nc, err := g.client(ctx)
	if err != nil {
		return err
	}
	defer nc.Close()
	catalog, err := client.Catalog(ctx)
	if err != nil {
		return err
	}
	cmd, err := catalog.Lookup(c.Args[0])
	if err != nil {
		return runError(err)
	}
	params, help, err := parseParams(cmd.Spec, c.Args[1:])
	if err != nil {
		return &ExitError{Code: exitUsage, Err: fmt.Errorf("%s: %w (winch run %s --help)", cmd.Name, err, cmd.Name)}
	}
	if help {
		return printCommandHelp(g.stdio.Out, cmd)
	}
	principal, err := g.principal()
	if err != nil {
		return err
	}
	notify, err := c.notifyTargets()
	if err != nil {
		return err
	}
	prio, err := schema.ParsePriority(c.Priority)
	if err != nil {
		return usageError("--priority: %v", err)
	}
	if err := c.confirm(ctx, g, cmd.Name); err != nil {
		return err
	}
	run := producer.RunRequest{
		Command: cmd.Name, Params: params, Queue: c.Queue, Principal: principal,
		ID: c.ID, IdempotencyKey: c.IdempotencyKey, Timeout: c.Timeout, Priority: prio, Notify: notify,
	}
	if run.Each, err = c.each(cmd.Spec, g.stdio.In); err != nil {
		return err
	}
	run.Parallel, run.FailFast = c.Parallel, c.FailFast
	if c.At != "" || c.In != 0 {
		if run.Each != nil {
			return usageError("--at and --in do not take --each yet: schedule each run, or run the fan-out now")
		}
		return c.runLater(ctx, g, client, catalog, run)
	}
	sub, err := client.RunIn(ctx, catalog, run)
	if err != nil {
		return runError(err)
	}
	id := sub.Request.ID
	if warning := client.NotifierWarning(ctx, id, notify); warning != "" {
		fmt.Fprintln(g.stdio.Err, "winch:", warning)
	}
	if sub.Duplicate {
		g.clientLogger().Info("a request with this id was already queued; following that job", "job", id)
	}
	if c.Detach {
		if g.jsonOutput() {
			return json.NewEncoder(g.stdio.Out).Encode(map[string]any{"id": id, "duplicate": sub.Duplicate})
		}
		_, err := fmt.Fprintln(g.stdio.Out, id)
		return err
	}
	policy := interruptPolicy{cancel: c.CancelOnInterrupt, window: c.InterruptWindow, principal: principal}
	if run.Each != nil {
		// Ctrl-C acts on the parent: cancelling it cancels its children.
		return withInterrupts(ctx, g, client, id, policy, func(fctx context.Context) error {
			return followFanout(fctx, g, client, id, false)
		})
	}
	return follow(ctx, g, client, id, sub.Request.Queue, c.WaitNotice, policy)
}

// notifyTargets are the webhooks --notify asks for.
// NotifyTargetFlags are the webhooks of one run, or of every run of a
// schedule.
type NotifyTargetFlags struct {
	Notify       []string `placeholder:"URL" help:"POST a signed webhook to URL when the job ends (repeatable; winch notifier delivers it)."`
	NotifyOn     []string `placeholder:"STATE,..." help:"Only for these ends: succeeded, failed, cancelled, timed_out, rejected, dead (default: every end)."`
	NotifyFormat string   `enum:"json,slack" default:"json" help:"Body of --notify webhooks: json, or slack (Slack-compatible incoming webhooks)."`
}

func (c *NotifyTargetFlags) notifyTargets() ([]schema.NotifyTarget, error) {
	var on []schema.State
	for _, s := range splitList(c.NotifyOn) {
		on = append(on, schema.State(s))
	}
	if len(on) > 0 && len(c.Notify) == 0 {
		return nil, usageError("--notify-on needs --notify URL")
	}
	out, err := schema.NotifyTargets(c.Notify, on, c.NotifyFormat)
	if err != nil {
		return nil, usageError("--notify: %v", err)
	}
	if len(out) > schema.MaxNotifyTargets {
		return nil, usageError("--notify is given %d times; at most %d", len(out), schema.MaxNotifyTargets)
	}
	return out, nil
}

// confirm asks, in a context marked confirm: true, before anything is
// published. The answer is read from stdin whatever it is, so a script
// must say --yes (or pipe its answer) rather than run by accident. Ctrl-C
// at the prompt ends it at once: the read goes on in the background until
// the process exits, which it is about to.
func (c *RunCmd) confirm(ctx context.Context, g *Globals, command string) error {
	if !g.profileOK || !g.profile.Confirm || c.Yes {
		return nil
	}
	fmt.Fprintf(g.stdio.Err, "Run %s on queue %s in context %s (%s)? [y/N] ", command, c.Queue, g.profile.Name, broker.RedactURLs(g.NatsURL))
	answers := make(chan string, 1)
	if g.stdio.In != nil {
		go func() {
			line, _ := bufio.NewReader(g.stdio.In).ReadString('\n')
			answers <- strings.ToLower(strings.TrimSpace(line))
		}()
	} else {
		answers <- ""
	}
	select {
	case <-ctx.Done():
		fmt.Fprintln(g.stdio.Err)
		return &ExitError{Code: exitCancelled, Err: fmt.Errorf("interrupted at the confirmation prompt of context %s; nothing was published", g.profile.Name)}
	case answer := <-answers:
		if answer == "y" || answer == "yes" {
			return nil
		}
	}
	fmt.Fprintln(g.stdio.Err)
	return &ExitError{Code: exitUsage, Err: fmt.Errorf("not confirmed: context %s asks before running anything (answer y, or pass --yes); nothing was published", g.profile.Name)}
}

// runLater is `winch run --at/--in`: a one-off schedule, whose fire is an
// ordinary job with an id known now.
func (c *RunCmd) runLater(ctx context.Context, g *Globals, client *producer.Client, catalog *modules.Catalog, run producer.RunRequest) error {
	if c.At != "" && c.In != 0 {
		return usageError("give --at or --in, not both")
	}
	if c.ID != "" || c.IdempotencyKey != "" {
		return usageError("--id and --idempotency-key do not apply to a delayed run: its job id comes from its schedule and time")
	}
	now := time.Now()
	at := now.Add(c.In)
	if c.At != "" {
		var err error
		if at, err = parseAt(c.At, now); err != nil {
			return usageError("--at: %v", err)
		}
	}
	id, d, err := client.RunAt(ctx, catalog, run, at, "")
	if err != nil {
		return scheduleError(err)
	}
	if g.jsonOutput() {
		return json.NewEncoder(g.stdio.Out).Encode(map[string]any{"id": id, "at": d.At, "schedule": d.Name})
	}
	fmt.Fprintf(g.stdio.Err, "winch: %s runs at %s (schedule %s; winch schedule remove %s cancels it before then)\n", d.Request.Command, formatTime(d.At), d.Name, d.Name)
	_, err = fmt.Fprintln(g.stdio.Out, id)
	return err
}

// runError makes what the library refuses to run a usage error, naming
// parameters as the flags they are given as here.
func runError(err error) error {
	var invalid *producer.InvalidParamsError
	switch {
	case errors.As(err, &invalid):
		problems := make([]string, len(invalid.Params))
		for i, p := range invalid.Params {
			problems[i] = "--" + p.Param + ": " + p.Message
		}
		return &ExitError{Code: exitUsage, Err: fmt.Errorf("invalid parameters for %s: %s (winch run %s --help)",
			invalid.Command, strings.Join(problems, "; "), invalid.Command)}
	case producer.IsInvalid(err):
		return &ExitError{Code: exitUsage, Err: err}
	}
	return err
}

// interruptPolicy is what Ctrl-C does while winch run follows a job.
type interruptPolicy struct {
	cancel    bool          // the first Ctrl-C cancels (--cancel-on-interrupt)
	window    time.Duration // a second Ctrl-C within it cancels
	principal string        // who cancels
}

// follow streams the job's events until it ends and turns its end into the
// exit code, with interrupts handled as withInterrupts says.
func follow(ctx context.Context, g *Globals, client *producer.Client, id, queue string, notice time.Duration, policy interruptPolicy) error {
	return withInterrupts(ctx, g, client, id, policy, func(fctx context.Context) error {
		accepted := make(chan struct{})
		noticeCtx, stopNotice := context.WithCancel(fctx)
		var background sync.WaitGroup
		defer func() { stopNotice(); background.Wait() }()
		if notice > 0 {
			background.Go(func() { explainWait(noticeCtx, g, client, id, queue, notice, accepted) })
		}
		once := false
		render := newEventRenderer(g, false)
		last, err := client.Follow(fctx, id, producer.UntilDone, func(ev schema.Event) error {
			if !once && ev.Kind != schema.KindReleased {
				once = true
				close(accepted)
			}
			return render(ev)
		})
		if err != nil {
			return err
		}
		return exitFor(last)
	})
}

// withInterrupts runs followJob, which follows job id until it ends and
// returns its exit (an *ExitError for an end that is not success), on a
// context of its own. ctx ends at the first SIGINT or SIGTERM; following
// goes on while interrupts decides, and ends if it detaches, which is then
// said with how to follow or cancel the job.
func withInterrupts(ctx context.Context, g *Globals, client *producer.Client, id string, policy interruptPolicy, followJob func(fctx context.Context) error) error {
	fctx, detach := context.WithCancel(context.WithoutCancel(ctx))
	defer detach()
	var detached atomic.Bool
	var background sync.WaitGroup
	background.Go(func() {
		interrupts(ctx, fctx, g, client, id, policy, func() { detached.Store(true); detach() })
	})
	err := followJob(fctx)
	detach()
	background.Wait()
	var exit *ExitError
	if err != nil && !errors.As(err, &exit) && detached.Load() {
		fmt.Fprintf(g.stdio.Err, "winch: stopped following; job %s goes on (winch logs -f %s, winch cancel %s)\n", id, id, id)
		return &ExitError{Code: exitCancelled}
	}
	return err
}

// interrupts decides what SIGINT and SIGTERM do to a follow: SIGTERM, or a
// Ctrl-C, detaches (the job goes on); a second Ctrl-C within the window, or
// the first interrupt of either kind with --cancel-on-interrupt (CI stopping
// a step should stop its job), cancels the job and the follow
// waits for its end, which its events and the audit record ("cancelled by
// <principal>"). A Ctrl-C while it waits detaches. It returns when the
// follow ends (fctx), having called detach if it decided to.
func interrupts(ctx, fctx context.Context, g *Globals, client *producer.Client, id string, policy interruptPolicy, detach func()) {
	first := true
	next := func() (os.Signal, bool) { // the next interrupt; false when the follow is over
		ended := ctx.Done()
		if !first {
			ended = nil // ctx ended at the first; only new signals count
		}
		first = false
		select {
		case <-fctx.Done():
			return nil, false
		case s := <-g.stdio.Signals:
			return s, true
		case <-ended:
			if g.stdio.Signals == nil {
				return nil, true // a signal we cannot see; take it for SIGTERM
			}
			select { // the signal that ended ctx, as it reaches us
			case s := <-g.stdio.Signals:
				return s, true
			case <-fctx.Done():
				return nil, false
			case <-time.After(time.Second):
				return nil, true
			}
		}
	}
	sig, ok := next()
	if !ok {
		return
	}
	if sig != os.Interrupt && !policy.cancel {
		detach()
		return
	}
	if !policy.cancel {
		fmt.Fprintf(g.stdio.Err, "winch: detaching from job %s, which goes on; Ctrl-C again within %v cancels it\n", id, policy.window)
		select {
		case <-fctx.Done():
			return
		case <-time.After(policy.window):
			detach()
			return
		case <-g.stdio.Signals:
		}
	}
	fmt.Fprintf(g.stdio.Err, "winch: cancelling job %s; waiting for it to end (Ctrl-C again stops waiting)\n", id)
	cctx, cancel := context.WithTimeout(fctx, 15*time.Second)
	reply, err := client.Cancel(cctx, id, policy.principal)
	cancel()
	switch {
	case err != nil:
		fmt.Fprintf(g.stdio.Err, "winch: cancel job %s: %v\n", id, err)
		detach()
		return
	case reply.Outcome == schema.OutcomeRefused:
		fmt.Fprintf(g.stdio.Err, "winch: cancel of job %s refused: %s\n", id, reply.Error)
		detach()
		return
	}
	if _, ok := next(); ok {
		detach()
	}
}

// explainWait tells the user, once after a while and then now and then, why
// nothing has happened yet.
func explainWait(ctx context.Context, g *Globals, client *producer.Client, id, queue string, first time.Duration, accepted <-chan struct{}) {
	wait := first
	for {
		select {
		case <-ctx.Done():
			return
		case <-accepted:
			return
		case <-time.After(wait):
		}
		wait = 30 * time.Second
		qs, err := client.Queue(ctx, queue)
		if err != nil {
			continue
		}
		var why string
		switch {
		case !qs.Exists:
			why = fmt.Sprintf("no worker has ever served queue %q: start one with `winch worker --queues %s`", queue, queue)
		case qs.IdleWorkers == 0:
			why = fmt.Sprintf("no idle worker on queue %q (%d waiting, %d running)", queue, qs.Pending, qs.InFlight)
		default:
			why = fmt.Sprintf("%d waiting and %d running on queue %q", qs.Pending, qs.InFlight, queue)
		}
		fmt.Fprintf(g.stdio.Err, "winch: job %s is queued: %s\n", id, why)
	}
}

// exitFor maps the event that ended a job to `winch run`'s exit code.
func exitFor(ev schema.Event) error {
	switch ev.State {
	case schema.StateSucceeded:
		return nil
	case schema.StateCancelled:
		return &ExitError{Code: exitCancelled, Err: fmt.Errorf("job %s %s", ev.JobID, ev.Error)}
	case schema.StateTimedOut:
		return &ExitError{Code: exitTimedOut, Err: fmt.Errorf("job %s %s", ev.JobID, ev.Error)}
	case schema.StateRejected:
		return &ExitError{Code: exitRejected, Err: fmt.Errorf("job %s rejected: %s", ev.JobID, ev.Error)}
	case schema.StateDead:
		return &ExitError{Code: exitDead, Err: fmt.Errorf("job %s is dead: %s", ev.JobID, ev.Error)}
	case schema.StateFailed:
		switch {
		case ev.Reason == schema.ReasonWorkerLost:
			return &ExitError{Code: exitWorkerLost, Err: fmt.Errorf("job %s failed: %s", ev.JobID, ev.Error)}
		case ev.ExitCode != nil && ev.Error != "":
			return &ExitError{Code: *ev.ExitCode, Err: fmt.Errorf("job %s failed: %s", ev.JobID, ev.Error)}
		case ev.ExitCode != nil:
			return &ExitError{Code: *ev.ExitCode}
		}
		return &ExitError{Code: exitNotStarted, Err: fmt.Errorf("job %s failed: %s", ev.JobID, ev.Error)}
	}
	return &ExitError{Code: exitInternal, Err: fmt.Errorf("job %s ended in unknown state %q", ev.JobID, ev.State)}
}

// parseParams reads `--name value`, `--name=value`, `--flag` and `--no-flag`
// against the command's parameters. Dashes in names stand for underscores.
func parseParams(spec schema.CommandSpec, args []string) (map[string]any, bool, error) {
	out := map[string]any{}
	for i := 0; i < len(args); i++ {
		arg := args[i]
		if arg == "--help" || arg == "-h" {
			return nil, true, nil
		}
		name, ok := strings.CutPrefix(arg, "--")
		if !ok || name == "" {
			return nil, false, fmt.Errorf("unexpected argument %q: parameters are given as --name value", arg)
		}
		name, value, hasValue := strings.Cut(name, "=")
		name = strings.ReplaceAll(name, "-", "_")
		p, known := spec.Params[name]
		if !known {
			if neg, isNeg := strings.CutPrefix(name, "no_"); isNeg && !hasValue && spec.Params[neg].Type == schema.TypeBool {
				out[neg] = false
				continue
			}
			return nil, false, fmt.Errorf("unknown parameter --%s; %s", strings.ReplaceAll(name, "_", "-"), paramList(spec))
		}
		if !hasValue {
			if p.Type == schema.TypeBool && (i+1 == len(args) || strings.HasPrefix(args[i+1], "--")) {
				out[name] = true
				continue
			}
			if i+1 == len(args) {
				return nil, false, fmt.Errorf("--%s needs a value", name)
			}
			i++
			value = args[i]
		}
		v, err := p.ParseParam(value)
		if err != nil {
			return nil, false, fmt.Errorf("--%s: %w", name, err)
		}
		if _, dup := out[name]; dup {
			return nil, false, fmt.Errorf("--%s is given twice", name)
		}
		out[name] = v
	}
	return out, false, nil
}

func paramList(spec schema.CommandSpec) string {
	if len(spec.Params) == 0 {
		return "this command takes no parameters"
	}
	names := spec.ParamNames()
	for i, n := range names {
		names[i] = "--" + n
	}
	return "it takes " + strings.Join(names, ", ")
}

// paramLines renders a command's parameters for help, one a line.
func paramLines(cmd modules.Command) []string {
	var lines []string
	names := cmd.Spec.ParamNames()
	sort.Strings(names)
	for _, n := range names {
		p := cmd.Spec.Params[n]
		kind := string(p.Type)
		if p.Type == schema.TypeEnum {
			kind = strings.Join(p.Values, "|")
		}
		var notes []string
		if p.Required {
			notes = append(notes, "required")
		}
		if p.Default != nil {
			notes = append(notes, fmt.Sprintf("default %v", p.Default))
		}
		if p.Secret {
			notes = append(notes, "secret")
		}
		if p.Pattern != "" {
			notes = append(notes, "matching "+p.Pattern)
		}
		if p.Min != nil {
			notes = append(notes, fmt.Sprintf("min %v", *p.Min))
		}
		if p.Max != nil {
			notes = append(notes, fmt.Sprintf("max %v", *p.Max))
		}
		line := fmt.Sprintf("--%s %s", strings.ReplaceAll(n, "_", "-"), kind)
		help := p.Help
		if len(notes) > 0 {
			help = strings.TrimSpace(help + " (" + strings.Join(notes, ", ") + ")")
		}
		lines = append(lines, fmt.Sprintf("%-24s %s", line, help))
	}
	return lines
}
