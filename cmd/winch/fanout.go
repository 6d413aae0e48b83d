package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/winchhq/winch/audit"

	"github.com/winchhq/winch/producer"
	"github.com/winchhq/winch/schema"
)

// exitFanoutFailed: a fan-out ended with children that did not succeed.
const exitFanoutFailed = 123

// FanoutFlags make `winch run` a fan-out: one child job per value.
type FanoutFlags struct {
	Each     string `placeholder:"[PARAM=]A,B,..." help:"Run the command once per value, as child jobs of one parent job, with the value in PARAM (default: the command's one required text parameter)."`
	EachFrom string `placeholder:"[PARAM=]FILE" help:"Like --each, with one value per line of FILE (- for standard input); empty lines are skipped. Up to 10000 values."`
	Parallel int    `default:"1" help:"With --each: how many children run at once, across all workers."`
	FailFast bool   `help:"With --each: at the first child that fails, cancel the others and start no more."`
}

// each reads the fan-out's values, or nil when there is no fan-out.
func (f FanoutFlags) each(spec schema.CommandSpec, stdin io.Reader) (*schema.Each, error) {
	switch {
	case f.Each != "" && f.EachFrom != "":
		return nil, usageError("--each and --each-from: give one of them")
	case f.Each == "" && f.EachFrom == "":
		if f.FailFast || f.Parallel != 1 {
			return nil, usageError("--parallel and --fail-fast apply to a fan-out: give --each or --each-from too")
		}
		return nil, nil
	case f.Parallel < 1 || f.Parallel > schema.MaxFanout:
		return nil, usageError("--parallel %d: want 1 to %d", f.Parallel, schema.MaxFanout)
	}
	if f.Each != "" {
		each, err := schema.ParseEach(spec, f.Each, nil)
		if err != nil {
			return nil, usageError("--each: %v", err)
		}
		return each, nil
	}
	param, path, named := strings.Cut(f.EachFrom, "=")
	if !named {
		param, path = "", f.EachFrom
	}
	r := stdin
	if path != "-" {
		file, err := os.Open(path)
		if err != nil {
			return nil, usageError("--each-from: %v", err)
		}
		defer file.Close()
		r = file
	}
	each, err := schema.ParseEach(spec, param, r)
	if err != nil {
		return nil, usageError("--each-from %s: %v", f.EachFrom, err)
	}
	return each, nil
}

// followFanout follows a fan-out parent and all its children: every
// child's output, each line prefixed with its value, and, at the end, a
// summary of the children that did not succeed. It exits 0 only if every
// child succeeded.
func followFanout(ctx context.Context, g *Globals, client *producer.Client, parent string, all bool) error {
	var failed []childResult
	end, err := client.FollowFanout(ctx, parent, func(fe producer.FanoutEvent) error {
		if g.jsonOutput() {
			return json.NewEncoder(g.stdio.Out).Encode(fe.Event)
		}
		if fe.Child >= 0 && fe.Terminal() {
			if fe.State != schema.StateSucceeded {
				failed = append(failed, childResult{fe.Value, fe.Event})
			}
		}
		if fe.Child < 0 {
			if all || fe.Terminal() {
				return writeEventText(g.stdio.Err, fe.Event)
			}
			return nil
		}
		prefix := "[" + fe.Value + "] "
		if all {
			return writePrefixed(g.stdio.Out, prefix, func(w io.Writer) error { return writeEventText(w, fe.Event) })
		}
		switch {
		case fe.Kind == schema.KindLog && fe.Stream == schema.Stderr:
			return writePrefixed(g.stdio.Err, prefix, func(w io.Writer) error { _, err := io.WriteString(w, fe.Data); return err })
		case fe.Kind == schema.KindLog:
			return writePrefixed(g.stdio.Out, prefix, func(w io.Writer) error { _, err := io.WriteString(w, fe.Data); return err })
		case fe.Kind == schema.KindWaiting:
			fmt.Fprintf(g.stdio.Err, "%swaiting: %s\n", prefix, waitingFor(fe.WaitingFor, fe.HeldBy))
		}
		return nil
	})
	if err != nil {
		return err
	}
	if !g.jsonOutput() {
		writeFanoutSummary(g.stdio.Err, end, failed)
	}
	if all {
		return nil // winch logs: the history was shown; how it ended is not an error
	}
	switch end.State {
	case schema.StateSucceeded:
		return nil
	case schema.StateCancelled:
		return &ExitError{Code: exitCancelled, Err: fmt.Errorf("fan-out %s %s", parent, end.Error)}
	}
	return &ExitError{Code: exitFanoutFailed, Err: fmt.Errorf("fan-out %s failed: %s", parent, end.Error)}
}

// childResult is how a child of a fan-out ended.
type childResult struct {
	value string
	ev    schema.Event
}

// writeFanoutSummary says how the children ended: a count, and a table of
// those that did not succeed, in the order of their values.
func writeFanoutSummary(w io.Writer, end schema.Event, failed []childResult) {
	if end.Fanout != nil {
		fmt.Fprintf(w, "winch: fan-out %s %s: %d of %d children succeeded (%s)\n", end.JobID, end.State, end.Fanout.Succeeded, end.Fanout.Total, end.Fanout.String())
	}
	if len(failed) == 0 {
		return
	}
	sort.Slice(failed, func(i, j int) bool { return failed[i].ev.JobID < failed[j].ev.JobID })
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "VALUE\tJOB\tSTATE\tEXIT\tERROR")
	for _, f := range failed {
		code := "-"
		if f.ev.ExitCode != nil {
			code = fmt.Sprint(*f.ev.ExitCode)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", f.value, f.ev.JobID, f.ev.State, code, dash(f.ev.Error))
	}
	_ = tw.Flush()
}

// writePrefixed writes what write writes, each line prefixed.
func writePrefixed(w io.Writer, prefix string, write func(io.Writer) error) error {
	var b strings.Builder
	if err := write(&b); err != nil {
		return err
	}
	var out strings.Builder
	for _, line := range strings.SplitAfter(b.String(), "\n") {
		if line == "" {
			continue
		}
		out.WriteString(prefix)
		out.WriteString(line)
		if !strings.HasSuffix(line, "\n") {
			out.WriteString("\n")
		}
	}
	_, err := io.WriteString(w, out.String())
	return err
}

// psRow is a line of winch ps: a job, and how it is shown.
type psRow struct {
	label, state string
	st           schema.JobState
}

// fanoutRows orders a listing so that each fan-out's children come right
// after their parent, indented and with their values, and the parent's
// state says how far it is ("running (3/4 done, 1 running)").
func fanoutRows(jobs []schema.JobState) []psRow {
	parents := map[string]schema.JobState{}
	for _, st := range jobs {
		if st.Fanout != nil {
			parents[st.JobID] = st
		}
	}
	children := map[string][]schema.JobState{}
	var rows []psRow
	for _, st := range jobs {
		if _, ok := parents[st.ParentID]; ok {
			children[st.ParentID] = append(children[st.ParentID], st)
		}
	}
	for _, st := range jobs {
		if _, ok := parents[st.ParentID]; ok {
			continue // under its parent
		}
		state := string(st.State)
		if st.Fanout != nil {
			state += " (" + st.Fanout.String() + ")"
		}
		rows = append(rows, psRow{label: st.JobID, state: state, st: st})
		kids := children[st.JobID]
		sort.Slice(kids, func(i, j int) bool {
			a, _ := producer.ChildIndex(st.JobID, kids[i].JobID)
			b, _ := producer.ChildIndex(st.JobID, kids[j].JobID)
			return a < b
		})
		for _, k := range kids {
			label := "  └ " + k.JobID
			if v, ok := k.Params[st.Fanout.Param].(string); ok {
				label += " [" + v + "]"
			}
			rows = append(rows, psRow{label: label, state: string(k.State), st: k})
		}
	}
	return rows
}

// auditChildren are the children of a fan-out parent in the audit store,
// in the order of their values; none for any other job.
func auditChildren(ctx context.Context, store *audit.Store, parent *audit.Job) ([]audit.Job, error) {
	if parent == nil || parent.Executor != "fanout" {
		return nil, nil
	}
	children, err := store.Jobs(ctx, audit.Filter{Parent: parent.JobID, Since: parent.CreatedAt.Add(-time.Second), Limit: schema.MaxFanout})
	if err != nil {
		return nil, err
	}
	sort.Slice(children, func(i, j int) bool {
		a, _ := producer.ChildIndex(parent.JobID, children[i].JobID)
		b, _ := producer.ChildIndex(parent.JobID, children[j].JobID)
		return a < b
	})
	return children, nil
}

// writeAuditChildren lists a fan-out's children with their states.
func writeAuditChildren(w io.Writer, children []audit.Job) error {
	if len(children) == 0 {
		return nil
	}
	fmt.Fprintf(w, "\nchildren (%d):\n", len(children))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "JOB\tSTATE\tEXIT\tPARAMS\tERROR")
	for _, c := range children {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", c.JobID, c.State, exitOrDash(c.ExitCode), formatParams(c.Params), dash(c.Error))
	}
	return tw.Flush()
}
