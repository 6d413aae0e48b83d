package gateway_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/winchhq/winch/audit"
	"github.com/winchhq/winch/broker"
	"github.com/winchhq/winch/gateway"
	"github.com/winchhq/winch/internal/jobtest"
	"github.com/winchhq/winch/internal/testenv"
	"github.com/winchhq/winch/modules"
	"github.com/winchhq/winch/producer"
	"github.com/winchhq/winch/schema"
	"github.com/winchhq/winch/worker"
	"github.com/winchhq/winch/worker/process"
)

var (
	natsURL string
	ch      *testenv.ClickHouse
	chErr   error
)

func TestMain(m *testing.M) {
	os.Exit(testenv.WithNATSAndClickHouse(func(url string, c *testenv.ClickHouse, err error) int {
		natsURL, ch, chErr = url, c, err
		return m.Run()
	}))
}

// The tokens of the tests' principals. alice and bob have no roles; dana
// has dba (on the gateway and on the workers); ada is admin on both.
const (
	aliceToken = "alice-token-0123456789"
	bobToken   = "bob-token-0123456789"
	danaToken  = "dana-token-0123456789"
	adaToken   = "ada-token-0123456789"
)

func testTokens() []gateway.Token {
	return []gateway.Token{
		{SHA256: gateway.HashToken(aliceToken), Principal: "alice"},
		{SHA256: gateway.HashToken(bobToken), Principal: "bob"},
		{SHA256: gateway.HashToken(danaToken), Principal: "dana", Roles: []string{"dba"}},
		{SHA256: gateway.HashToken(adaToken), Principal: "ada", Roles: []string{"admin"}},
	}
}

var workerRoles = worker.Roles{"dana": {"dba"}, "ada": {"admin"}}

// fixture is one test's gateway, over a worker on the test's own queue.
type fixture struct {
	t     *testing.T
	env   *jobtest.Env
	gw    *gateway.Server
	url   string
	store *audit.Store
	http  *http.Client
}

type options struct {
	audit    bool
	noWorker bool
	limits   gateway.Limits
	edit     func(*gateway.Config)
}

var dbSeq atomic.Int64

func newFixture(t *testing.T, o options) *fixture {
	t.Helper()
	cat := testCatalog(t)
	env := jobtest.New(t, natsURL, func(cfg *worker.Config) {
		cfg.Catalog = cat
		cfg.Executor = &process.Executor{}
		cfg.Roles = workerRoles
	})
	register(t, env)
	f := &fixture{t: t, env: env, http: &http.Client{Timeout: 60 * time.Second}}
	if !o.noWorker {
		env.StartWorker(worker.Config{Concurrency: 4})
	}
	cfg := gateway.Config{Addr: "127.0.0.1:0", Tokens: testTokens(), Client: env.Client, Logger: env.Logger(), Limits: o.limits}
	if o.audit {
		f.store = auditStore(t)
		cfg.Audit = f.store
		sink, err := audit.NewSink(env.NC, f.store, audit.SinkConfig{Consumer: "sink-" + env.Queue, MaxWait: 100 * time.Millisecond,
			AckWait: 2 * time.Second, Logger: env.Logger()})
		if err != nil {
			t.Fatal(err)
		}
		if err := sink.Start(t.Context()); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = sink.Stop(context.Background()) })
	}
	if o.edit != nil {
		o.edit(&cfg)
	}
	gw, err := gateway.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := gw.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = gw.Stop(context.Background()) })
	f.gw, f.url = gw, gw.URL()
	return f
}

// gwCommit is the gw module's commit, in the registry and the workers'
// catalog, as a synced module has one.
var gwCommit = strings.Repeat("a", 40)

// testManifest is the gw test module's manifest.
func testManifest(t *testing.T) *modules.Manifest {
	t.Helper()
	data, err := os.ReadFile("testdata/winch.yaml")
	if err != nil {
		t.Fatal(err)
	}
	m, err := modules.ParseManifest("testdata/winch.yaml", data)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// testCatalog is core and the gw test module at gwCommit.
func testCatalog(t *testing.T) *modules.Catalog {
	t.Helper()
	m := testManifest(t)
	cat, err := modules.CatalogOf([]modules.Entry{{Name: "core", Manifest: modules.Core()}, {Name: "gw", Commit: gwCommit, Manifest: m}})
	if err != nil {
		t.Fatal(err)
	}
	return cat
}

// anotherGateway is a second gateway in front of the same NATS, on a
// connection of its own, as another process would be.
func (f *fixture) anotherGateway() *fixture {
	f.t.Helper()
	nc, err := broker.Connect(f.t.Context(), broker.ConnectConfig{URL: natsURL})
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(nc.Close)
	client, err := producer.New(f.t.Context(), nc, nil)
	if err != nil {
		f.t.Fatal(err)
	}
	gw, err := gateway.New(gateway.Config{Addr: "127.0.0.1:0", Tokens: testTokens(), Client: client, Logger: f.env.Logger()})
	if err != nil {
		f.t.Fatal(err)
	}
	if err := gw.Start(f.t.Context()); err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { _ = gw.Stop(context.Background()) })
	g := *f
	g.gw, g.url = gw, gw.URL()
	return &g
}

// register puts the gw test module in the registry, as `winch modules add`
// would, so that the gateway's catalog has it.
func register(t *testing.T, env *jobtest.Env) {
	t.Helper()
	m := testManifest(t)
	kv, err := env.JS.KeyValue(t.Context(), broker.ModulesBucket)
	if err != nil {
		t.Fatal(err)
	}
	entry, _ := json.Marshal(modules.Entry{Name: "gw", URL: "https://example.invalid/gw.git", Ref: "main", Kind: "branch",
		Commit: gwCommit, SyncedAt: time.Now().UTC(), Manifest: m})
	if _, err := kv.Create(t.Context(), "gw", entry); err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
		t.Fatal(err)
	}
}

// auditStore is a migrated audit store in a database of the test's own.
func auditStore(t *testing.T) *audit.Store {
	t.Helper()
	if chErr != nil {
		testenv.Missing(t, "clickhouse", chErr)
	}
	db := fmt.Sprintf("gw%d_%s", dbSeq.Add(1), strings.ToLower(strings.NewReplacer("/", "_", " ", "_", "-", "_").Replace(t.Name())))
	s, err := audit.Open(t.Context(), ch.DSN(db[:min(len(db), 60)]), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	if _, err := s.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	return s
}

// do sends a request with token (none when empty) and returns the status
// and body.
func (f *fixture) do(method, path, token, body string, header ...string) (int, http.Header, []byte) {
	f.t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(f.t.Context(), method, f.url+path, r)
	if err != nil {
		f.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := f.http.Do(req)
	if err != nil {
		f.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		f.t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, data
}

// must sends a request and fails the test unless the status is want; it
// decodes the body into out, if given.
func (f *fixture) must(want int, method, path, token, body string, out any, header ...string) http.Header {
	f.t.Helper()
	status, h, data := f.do(method, path, token, body, header...)
	if status != want {
		f.t.Fatalf("%s %s: status %d, want %d: %s", method, path, status, want, data)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			f.t.Fatalf("%s %s: decode %s: %v", method, path, data, err)
		}
	}
	return h
}

// submit posts a job on the test's queue as token and returns its id.
func (f *fixture) submit(token, command string, params map[string]any, header ...string) string {
	f.t.Helper()
	body, _ := json.Marshal(map[string]any{"command": command, "params": params, "queue": f.env.Queue})
	var out gateway.Submitted
	f.must(http.StatusAccepted, "POST", "/v1/jobs", token, string(body), &out, header...)
	return out.ID
}

// submitBody posts body as token and returns the job's id.
func (f *fixture) submitBody(token, body string) string {
	f.t.Helper()
	var out gateway.Submitted
	f.must(http.StatusAccepted, "POST", "/v1/jobs", token, body, &out)
	return out.ID
}

// sseEvent is one server-sent event as read off the wire.
type sseEvent struct {
	ID    uint64
	Kind  string
	Event schema.Event
}

// openEvents opens the job's event stream (after lastID, when not 0).
func (f *fixture) openEvents(ctx context.Context, token, id string, lastID uint64) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", f.url+"/v1/jobs/"+id+"/events", nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if lastID > 0 {
		req.Header.Set("Last-Event-ID", strconv.FormatUint(lastID, 10))
	}
	return f.http.Do(req)
}

// readSSE reads events from body until it ends or fn returns false.
func readSSE(t *testing.T, body io.Reader, fn func(sseEvent) bool) error {
	t.Helper()
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	var ev sseEvent
	var data string
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if data != "" {
				if err := json.Unmarshal([]byte(data), &ev.Event); err != nil {
					t.Fatalf("event data %q: %v", data, err)
				}
				if !fn(ev) {
					return nil
				}
			}
			ev, data = sseEvent{}, ""
		case strings.HasPrefix(line, "id: "):
			ev.ID, _ = strconv.ParseUint(line[4:], 10, 64)
		case strings.HasPrefix(line, "event: "):
			ev.Kind = line[7:]
		case strings.HasPrefix(line, "data: "):
			data = line[6:]
		}
	}
	return sc.Err()
}

// follow reads the job's whole event stream.
func (f *fixture) follow(token, id string) []sseEvent {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(f.t.Context(), 60*time.Second)
	defer cancel()
	resp, err := f.openEvents(ctx, token, id, 0)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		data, _ := io.ReadAll(resp.Body)
		f.t.Fatalf("events of %s: %d %s", id, resp.StatusCode, data)
	}
	var out []sseEvent
	if err := readSSE(f.t, resp.Body, func(ev sseEvent) bool { out = append(out, ev); return true }); err != nil {
		f.t.Fatal(err)
	}
	return out
}

func output(events []sseEvent, stream schema.Stream) string {
	var b strings.Builder
	for _, ev := range events {
		if ev.Event.Kind == schema.KindLog && ev.Event.Stream == stream {
			b.WriteString(ev.Event.Data)
		}
	}
	return b.String()
}

func kinds(events []sseEvent) string {
	var k []string
	for _, ev := range events {
		k = append(k, ev.Kind)
	}
	return strings.Join(k, ",")
}

// waitState waits until the job is in state.
func (f *fixture) waitState(id string, state schema.State) schema.JobState {
	f.t.Helper()
	var st schema.JobState
	ok := jobtest.Eventually(30*time.Second, func() bool {
		var err error
		st, err = f.env.Client.Status(f.t.Context(), id)
		return err == nil && st.State == state
	})
	if !ok {
		f.t.Fatalf("job %s is %s, want %s", id, st.State, state)
	}
	return st
}
