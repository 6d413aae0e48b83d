package main

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/winchhq/winch/modules"
	"github.com/winchhq/winch/schema"
)

// newEventRenderer prints events: as JSON lines with --output json; as text
// otherwise, where `winch run` shows the command's output on the matching
// stream (and only the unusual events on stderr), and `winch logs` shows
// every event, one a line.
func newEventRenderer(g *Globals, all bool) func(schema.Event) error {
	if g.jsonOutput() {
		enc := json.NewEncoder(g.stdio.Out)
		return func(ev schema.Event) error { return enc.Encode(ev) }
	}
	if !all {
		return func(ev schema.Event) error {
			switch ev.Kind {
			case schema.KindLog:
				w := g.stdio.Out
				if ev.Stream == schema.Stderr {
					w = g.stdio.Err
				}
				_, err := io.WriteString(w, ev.Data)
				return err
			case schema.KindReleased:
				fmt.Fprintf(g.stdio.Err, "winch: worker %s stopped; job %s goes back to the queue\n", ev.Worker, ev.JobID)
			case schema.KindWaiting:
				fmt.Fprintf(g.stdio.Err, "winch: waiting: %s\n", waitingFor(ev.WaitingFor, ev.HeldBy))
			}
			return nil
		}
	}
	return func(ev schema.Event) error { return writeEventText(g.stdio.Out, ev) }
}

// writeEventText writes one event as text; a log event is one line for
// each line of its output.
func writeEventText(w io.Writer, ev schema.Event) error { return writeEventTextIn(w, ev, time.Local) }

func writeEventTextIn(w io.Writer, ev schema.Event, loc *time.Location) error {
	ts := ev.Time.In(loc).Format("2006-01-02 15:04:05.000")
	if ev.Kind == schema.KindLog {
		for _, line := range strings.SplitAfter(ev.Data, "\n") {
			if line == "" {
				continue
			}
			if _, err := fmt.Fprintf(w, "%s  %-8s  %s", ts, ev.Stream, line); err != nil {
				return err
			}
			if !strings.HasSuffix(line, "\n") {
				fmt.Fprintln(w)
			}
		}
		return nil
	}
	_, err := fmt.Fprintf(w, "%s  %-8s  %s\n", ts, ev.Kind, describeEvent(ev))
	return err
}

func describeEvent(ev schema.Event) string {
	var parts []string
	add := func(format string, args ...any) { parts = append(parts, fmt.Sprintf(format, args...)) }
	switch ev.Kind {
	case schema.KindAccepted:
		add("%s by %s on queue %s", ev.Command, ev.Principal, ev.Queue)
		if ev.Priority != "" && ev.Priority != schema.PriorityNormal {
			add("priority %s", ev.Priority)
		}
		if ev.Schedule != "" {
			add("schedule %s", ev.Schedule)
		}
		if ev.Commit != "" {
			add("at %.12s", ev.Commit)
		}
		if len(ev.Params) > 0 {
			add("params %s", formatParams(ev.Params))
		}
		add("worker %s, attempt %d", ev.Worker, ev.Attempt)
	case schema.KindStarted:
		add("executor %s", ev.Executor)
		if ev.Image != "" {
			add("image %s", ev.Image)
		}
	case schema.KindFinished, schema.KindRejected:
		add("%s", ev.State)
		if ev.ExitCode != nil {
			add("exit code %d", *ev.ExitCode)
		}
		if ev.Error != "" {
			add("%s", ev.Error)
		}
	case schema.KindWaiting:
		add("%s", waitingFor(ev.WaitingFor, ev.HeldBy))
	default:
		if ev.Error != "" {
			add("%s", ev.Error)
		}
	}
	return strings.Join(parts, ", ")
}

// waitingFor says what a waiting job waits for: "concurrency db-main is
// full (held by JOB)".
func waitingFor(key string, heldBy []string) string {
	s := "concurrency " + key + " is full"
	if len(heldBy) > 0 {
		s += " (held by " + strings.Join(heldBy, ", ") + ")"
	}
	return s
}

func formatParams(params map[string]any) string {
	keys := make([]string, 0, len(params))
	for k := range params {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		v, _ := json.Marshal(params[k])
		parts[i] = k + "=" + string(v)
	}
	return strings.Join(parts, " ")
}

// writeState writes a job's state as aligned "field: value" lines.
func writeState(w io.Writer, st schema.JobState) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(k, v string) {
		if v != "" {
			fmt.Fprintf(tw, "%s:\t%s\n", k, v)
		}
	}
	row("job", st.JobID)
	row("command", st.Command)
	row("state", string(st.State))
	row("principal", st.Principal)
	row("queue", st.Queue)
	row("priority", string(st.Priority.Or()))
	row("schedule", st.Schedule)
	row("worker", st.Worker)
	if st.Attempt > 0 {
		row("attempt", fmt.Sprint(st.Attempt))
	}
	row("executor", st.Executor)
	row("created", formatTime(st.CreatedAt))
	row("started", formatTime(st.StartedAt))
	row("finished", formatTime(st.FinishedAt))
	if d := duration(st); d > 0 {
		row("duration", d.String())
	}
	if st.ExitCode != nil {
		row("exit code", fmt.Sprint(*st.ExitCode))
	}
	row("reason", st.Reason)
	row("error", st.Error)
	if st.WaitingFor != "" && st.State == schema.StateWaiting {
		row("waiting", waitingFor(st.WaitingFor, st.HeldBy))
	}
	row("concurrency", st.Slot)
	row("parent", st.ParentID)
	if st.Fanout != nil {
		row("children", st.Fanout.String())
	}
	if st.CancelRequested {
		row("cancelled by", st.CancelledBy)
	}
	return tw.Flush()
}

func formatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.Local().Format("2006-01-02 15:04:05.000 MST")
}

func duration(st schema.JobState) time.Duration {
	if st.StartedAt.IsZero() || st.FinishedAt.IsZero() {
		return 0
	}
	return st.FinishedAt.Sub(st.StartedAt).Round(time.Millisecond)
}

// writeJobs writes a table of jobs.
func writeJobs(w io.Writer, jobs []schema.JobState, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "JOB\tCOMMAND\tSTATE\tPRINCIPAL\tQUEUE\tPRIORITY\tWORKER\tATTEMPT\tAGE\tSCHEDULE")
	for _, row := range fanoutRows(jobs) {
		st := row.st
		age := ""
		if !st.CreatedAt.IsZero() {
			age = now.Sub(st.CreatedAt).Round(time.Second).String()
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", row.label, st.Command, row.state, st.Principal, st.Queue, st.Priority.Or(), dash(st.Worker), st.Attempt, age, dash(st.Schedule))
	}
	return tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// exitOrDash is an exit code for a table, "-" when there is none.
func exitOrDash(code *int) string {
	if code == nil {
		return "-"
	}
	return strconv.Itoa(*code)
}

// writeCommands writes the command tree with the parameters of each.
func writeCommands(w io.Writer, cmds []modules.Command) error {
	for _, cmd := range cmds {
		if _, err := fmt.Fprintf(w, "%-16s %s\n", cmd.Name, cmd.Spec.Help); err != nil {
			return err
		}
		for _, line := range paramLines(cmd) {
			fmt.Fprintf(w, "    %s\n", line)
		}
	}
	return nil
}

func printCommandHelp(w io.Writer, cmd modules.Command) error {
	fmt.Fprintf(w, "Usage: winch run %s", cmd.Name)
	for _, n := range cmd.Spec.ParamNames() {
		p := cmd.Spec.Params[n]
		flag := "--" + strings.ReplaceAll(n, "_", "-") + "=" + strings.ToUpper(string(p.Type))
		if !p.Required {
			flag = "[" + flag + "]"
		}
		fmt.Fprintf(w, " %s", flag)
	}
	fmt.Fprintf(w, "\n\n%s\n", cmd.Spec.Help)
	if lines := paramLines(cmd); len(lines) > 0 {
		fmt.Fprintln(w, "\nParameters:")
		for _, l := range lines {
			fmt.Fprintf(w, "  %s\n", l)
		}
	}
	if cmd.Spec.Timeout > 0 {
		fmt.Fprintf(w, "\nTimeout: %s\n", time.Duration(cmd.Spec.Timeout))
	}
	return nil
}

// details writes a record as aligned "key: value" rows, leaving out empty
// values, with times in loc (winch audit JOB, winch schedule show).
type details struct {
	tw  *tabwriter.Writer
	loc *time.Location
}

func newDetails(w io.Writer, loc *time.Location) *details {
	return &details{tw: tabwriter.NewWriter(w, 0, 0, 2, ' ', 0), loc: loc}
}

func (d *details) row(k, v string) {
	if v != "" {
		fmt.Fprintf(d.tw, "%s:\t%s\n", k, v)
	}
}

func (d *details) at(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.In(d.loc).Format("2006-01-02 15:04:05 MST")
}

func (d *details) flush() error { return d.tw.Flush() }
