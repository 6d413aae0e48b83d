package gateway_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/winchhq/winch/gateway"
	"github.com/winchhq/winch/internal/testenv"
	"github.com/winchhq/winch/schema"
)

// The curl lines, as a Go client: submit, follow live, read the
// job, find it in the list.
func TestSubmitFollowAndRead(t *testing.T) {
	t.Parallel()
	f := newFixture(t, options{})
	body := fmt.Sprintf(`{"command":"core.echo","params":{"text":"hi","stderr":"oops"},"queue":%q}`, f.env.Queue)
	var sub gateway.Submitted
	// curl -d sends application/x-www-form-urlencoded; the body is JSON all the same.
	h := f.must(http.StatusAccepted, "POST", "/v1/jobs", aliceToken, body, &sub, "Content-Type", "application/x-www-form-urlencoded")
	if sub.ID == "" || sub.Principal != "alice" || sub.State != schema.StateQueued || h.Get("Location") != "/v1/jobs/"+sub.ID ||
		sub.Links.Events != "/v1/jobs/"+sub.ID+"/events" || sub.Links.Cancel != "/v1/jobs/"+sub.ID+"/cancel" {
		t.Fatalf("submitted: %+v, Location %q", sub, h.Get("Location"))
	}
	events := f.follow(aliceToken, sub.ID)
	last := events[len(events)-1]
	if last.Kind != "finished" || last.Event.State != schema.StateSucceeded || output(events, schema.Stdout) != "hi\n" || output(events, schema.Stderr) != "oops\n" {
		t.Fatalf("events: %s, last %+v", kinds(events), last.Event)
	}
	for i := 1; i < len(events); i++ {
		if events[i].ID <= events[i-1].ID {
			t.Fatalf("event ids do not increase: %d then %d", events[i-1].ID, events[i].ID)
		}
	}
	var job gateway.Job
	f.must(http.StatusOK, "GET", "/v1/jobs/"+sub.ID, bobToken, "", &job)
	if job.State != schema.StateSucceeded || job.Principal != "alice" || job.ExitCode == nil || *job.ExitCode != 0 || job.Command != "core.echo" {
		t.Fatalf("job: %+v", job)
	}
	// Replaying a finished job's events gives them all and ends.
	if again := f.follow(bobToken, sub.ID); kinds(again) != kinds(events) {
		t.Fatalf("replay: %s, want %s", kinds(again), kinds(events))
	}
	for _, tc := range []struct {
		query string
		want  bool
	}{
		{"?state=finished&queue=" + f.env.Queue, true},
		{"?state=succeeded&principal=alice&command=core.echo", true},
		{"?state=active&queue=" + f.env.Queue, false},
		{"?principal=bob&queue=" + f.env.Queue, false},
	} {
		var list gateway.JobList
		f.must(http.StatusOK, "GET", "/v1/jobs"+tc.query, aliceToken, "", &list)
		found := false
		for _, j := range list.Jobs {
			found = found || j.JobID == sub.ID
		}
		if found != tc.want {
			t.Errorf("list %s: found %v, want %v", tc.query, found, tc.want)
		}
	}
	f.must(http.StatusBadRequest, "GET", "/v1/jobs?state=done", aliceToken, "", nil)
	f.must(http.StatusBadRequest, "GET", "/v1/jobs?limit=0", aliceToken, "", nil)
	f.must(http.StatusNotFound, "GET", "/v1/jobs/no-such-job", aliceToken, "", nil)
	f.must(http.StatusNotFound, "GET", "/v1/jobs/NOT.A.JOB", aliceToken, "", nil)
	f.must(http.StatusNotFound, "GET", "/v1/jobs/no-such-job/events", aliceToken, "", nil)
	var who map[string]any
	f.must(http.StatusOK, "GET", "/v1/whoami", danaToken, "", &who)
	if who["principal"] != "dana" || fmt.Sprint(who["roles"]) != "[dba]" {
		t.Fatalf("whoami: %v", who)
	}
}

// Every route refuses a request without credentials, or with credentials
// it does not know, before doing anything.
func TestEveryRouteAuthenticates(t *testing.T) {
	t.Parallel()
	var logs testenv.LockedBuffer
	f := newFixture(t, options{noWorker: true, edit: func(c *gateway.Config) {
		c.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}})
	for _, r := range documentedRoutes(t) {
		if r == "GET /v1/openapi.json" {
			continue
		}
		method, path, _ := strings.Cut(r, " ")
		path = strings.NewReplacer("{id}", "some-job", "{name}", "core.echo").Replace(path)
		for _, auth := range []struct{ name, header string }{
			{"no token", ""},
			{"unknown token", "Bearer not-a-token"},
			{"token with another scheme", "Basic " + aliceToken},
			{"an unverifiable JWT", "Bearer aaa.bbb.ccc"},
		} {
			req, _ := http.NewRequestWithContext(t.Context(), method, f.url+path, strings.NewReader(`{"command":"core.echo","params":{"text":"x"}}`))
			if auth.header != "" {
				req.Header.Set("Authorization", auth.header)
			}
			resp, err := f.http.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			data, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("Content-Type") != "application/problem+json" ||
				resp.Header.Get("WWW-Authenticate") == "" || strings.Contains(string(data), aliceToken) {
				t.Errorf("%s with %s: %d %s %s", r, auth.name, resp.StatusCode, resp.Header.Get("Content-Type"), data)
			}
		}
	}
	if n := f.queued(); n != 0 {
		t.Fatalf("%d requests were published by unauthenticated calls", n)
	}
	// Tokens are never logged, accepted or not.
	f.must(http.StatusOK, "GET", "/v1/whoami", aliceToken, "", nil)
	f.must(http.StatusAccepted, "POST", "/v1/jobs", aliceToken, fmt.Sprintf(`{"command":"core.echo","params":{"text":"x"},"queue":%q}`, f.env.Queue), nil)
	if out := logs.String(); !strings.Contains(out, "unauthenticated request") || strings.Contains(out, aliceToken) || strings.Contains(out, "not-a-token") || strings.Contains(out, "aaa.bbb.ccc") {
		t.Fatalf("the gateway's log:\n%s", out)
	}
}

// queued is how many requests the test's queue holds.
func (f *fixture) queued() uint64 { return f.env.Pending() }

// A principal without the role a command declares gets a 403 naming the
// job, whose rejection the workers recorded; one with it runs it.
func TestWrongRoleIsForbiddenOnTheRecord(t *testing.T) {
	t.Parallel()
	f := newFixture(t, options{})
	body := fmt.Sprintf(`{"command":"gw.privileged","queue":%q}`, f.env.Queue)
	var p gateway.Problem
	f.must(http.StatusForbidden, "POST", "/v1/jobs", aliceToken, body, &p)
	if p.JobID == "" || !strings.Contains(p.Detail, "principal alice may not run gw.privileged: it needs one of the roles dba") {
		t.Fatalf("problem: %+v", p)
	}
	st := f.waitState(p.JobID, schema.StateRejected)
	if st.Principal != "alice" || st.Reason != schema.ReasonForbidden {
		t.Fatalf("state: %+v", st)
	}
	events := f.follow(aliceToken, p.JobID)
	if kinds(events) != "rejected" || events[0].Event.Principal != "alice" {
		t.Fatalf("events: %s %+v", kinds(events), events)
	}
	var sub gateway.Submitted
	f.must(http.StatusAccepted, "POST", "/v1/jobs", danaToken, body, &sub)
	events = f.follow(danaToken, sub.ID)
	if output(events, schema.Stdout) != "allowed\n" {
		t.Fatalf("dana's run: %s", kinds(events))
	}
}

// The same Idempotency-Key from the same principal names the same job, and
// a retried POST runs it once; another principal's key is another job.
func TestIdempotentSubmit(t *testing.T) {
	t.Parallel()
	f := newFixture(t, options{})
	body := fmt.Sprintf(`{"command":"core.echo","params":{"text":"once"},"queue":%q}`, f.env.Queue)
	var first, second, bobs gateway.Submitted
	f.must(http.StatusAccepted, "POST", "/v1/jobs", aliceToken, body, &first, "Idempotency-Key", "deploy-42")
	f.must(http.StatusAccepted, "POST", "/v1/jobs", aliceToken, body, &second, "Idempotency-Key", "deploy-42")
	f.must(http.StatusAccepted, "POST", "/v1/jobs", bobToken, body, &bobs, "Idempotency-Key", "deploy-42")
	if first.ID != second.ID || first.Duplicate || !second.Duplicate || bobs.ID == first.ID || bobs.Duplicate {
		t.Fatalf("first %+v, second %+v, bob's %+v", first, second, bobs)
	}
	events := f.follow(aliceToken, first.ID)
	if output(events, schema.Stdout) != "once\n" {
		t.Fatalf("events: %s", kinds(events))
	}
	f.follow(bobToken, bobs.ID)
	// A retry after the run still names the job and runs nothing.
	var third gateway.Submitted
	f.must(http.StatusAccepted, "POST", "/v1/jobs", aliceToken, body, &third, "Idempotency-Key", "deploy-42")
	if third.ID != first.ID || !third.Duplicate || third.State != schema.StateSucceeded {
		t.Fatalf("retry after the run: %+v", third)
	}
	accepted := 0
	for _, ev := range f.follow(aliceToken, first.ID) {
		if ev.Kind == "accepted" {
			accepted++
		}
	}
	if accepted != 1 {
		t.Fatalf("the job was accepted %d times", accepted)
	}
	f.must(http.StatusBadRequest, "POST", "/v1/jobs", aliceToken, body, nil, "Idempotency-Key", strings.Repeat("k", 300))
}

// A follower whose connection drops resumes with Last-Event-ID and gets
// every event once: no gap, no repeat.
func TestEventsResumeAfterDisconnect(t *testing.T) {
	t.Parallel()
	f := newFixture(t, options{})
	id := f.submit(aliceToken, "gw.chatty", map[string]any{"count": 300, "pause": 0.005})
	var got []sseEvent
	var lastID uint64
	for round := 0; ; round++ {
		if round > 50 {
			t.Fatal("the job did not end")
		}
		ctx, cancel := context.WithCancel(t.Context())
		resp, err := f.openEvents(ctx, aliceToken, id, lastID)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("resume after %d: %d", lastID, resp.StatusCode)
		}
		n, ended := 0, false
		_ = readSSE(t, resp.Body, func(ev sseEvent) bool {
			got = append(got, ev)
			lastID = ev.ID
			ended = ev.Event.Terminal()
			n++
			return n < 25 // then drop the connection mid-stream
		})
		cancel() // the forced disconnect
		resp.Body.Close()
		if ended {
			break
		}
	}
	var lines []string
	for i, ev := range got {
		if i > 0 && (ev.ID <= got[i-1].ID || ev.Event.Seq != got[i-1].Event.Seq+1) {
			t.Fatalf("event %d: id %d seq %d after id %d seq %d", i, ev.ID, ev.Event.Seq, got[i-1].ID, got[i-1].Event.Seq)
		}
		if ev.Event.Kind == schema.KindLog && ev.Event.Stream == schema.Stdout {
			lines = append(lines, strings.Split(strings.TrimSuffix(ev.Event.Data, "\n"), "\n")...)
		}
	}
	if len(lines) != 300 || lines[0] != "line 1" || lines[299] != "line 300" || got[0].Event.Seq != 1 {
		t.Fatalf("%d stdout lines over %d events (first seq %d)", len(lines), len(got), got[0].Event.Seq)
	}
	for i, l := range lines {
		if l != fmt.Sprintf("line %d", i+1) {
			t.Fatalf("line %d is %q", i+1, l)
		}
	}
	// Resuming after the last event ends at once.
	resp, err := f.openEvents(t.Context(), aliceToken, id, lastID)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	_ = readSSE(t, resp.Body, func(sseEvent) bool { n++; return true })
	resp.Body.Close()
	if n != 0 {
		t.Fatalf("%d events after the last", n)
	}
	f.must(http.StatusBadRequest, "GET", "/v1/jobs/"+id+"/events", aliceToken, "", nil, "Last-Event-ID", "seven")
}

// A caller that goes away while following never stops the job.
func TestDisconnectDoesNotStopTheJob(t *testing.T) {
	t.Parallel()
	f := newFixture(t, options{})
	id := f.submit(aliceToken, "core.sleep", map[string]any{"seconds": 1})
	ctx, cancel := context.WithCancel(t.Context())
	resp, err := f.openEvents(ctx, aliceToken, id, 0)
	if err != nil {
		t.Fatal(err)
	}
	_ = readSSE(t, resp.Body, func(ev sseEvent) bool { return ev.Kind != "started" })
	cancel()
	resp.Body.Close()
	f.waitState(id, schema.StateSucceeded)
}

// Only a job's own principal, or an admin, cancels it; a refusal is a 403
// and is on the job's record.
func TestCancelOwnAndOthersJobs(t *testing.T) {
	t.Parallel()
	f := newFixture(t, options{})
	id := f.submit(aliceToken, "core.sleep", map[string]any{"seconds": 30})
	f.waitState(id, schema.StateRunning)
	var p gateway.Problem
	f.must(http.StatusForbidden, "POST", "/v1/jobs/"+id+"/cancel", bobToken, "", &p)
	if p.JobID != id || !strings.Contains(p.Detail, "bob may not cancel job "+id+" of alice") {
		t.Fatalf("bob's cancel: %+v", p)
	}
	var res gateway.CancelResult
	f.must(http.StatusOK, "POST", "/v1/jobs/"+id+"/cancel?wait=10s", aliceToken, "", &res)
	if res.Outcome != schema.OutcomeStopping || res.State.State != schema.StateCancelled {
		t.Fatalf("alice's cancel: %+v", res)
	}
	events := f.follow(aliceToken, id)
	refused := false
	for _, ev := range events {
		refused = refused || (ev.Kind == string(schema.KindCancelRefused) && ev.Event.Principal == "bob")
	}
	if !refused || events[len(events)-1].Event.State != schema.StateCancelled {
		// cancel_refused may follow the end in stream order; look at all.
		all := f.replay(id)
		for _, ev := range all {
			refused = refused || (ev.Kind == string(schema.KindCancelRefused) && ev.Event.Principal == "bob")
		}
		if !refused {
			t.Fatalf("no cancel_refused by bob in %s", kinds(all))
		}
	}
	f.must(http.StatusConflict, "POST", "/v1/jobs/"+id+"/cancel", aliceToken, "", nil)
	// An admin cancels anyone's job; a queued one never starts.
	bobs := f.submit(bobToken, "core.sleep", map[string]any{"seconds": 30})
	f.waitState(bobs, schema.StateRunning)
	f.must(http.StatusOK, "POST", "/v1/jobs/"+bobs+"/cancel?wait=10s", adaToken, "", &res)
	if res.State.State != schema.StateCancelled || res.State.CancelledBy != "ada" {
		t.Fatalf("ada's cancel: %+v", res.State)
	}
	f.must(http.StatusNotFound, "POST", "/v1/jobs/no-such-job/cancel", aliceToken, "", nil)
	f.must(http.StatusBadRequest, "POST", "/v1/jobs/"+id+"/cancel?wait=forever", aliceToken, "", nil)
}

// replay reads every event of a job in the events stream, whatever comes
// after its end.
func (f *fixture) replay(id string) []sseEvent {
	f.t.Helper()
	var out []sseEvent
	_, err := f.env.Client.FollowAfter(f.t.Context(), id, 0, 1, func(ev schema.Event, seq uint64) error {
		out = append(out, sseEvent{ID: seq, Kind: string(ev.Kind), Event: ev})
		return nil
	})
	if err != nil {
		f.t.Fatal(err)
	}
	return out
}

// Bad bodies are 4xx problems that say what is wrong, never a 500, and
// publish nothing.
func TestBadBodiesPublishNothing(t *testing.T) {
	t.Parallel()
	f := newFixture(t, options{noWorker: true, limits: gateway.Limits{MaxBody: 4096, MaxParams: 3}})
	q := f.env.Queue
	for _, tc := range []struct {
		name, body string
		status     int
		want       string
	}{
		{"empty", "", 400, "the body is empty"},
		{"not JSON", "command=core.echo", 400, "not valid JSON"},
		{"truncated", `{"command":"core.echo"`, 400, "ends in the middle"},
		{"an array", `[1,2]`, 400, "must be a JSON object"},
		{"unknown field", `{"command":"core.echo","text":"hi"}`, 400, `unknown field "text": a submit takes command, params, queue, timeout`},
		{"a principal", `{"command":"core.echo","principal":"ada"}`, 400, `"principal" is not a field`},
		{"a name in another case", `{"Command":"core.echo","params":{"text":"a"}}`, 400, `unknown field "Command"`},
		{"command of the wrong type", `{"command":7}`, 400, `"command" must be a string, not number`},
		{"params of the wrong type", `{"command":"core.echo","params":["hi"]}`, 400, `"params" must be an object of parameters by name`},
		{"two values", `{"command":"core.echo","params":{"text":"a"}} {}`, 400, "more than one JSON value"},
		{"no command", `{"params":{}}`, 400, `"command" is required`},
		{"too many params", `{"command":"core.env","params":{"a":1,"b":2,"c":3,"d":4}}`, 400, "more than the 3"},
		{"too big", `{"command":"core.echo","params":{"text":"` + strings.Repeat("x", 5000) + `"}}`, 413, "larger than 4096 bytes"},
		{"bad timeout", `{"command":"core.echo","params":{"text":"a"},"timeout":"soon"}`, 400, `"timeout" "soon"`},
		{"unknown command", `{"command":"core.ecko","params":{"text":"a"}}`, 422, `did you mean "core.echo"`},
		{"bad params", `{"command":"core.echo","params":{"text":5,"colour":"red"}}`, 422, "invalid parameters for core.echo: colour: not a parameter of this command; it takes stderr, text; text: want a string, got the number 5"},
		{"missing param", `{"command":"core.echo"}`, 422, "text: required"},
		{"bad queue", `{"command":"core.echo","params":{"text":"a"},"queue":"Not A Queue"}`, 422, `queue "Not A Queue" is not valid`},
		{"fan-out over a number", `{"command":"core.env","each":{"param":"count","values":["1","2"]}}`, 422, `"count" is of type int: a fan-out's values are text`},
		{"parallel without each", `{"command":"core.echo","params":{"text":"a"},"parallel":2}`, 400, `"parallel" and "fail_fast" apply to a fan-out`},
		{"each of the wrong type", `{"command":"core.echo","each":["a"]}`, 400, `"each" must be an object like`},
		{"an unknown field in each", `{"command":"core.echo","each":{"param":"text","values":["a"],"max":2}}`, 400, `unknown field "max" in "each": each takes param, values`},
	} {
		body := tc.body
		if strings.HasPrefix(body, `{"command":"core`) && !strings.Contains(body, `"queue"`) {
			body = strings.Replace(body, `{"command"`, fmt.Sprintf(`{"queue":%q,"command"`, q), 1)
		}
		before := f.queued()
		status, h, data := f.do("POST", "/v1/jobs", aliceToken, body)
		if f.queued() != before {
			t.Errorf("%s: published a request", tc.name)
		}
		var p gateway.Problem
		_ = json.Unmarshal(data, &p)
		if status != tc.status || h.Get("Content-Type") != "application/problem+json" || p.Status != tc.status || !strings.Contains(p.Detail, tc.want) {
			t.Errorf("%s: %d %s %s; want %d with %q", tc.name, status, h.Get("Content-Type"), data, tc.status, tc.want)
		}
	}
	var p gateway.Problem
	f.must(http.StatusUnprocessableEntity, "POST", "/v1/jobs", aliceToken, fmt.Sprintf(`{"queue":%q,"command":"core.echo","params":{"text":5}}`, q), &p)
	if len(p.Errors) != 1 || p.Errors[0].Param != "text" {
		t.Fatalf("param errors: %+v", p.Errors)
	}
	if n := f.queued(); n != 0 {
		t.Fatalf("bad bodies published %d requests", n)
	}
	f.must(http.StatusMethodNotAllowed, "DELETE", "/v1/jobs", aliceToken, "", nil)
	f.must(http.StatusNotFound, "GET", "/v1/nothing", aliceToken, "", nil)
}

// Commands come with their parameters as JSON Schema; modules as the
// registry has them.
func TestCommandsAndModules(t *testing.T) {
	t.Parallel()
	f := newFixture(t, options{noWorker: true})
	var list struct{ Commands []gateway.Command }
	f.must(http.StatusOK, "GET", "/v1/commands", aliceToken, "", &list)
	byName := map[string]gateway.Command{}
	for _, c := range list.Commands {
		byName[c.Name] = c
	}
	form, echo := byName["gw.form"], byName["core.echo"]
	props, _ := form.Params["properties"].(map[string]any)
	level, _ := props["level"].(map[string]any)
	password, _ := props["password"].(map[string]any)
	count, _ := props["count"].(map[string]any)
	if fmt.Sprint(echo.Params["required"]) != "[text]" || fmt.Sprint(level["enum"]) != "[low high]" || level["default"] != "low" ||
		password["format"] != "password" || password["writeOnly"] != true || count["type"] != "integer" || count["maximum"] != 9.0 ||
		form.Commit != strings.Repeat("a", 40) || fmt.Sprint(byName["gw.privileged"].Roles) != "[dba]" {
		t.Fatalf("commands: echo %+v, form %+v", echo, form)
	}
	var one gateway.Command
	f.must(http.StatusOK, "GET", "/v1/commands/gw.chatty", aliceToken, "", &one)
	if one.Help == "" || one.Module != "gw" {
		t.Fatalf("gw.chatty: %+v", one)
	}
	var p gateway.Problem
	f.must(http.StatusNotFound, "GET", "/v1/commands/gw.chaty", aliceToken, "", &p)
	if !strings.Contains(p.Detail, `did you mean "gw.chatty"`) {
		t.Fatalf("unknown command: %+v", p)
	}
	var mods struct{ Modules []gateway.Module }
	f.must(http.StatusOK, "GET", "/v1/modules", aliceToken, "", &mods)
	if len(mods.Modules) != 1 || mods.Modules[0].Name != "gw" || fmt.Sprint(mods.Modules[0].Commands) != "[chatty form privileged]" {
		t.Fatalf("modules: %+v", mods)
	}
}

// One principal may follow only so many streams at once; others are not
// held back by it.
func TestStreamsPerPrincipalAreLimited(t *testing.T) {
	t.Parallel()
	f := newFixture(t, options{limits: gateway.Limits{StreamsPerPrincipal: 1}})
	id := f.submit(aliceToken, "core.sleep", map[string]any{"seconds": 30})
	resp, err := f.openEvents(t.Context(), aliceToken, id, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	f.must(http.StatusTooManyRequests, "GET", "/v1/jobs/"+id+"/events", aliceToken, "", nil)
	second, err := f.openEvents(t.Context(), bobToken, id, 0)
	if err != nil || second.StatusCode != http.StatusOK {
		t.Fatalf("bob's stream: %v %v", second.StatusCode, err)
	}
	second.Body.Close()
	resp.Body.Close()
	// Once closed, the slot is free again.
	if !eventually(5*time.Second, func() bool {
		r, err := f.openEvents(t.Context(), aliceToken, id, 0)
		if err != nil {
			return false
		}
		r.Body.Close()
		return r.StatusCode == http.StatusOK
	}) {
		t.Fatal("alice's slot was not freed")
	}
	f.must(http.StatusOK, "POST", "/v1/jobs/"+id+"/cancel", aliceToken, "", nil)
}

// A reader that stops reading holds back no one: while it is stalled,
// other requests are answered and a fast follower of the same job gets
// every event, in order, to the end; the stalled stream is cut off after
// the write timeout, and the job runs to its end.
func TestSlowReaderDoesNotStallTheGateway(t *testing.T) {
	t.Parallel()
	const writeTimeout = 30 * time.Second
	f := newFixture(t, options{limits: gateway.Limits{WriteTimeout: writeTimeout, StreamsPerPrincipal: 1}})
	const lines = 2_000_000 // far more output than the socket buffers hold
	id := f.submit(aliceToken, "core.seq", map[string]any{"count": lines})
	conn, err := net.Dial("tcp", strings.TrimPrefix(f.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// A tiny receive window, never read: the gateway's writes block.
	_ = conn.(*net.TCPConn).SetReadBuffer(1024)
	fmt.Fprintf(conn, "GET /v1/jobs/%s/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n", id, aliceToken)
	aliceStreaming := func() bool { // alice's one slot is taken by the stalled stream
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		resp, err := f.openEvents(ctx, aliceToken, id, 0)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusTooManyRequests
	}
	// Read the status line, then never read again.
	_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	if status, err := bufio.NewReaderSize(conn, 16).ReadString('\n'); err != nil || !strings.HasPrefix(status, "HTTP/1.1 200") {
		t.Fatalf("the stalled stream: %q %v", status, err)
	}
	if !aliceStreaming() {
		t.Fatal("the stalled stream does not hold alice's one slot")
	}
	began := time.Now()
	for range 5 {
		f.must(http.StatusOK, "GET", "/v1/jobs/"+id, bobToken, "", nil)
	}
	if d := time.Since(began); d > 3*time.Second {
		t.Fatalf("other requests took %s while a reader stalled", d)
	}
	// A fast follower of the same job reads it all while alice's stalls.
	events := f.follow(bobToken, id)
	if last := events[len(events)-1]; last.Kind != "finished" || last.Event.State != schema.StateSucceeded {
		t.Fatalf("the fast follower's last event: %+v", last.Event)
	}
	for i, ev := range events {
		if ev.Event.Seq != i+1 {
			t.Fatalf("the fast follower's event %d has seq %d: events were lost or repeated", i, ev.Event.Seq)
		}
	}
	out := output(events, schema.Stdout)
	if n := strings.Count(out, "\n"); n != lines || !strings.HasPrefix(out, "1\n2\n") || !strings.HasSuffix(out, fmt.Sprintf("\n%d\n", lines)) {
		t.Fatalf("the fast follower got %d lines of output, want %d", n, lines)
	}
	if time.Since(began) >= writeTimeout || !aliceStreaming() {
		t.Fatalf("the stalled stream was cut off before the fast follower was done (%s): the test proves nothing", time.Since(began))
	}
	// The stalled stream is cut off: alice's one slot is free again.
	if !eventually(writeTimeout+10*time.Second, func() bool { return !aliceStreaming() }) {
		t.Fatal("the stalled stream still holds alice's slot")
	}
}

func eventually(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if cond() {
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return cond()
}

// The chart's counts come from the job states when there is no audit store.
func TestJobsPerMinuteWithoutAudit(t *testing.T) {
	t.Parallel()
	f := newFixture(t, options{})
	id := f.submit(aliceToken, "core.echo", map[string]any{"text": "x"})
	f.waitState(id, schema.StateSucceeded)
	var out struct {
		Source  string
		Buckets []struct {
			State string
			Count int
		}
	}
	f.must(http.StatusOK, "GET", "/v1/stats/jobs-per-minute?hours=1", aliceToken, "", &out)
	n := 0
	for _, b := range out.Buckets {
		if b.State == "succeeded" {
			n += b.Count
		}
	}
	if out.Source != "nats" || n < 1 {
		t.Fatalf("per minute: %+v", out)
	}
	f.must(http.StatusBadRequest, "GET", "/v1/stats/jobs-per-minute?hours=100", aliceToken, "", nil)
	var p gateway.Problem
	f.must(http.StatusServiceUnavailable, "GET", "/v1/audit/jobs", aliceToken, "", &p)
	if !strings.Contains(p.Detail, "WINCH_CLICKHOUSE_DSN") {
		t.Fatalf("audit without a store: %+v", p)
	}
}

// Followers of one job share the gateway's one reading of it; each gets
// every event once and in order, whether it came early, late, or after
// the gateway let go of what it missed (a small StreamBuffer).
func TestManyFollowersOfOneJob(t *testing.T) {
	t.Parallel()
	for _, buffer := range []int{0, 2048} {
		t.Run(fmt.Sprintf("buffer %d", buffer), func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, options{limits: gateway.Limits{StreamBuffer: buffer}})
			id := f.submit(aliceToken, "gw.chatty", map[string]any{"count": 200, "pause": 0.005})
			results := make(chan string, 12)
			for i := range 12 {
				go func() {
					time.Sleep(time.Duration(i) * 100 * time.Millisecond)
					events := f.followQuiet(aliceToken, id)
					var b strings.Builder
					for j, ev := range events {
						if j > 0 && ev.Event.Seq != events[j-1].Event.Seq+1 {
							results <- fmt.Sprintf("follower %d: seq %d after %d", i, ev.Event.Seq, events[j-1].Event.Seq)
							return
						}
						b.WriteString(ev.Event.Data)
					}
					if events[len(events)-1].Event.State != schema.StateSucceeded || strings.Count(b.String(), "line ") != 200 {
						results <- fmt.Sprintf("follower %d: %d lines, ends %s", i, strings.Count(b.String(), "line "), events[len(events)-1].Kind)
						return
					}
					results <- ""
				}()
			}
			for range 12 {
				if r := <-results; r != "" {
					t.Error(r)
				}
			}
		})
	}
}

// followQuiet is follow for other goroutines: errors come back empty.
func (f *fixture) followQuiet(token, id string) []sseEvent {
	ctx, cancel := context.WithTimeout(f.t.Context(), 60*time.Second)
	defer cancel()
	resp, err := f.openEvents(ctx, token, id, 0)
	if err != nil {
		return []sseEvent{{}}
	}
	defer resp.Body.Close()
	var out []sseEvent
	_ = readSSE(f.t, resp.Body, func(ev sseEvent) bool { out = append(out, ev); return true })
	if len(out) == 0 {
		return []sseEvent{{}}
	}
	return out
}

// POST /v1/jobs with each is a fan-out: the parent ends when its children
// have, and each child is a job of its own that names its parent.
func TestSubmitFanout(t *testing.T) {
	t.Parallel()
	f := newFixture(t, options{})
	body := fmt.Sprintf(`{"command":"core.echo","each":{"param":"text","values":["a","b","c"]},"parallel":2,"queue":%q}`, f.env.Queue)
	var sub gateway.Submitted
	f.must(http.StatusAccepted, "POST", "/v1/jobs", aliceToken, body, &sub)
	events := f.follow(aliceToken, sub.ID)
	if last := events[len(events)-1]; last.Kind != "finished" || last.Event.State != schema.StateSucceeded || last.Event.Fanout == nil || last.Event.Fanout.Succeeded != 3 {
		t.Fatalf("parent: %s, last %+v", kinds(events), last.Event)
	}
	var child gateway.Job
	f.must(http.StatusOK, "GET", "/v1/jobs/"+schema.FanoutChildID(sub.ID, 2), aliceToken, "", &child)
	if child.State != schema.StateSucceeded || child.ParentID != sub.ID || child.Params["text"] != "c" {
		t.Fatalf("child: %+v", child)
	}
}

// A submit takes what `winch run` takes beyond the command: a priority,
// webhooks for the end, and a later time (at, in), checked as the CLI
// checks its flags; what it refuses publishes nothing.
func TestSubmitPriorityNotifyAndLater(t *testing.T) {
	t.Parallel()
	f := newFixture(t, options{})
	q := f.env.Queue
	var sub gateway.Submitted
	f.must(http.StatusAccepted, "POST", "/v1/jobs", aliceToken, fmt.Sprintf(`{"command":"core.echo","params":{"text":"hi"},"queue":%q,"priority":"high",
		"notify":{"urls":["https://example.com/hook"],"on":["failed"],"format":"slack"}}`, q), &sub)
	if len(sub.Warnings) != 1 || !strings.Contains(sub.Warnings[0], "no notifier is running: job "+sub.ID+"'s webhooks wait") {
		t.Errorf("warnings: %q", sub.Warnings)
	}
	st := f.waitState(sub.ID, schema.StateSucceeded)
	if st.Priority != schema.PriorityHigh || len(st.Notify) != 1 || st.Notify[0].URL != "https://example.com/hook" ||
		fmt.Sprint(st.Notify[0].On) != "[failed]" || st.Notify[0].Format != schema.NotifySlack {
		t.Fatalf("priority %q, notify %+v", st.Priority, st.Notify)
	}

	// in: a one-off schedule; the job does not exist until it fires.
	began := time.Now()
	var later gateway.Submitted
	h := f.must(http.StatusAccepted, "POST", "/v1/jobs", aliceToken, fmt.Sprintf(`{"command":"core.echo","params":{"text":"later"},"queue":%q,"in":"2s"}`, q), &later)
	if later.ID == "" || later.At == nil || later.Schedule == "" || later.State != "" || len(later.Warnings) != 0 || h.Get("Location") != "/v1/jobs/"+later.ID {
		t.Fatalf("delayed: %+v", later)
	}
	if d := later.At.Sub(began); d < time.Second || d > 3*time.Second {
		t.Fatalf("runs at %s, %v after the submit; want about 2s", later.At, d)
	}
	f.must(http.StatusNotFound, "GET", "/v1/jobs/"+later.ID, aliceToken, "", nil)
	st = f.waitState(later.ID, schema.StateSucceeded)
	if st.Principal != "alice" || st.Schedule != later.Schedule || st.CreatedAt.Before(*later.At) {
		t.Fatalf("the delayed job: %+v (at %s)", st, later.At)
	}

	past := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)
	for _, tc := range []struct {
		name, body string
		status     int
		want       string
		header     []string
	}{
		{"bad priority", `"priority":"urgent"`, 400, `"priority": priority "urgent" is not one of high, normal, low`, nil},
		{"priority of the wrong type", `"priority":1`, 400, `"priority" must be a string`, nil},
		{"an at in the past", `"at":"` + past + `"`, 422, `"at" ` + past + ` is not in the future`, nil},
		{"an at that is not a time", `"at":"tomorrow"`, 400, `"at" "tomorrow" is not a time`, nil},
		{"a negative in", `"in":"-5m"`, 400, `"in" "-5m": want a duration ahead`, nil},
		{"at and in", `"at":"2099-01-01T00:00:00Z","in":"1h"`, 400, `give "at" or "in", not both`, nil},
		{"in with a key", `"in":"1h"`, 400, "Idempotency-Key header does not apply to a delayed run", []string{"Idempotency-Key", "k1"}},
		{"notify without urls", `"notify":{"on":["failed"]}`, 400, `"notify" needs "urls"`, nil},
		{"notify to a bad url", `"notify":{"urls":["ftp://x"]}`, 400, `notify url "ftp://x" is not an http:// or https:// URL`, nil},
		{"notify on a state that is not an end", `"notify":{"urls":["https://x.example"],"on":["running"]}`, 400, `"running" is not a state a job ends in`, nil},
		{"notify in an unknown format", `"notify":{"urls":["https://x.example"],"format":"xml"}`, 400, `notify format "xml": want json or slack`, nil},
		{"notify with an unknown field", `"notify":{"urls":["https://x.example"],"email":"a@b"}`, 400, `unknown field "email" in "notify": notify takes urls, on, format`, nil},
	} {
		body := fmt.Sprintf(`{"command":"core.echo","params":{"text":"a"},"queue":%q,%s}`, q, tc.body)
		before, schedules := f.queued(), f.schedulesOf(q)
		status, _, data := f.do("POST", "/v1/jobs", aliceToken, body, tc.header...)
		var p gateway.Problem
		_ = json.Unmarshal(data, &p)
		if status != tc.status || !strings.Contains(p.Detail, tc.want) {
			t.Errorf("%s: %d %s; want %d with %q", tc.name, status, data, tc.status, tc.want)
		}
		// (The delayed run's schedule, fired, may leave the list meanwhile.)
		if f.queued() > before || f.schedulesOf(q) > schedules {
			t.Errorf("%s: published something", tc.name)
		}
	}
}

// schedulesOf counts the schedules whose runs go to queue.
func (f *fixture) schedulesOf(queue string) int {
	f.t.Helper()
	list, err := f.env.Client.Schedules(f.t.Context())
	if err != nil {
		f.t.Fatal(err)
	}
	n := 0
	for _, s := range list {
		if s.Request.Queue == queue {
			n++
		}
	}
	return n
}

// The console cannot be framed or made to load anything from elsewhere,
// and another site's page gets nothing from the API: no CORS header
// answers a preflight or a cross-origin request, and without the token,
// which no cookie carries, a forged POST is a 401.
func TestConsoleHeadersAndNoCORS(t *testing.T) {
	t.Parallel()
	f := newFixture(t, options{noWorker: true})
	status, h, body := f.do("GET", "/", "", "")
	csp := h.Get("Content-Security-Policy")
	if status != http.StatusOK || !strings.Contains(string(body), "app.js") {
		t.Fatalf("the console: %d %s", status, body)
	}
	for _, want := range []string{"default-src 'self'", "script-src 'self'", "connect-src 'self'", "style-src 'self'", "frame-ancestors 'none'", "form-action 'none'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("Content-Security-Policy %q lacks %q", csp, want)
		}
	}
	if strings.Contains(csp, "unsafe-inline") || strings.Contains(csp, "unsafe-eval") || strings.Contains(csp, "*") {
		t.Errorf("Content-Security-Policy %q allows more than the gateway's own", csp)
	}
	if h.Get("X-Frame-Options") != "DENY" || h.Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("X-Frame-Options %q, X-Content-Type-Options %q", h.Get("X-Frame-Options"), h.Get("X-Content-Type-Options"))
	}
	noCORS := func(what string, h http.Header) {
		for k := range h {
			if strings.HasPrefix(strings.ToLower(k), "access-control-") {
				t.Errorf("%s: answered with %s: %s", what, k, h.Get(k))
			}
		}
	}
	const evil = "https://evil.example"
	for _, path := range []string{"/v1/jobs", "/v1/whoami", "/"} {
		status, h, _ := f.do("OPTIONS", path, "", "", "Origin", evil, "Access-Control-Request-Method", "POST",
			"Access-Control-Request-Headers", "authorization, content-type")
		noCORS("a preflight of "+path, h)
		if status < 400 {
			t.Errorf("a preflight of %s: %d", path, status)
		}
	}
	status, h, _ = f.do("GET", "/v1/whoami", aliceToken, "", "Origin", evil)
	noCORS("a cross-origin GET", h)
	if status != http.StatusOK {
		t.Errorf("a cross-origin GET with a token: %d", status)
	}
	before := f.queued()
	status, h, _ = f.do("POST", "/v1/jobs", "", fmt.Sprintf(`{"command":"core.echo","params":{"text":"x"},"queue":%q}`, f.env.Queue),
		"Origin", evil, "Content-Type", "text/plain")
	noCORS("a cross-origin POST", h)
	if status != http.StatusUnauthorized || f.queued() != before {
		t.Errorf("a forged POST without the token: %d, published %v", status, f.queued() != before)
	}
}

// Gateways keep nothing but open streams, so a client may go to any of
// them: a POST retried on another gateway with the same Idempotency-Key
// names the same job, which runs once; an event stream dropped on one
// resumes on another from its Last-Event-ID, with nothing lost or repeated.
func TestTwoGateways(t *testing.T) {
	t.Parallel()
	a := newFixture(t, options{})
	b := a.anotherGateway()
	body := fmt.Sprintf(`{"command":"gw.chatty","params":{"count":100,"pause":0.02},"queue":%q}`, a.env.Queue)
	var first, retry gateway.Submitted
	a.must(http.StatusAccepted, "POST", "/v1/jobs", aliceToken, body, &first, "Idempotency-Key", "two-gateways")
	b.must(http.StatusAccepted, "POST", "/v1/jobs", aliceToken, body, &retry, "Idempotency-Key", "two-gateways")
	if retry.ID != first.ID || first.Duplicate || !retry.Duplicate {
		t.Fatalf("on A %+v, retried on B %+v", first, retry)
	}
	// Follow on A, drop the connection, resume on B.
	var got []sseEvent
	ctx, cancel := context.WithCancel(t.Context())
	resp, err := a.openEvents(ctx, aliceToken, first.ID, 0)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("events on A: %v %v", resp, err)
	}
	_ = readSSE(t, resp.Body, func(ev sseEvent) bool { got = append(got, ev); return len(got) < 10 })
	cancel()
	resp.Body.Close()
	if got[len(got)-1].Event.Terminal() {
		t.Fatal("the job ended before the stream was dropped: the test proves nothing")
	}
	resp, err = b.openEvents(t.Context(), aliceToken, first.ID, got[len(got)-1].ID)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("events on B: %v %v", resp, err)
	}
	_ = readSSE(t, resp.Body, func(ev sseEvent) bool { got = append(got, ev); return true })
	resp.Body.Close()
	accepted := 0
	for i, ev := range got {
		if ev.Event.Seq != i+1 {
			t.Fatalf("event %d has seq %d: lost or repeated across the gateways", i, ev.Event.Seq)
		}
		if ev.Kind == string(schema.KindAccepted) {
			accepted++
		}
	}
	if last := got[len(got)-1]; last.Kind != "finished" || last.Event.State != schema.StateSucceeded || accepted != 1 {
		t.Fatalf("last %+v, accepted %d times", last.Event, accepted)
	}
	if out := output(got, schema.Stdout); strings.Count(out, "\n") != 100 || !strings.HasSuffix(out, "line 100\n") {
		t.Fatalf("stdout across the gateways: %q", out)
	}
}
