package gateway_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/winchhq/winch/gateway"
	"github.com/winchhq/winch/internal/jobtest"
	"github.com/winchhq/winch/schema"
)

// The document is written by hand (see README: the gateway's validation is
// the CLI's, which a generated document would not describe); this test
// keeps it honest.

type openAPIDoc struct {
	OpenAPI string                                `json:"openapi"`
	Paths   map[string]map[string]json.RawMessage `json:"paths"`
}

func loadDoc(t *testing.T) (openAPIDoc, []byte) {
	t.Helper()
	data, err := os.ReadFile("openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	var doc openAPIDoc
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	return doc, data
}

func documentedRoutes(t *testing.T) []string {
	doc, _ := loadDoc(t)
	var out []string
	for path, ops := range doc.Paths {
		for method := range ops {
			out = append(out, strings.ToUpper(method)+" "+path)
		}
	}
	slices.Sort(out)
	return out
}

// Every route the gateway serves is documented, and only those.
func TestOpenAPIDocumentsEveryRouteAndOnlyThose(t *testing.T) {
	t.Parallel()
	f := newFixture(t, options{noWorker: true})
	served := f.gw.Routes()
	slices.Sort(served)
	if doc := documentedRoutes(t); !slices.Equal(doc, served) {
		t.Fatalf("documented:\n%s\nserved:\n%s", strings.Join(doc, "\n"), strings.Join(served, "\n"))
	}
	// The document the gateway serves is the file, and it is 3.1.
	var served31 openAPIDoc
	f.must(http.StatusOK, "GET", "/v1/openapi.json", "", "", &served31)
	if served31.OpenAPI != "3.1.0" || len(served31.Paths) == 0 {
		t.Fatalf("served document: %+v", served31)
	}
	// Every documented operation has a 401 (but the document's own) and
	// every $ref resolves.
	doc, data := loadDoc(t)
	for path, ops := range doc.Paths {
		for method, op := range ops {
			if path != "/v1/openapi.json" && !bytes.Contains(op, []byte(`"401"`)) {
				t.Errorf("%s %s documents no 401", method, path)
			}
		}
	}
	// The body's fields are the decoder's.
	var full struct {
		Components struct {
			Schemas map[string]struct {
				Properties map[string]any `json:"properties"`
			} `json:"schemas"`
		} `json:"components"`
	}
	_ = json.Unmarshal(data, &full)
	documented := slices.Sorted(maps.Keys(full.Components.Schemas["SubmitRequest"].Properties))
	if decoded := slices.Sorted(slices.Values(gateway.SubmitFields)); !slices.Equal(documented, decoded) {
		t.Errorf("SubmitRequest documents %v; the decoder takes %v", documented, decoded)
	}
	c := compiler(t, data)
	for _, ref := range refs(data) {
		if _, err := c.Compile("openapi.json" + ref); err != nil && strings.Contains(ref, "/schemas/") {
			t.Errorf("$ref %s: %v", ref, err)
		}
	}
}

func refs(data []byte) []string {
	var out []string
	for _, part := range strings.Split(string(data), `"$ref": "`)[1:] {
		out = append(out, part[:strings.Index(part, `"`)])
	}
	return out
}

func compiler(t *testing.T, data []byte) *jsonschema.Compiler {
	t.Helper()
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	if err := c.AddResource("openapi.json", doc); err != nil {
		t.Fatal(err)
	}
	return c
}

// checker validates a response body against the schema the document gives
// for its route and status.
type checker struct {
	t    *testing.T
	doc  map[string]any
	comp *jsonschema.Compiler
}

func newChecker(t *testing.T) *checker {
	_, data := loadDoc(t)
	var doc map[string]any
	_ = json.Unmarshal(data, &doc)
	return &checker{t: t, doc: doc, comp: compiler(t, data)}
}

func pointer(parts ...string) string {
	for i, p := range parts {
		parts[i] = strings.ReplaceAll(strings.ReplaceAll(p, "~", "~0"), "/", "~1")
	}
	return "#/" + strings.Join(parts, "/")
}

func (c *checker) check(method, route string, status int, contentType string, body []byte) {
	c.t.Helper()
	op, _ := c.doc["paths"].(map[string]any)[route].(map[string]any)[strings.ToLower(method)].(map[string]any)
	resp, ok := op["responses"].(map[string]any)[strconv.Itoa(status)].(map[string]any)
	if !ok {
		c.t.Errorf("%s %s: status %d is not documented", method, route, status)
		return
	}
	loc := pointer("paths", route, strings.ToLower(method), "responses", strconv.Itoa(status))
	if ref, ok := resp["$ref"].(string); ok {
		loc = ref
		name := ref[strings.LastIndex(ref, "/")+1:]
		resp = c.doc["components"].(map[string]any)["responses"].(map[string]any)[name].(map[string]any)
	}
	content, _ := resp["content"].(map[string]any)
	mediaType := strings.TrimSpace(strings.Split(contentType, ";")[0])
	if _, ok := content[mediaType]; !ok {
		c.t.Errorf("%s %s %d: content type %q is not documented", method, route, status, contentType)
		return
	}
	if mediaType == "text/event-stream" {
		c.checkEvents(method, route, body)
		return
	}
	sch, err := c.comp.Compile("openapi.json" + loc + "/content/" + strings.ReplaceAll(mediaType, "/", "~1") + "/schema")
	if err != nil {
		c.t.Fatalf("%s %s %d: %v", method, route, status, err)
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(body))
	if err != nil {
		c.t.Fatalf("%s %s %d: body %s: %v", method, route, status, body, err)
	}
	if err := sch.Validate(v); err != nil {
		c.t.Errorf("%s %s %d: the body does not match the document: %v\n%s", method, route, status, err, body)
	}
}

// checkEvents validates each data: frame of an event stream against the
// document's Event, and that it has no field the document does not name
// (Event admits more, for newer workers; this gateway's must be known).
func (c *checker) checkEvents(method, route string, body []byte) {
	c.t.Helper()
	sch, err := c.comp.Compile("openapi.json#/components/schemas/Event")
	if err != nil {
		c.t.Fatal(err)
	}
	props := c.doc["components"].(map[string]any)["schemas"].(map[string]any)["Event"].(map[string]any)["properties"].(map[string]any)
	frames := 0
	for _, line := range strings.Split(string(body), "\n") {
		data, ok := strings.CutPrefix(line, "data: ")
		if !ok {
			continue
		}
		frames++
		v, err := jsonschema.UnmarshalJSON(strings.NewReader(data))
		if err != nil {
			c.t.Fatalf("%s %s: frame %s: %v", method, route, data, err)
		}
		if err := sch.Validate(v); err != nil {
			c.t.Errorf("%s %s: an event does not match the document's Event: %v\n%s", method, route, err, data)
		}
		for k := range v.(map[string]any) {
			if _, ok := props[k]; !ok {
				c.t.Errorf("%s %s: the event's field %q is not in the document's Event", method, route, k)
			}
		}
	}
	if frames == 0 {
		c.t.Errorf("%s %s: no data: frames in %q", method, route, body)
	}
}

// documentedQuery are the names of the query parameters the document gives
// an operation.
func (c *checker) documentedQuery(method, route string) []string {
	op := c.doc["paths"].(map[string]any)[route].(map[string]any)[strings.ToLower(method)].(map[string]any)
	params, _ := op["parameters"].([]any)
	out := []string{}
	for _, p := range params {
		pm := p.(map[string]any)
		if ref, ok := pm["$ref"].(string); ok {
			pm = c.doc["components"].(map[string]any)["parameters"].(map[string]any)[ref[strings.LastIndex(ref, "/")+1:]].(map[string]any)
		}
		if pm["in"] == "query" {
			out = append(out, pm["name"].(string))
		}
	}
	slices.Sort(out)
	return out
}

// Each route's documented query parameters are those it takes: a query
// parameter it does not take is a 400 that lists the ones it does, and
// that list is the document's.
func TestDocumentedQueryParametersAreTheAccepted(t *testing.T) {
	t.Parallel()
	f := newFixture(t, options{noWorker: true})
	c := newChecker(t)
	for _, r := range f.gw.Routes() {
		method, route, _ := strings.Cut(r, " ")
		if route == "/v1/openapi.json" {
			continue
		}
		path := strings.NewReplacer("{id}", "no-such-job", "{name}", "core.echo").Replace(route)
		status, h, body := f.do(method, path+"?no-such-parameter=1", aliceToken, "")
		c.check(method, route, status, h.Get("Content-Type"), body)
		var p struct {
			Detail  string
			Allowed []string
		}
		_ = json.Unmarshal(body, &p)
		if status != http.StatusBadRequest || !strings.Contains(p.Detail, `unknown query parameter "no-such-parameter"`) {
			t.Errorf("%s with an unknown query parameter: %d %s", r, status, body)
			continue
		}
		slices.Sort(p.Allowed)
		if doc := c.documentedQuery(method, route); !slices.Equal(doc, orNone(p.Allowed)) {
			t.Errorf("%s takes %v; the document says %v", r, p.Allowed, doc)
		}
	}
}

func orNone(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// Real answers of every route, good and bad, match what the document says
// of them.
func TestResponsesMatchTheDocument(t *testing.T) {
	t.Parallel()
	f := newFixture(t, options{audit: true})
	c := newChecker(t)
	// Without an audit store, its routes are 503 and the chart counts
	// from NATS.
	bare := newFixture(t, options{noWorker: true})
	for _, path := range []string{"/v1/audit/jobs", "/v1/audit/jobs/no-such-job", "/v1/stats/jobs-per-minute"} {
		route := strings.Replace(path, "no-such-job", "{id}", 1)
		status, h, body := bare.do("GET", path, aliceToken, "")
		c.check("GET", route, status, h.Get("Content-Type"), body)
		if want := http.StatusServiceUnavailable; strings.HasPrefix(path, "/v1/audit") && status != want {
			t.Errorf("%s without an audit store: %d, want %d", path, status, want)
		}
		if strings.HasPrefix(path, "/v1/stats") && (status != http.StatusOK || !strings.Contains(string(body), `"source":"nats"`)) {
			t.Errorf("%s without an audit store: %d %s", path, status, body)
		}
	}
	id := f.submit(aliceToken, "core.echo", map[string]any{"text": "doc"})
	f.waitState(id, schema.StateSucceeded)
	sleeper := f.submit(aliceToken, "core.sleep", map[string]any{"seconds": 30})
	f.waitState(sleeper, schema.StateRunning)
	q := f.env.Queue
	// Events of every kind the document names that a test can make: a
	// fan-out (progress, parent_id), a job with priority and webhooks.
	var fan gateway.Submitted
	f.must(http.StatusAccepted, "POST", "/v1/jobs", aliceToken,
		fmt.Sprintf(`{"command":"core.echo","each":{"param":"text","values":["a","b"]},"queue":%q}`, q), &fan)
	f.follow(aliceToken, fan.ID)
	rich := f.submitBody(aliceToken, fmt.Sprintf(`{"command":"core.echo","params":{"text":"x"},"priority":"low","notify":{"urls":["https://example.com/h"]},"queue":%q}`, q))
	f.follow(aliceToken, rich)
	// The audit store has the job before its routes are asked.
	if !jobtest.Eventually(30*time.Second, func() bool {
		var one gateway.AuditedJob
		status, _, body := f.do("GET", "/v1/audit/jobs/"+id, aliceToken, "")
		return status == http.StatusOK && json.Unmarshal(body, &one) == nil && one.Job != nil && len(one.Events) > 0 && one.Events[len(one.Events)-1].Terminal()
	}) {
		t.Fatalf("job %s is not in the audit store", id)
	}
	for _, tc := range []struct {
		method, route, path, token, body string
	}{
		{"GET", "/v1/whoami", "/v1/whoami", aliceToken, ""},
		{"GET", "/v1/whoami", "/v1/whoami", "", ""},
		{"GET", "/v1/commands", "/v1/commands", aliceToken, ""},
		{"GET", "/v1/commands/{name}", "/v1/commands/gw.form", aliceToken, ""},
		{"GET", "/v1/commands/{name}", "/v1/commands/gw.nope", aliceToken, ""},
		{"GET", "/v1/modules", "/v1/modules", aliceToken, ""},
		{"POST", "/v1/jobs", "/v1/jobs", aliceToken, fmt.Sprintf(`{"command":"core.echo","params":{"text":"x"},"queue":%q}`, q)},
		{"POST", "/v1/jobs", "/v1/jobs", aliceToken, `{"command":`},
		{"POST", "/v1/jobs", "/v1/jobs", aliceToken, fmt.Sprintf(`{"command":"core.echo","params":{"text":1},"queue":%q}`, q)},
		{"POST", "/v1/jobs", "/v1/jobs", aliceToken, fmt.Sprintf(`{"command":"gw.privileged","queue":%q}`, q)},
		{"GET", "/v1/jobs", "/v1/jobs", aliceToken, ""},
		{"GET", "/v1/jobs", "/v1/jobs?state=bogus", aliceToken, ""},
		{"GET", "/v1/jobs/{id}", "/v1/jobs/" + id, aliceToken, ""},
		{"GET", "/v1/jobs/{id}", "/v1/jobs/nope", aliceToken, ""},
		{"GET", "/v1/jobs/{id}/events", "/v1/jobs/" + id + "/events", aliceToken, ""},
		{"GET", "/v1/jobs/{id}/events", "/v1/jobs/nope/events", aliceToken, ""},
		{"POST", "/v1/jobs/{id}/cancel", "/v1/jobs/" + sleeper + "/cancel", bobToken, ""},
		{"POST", "/v1/jobs/{id}/cancel", "/v1/jobs/" + sleeper + "/cancel?wait=10s", aliceToken, ""},
		{"POST", "/v1/jobs/{id}/cancel", "/v1/jobs/" + id + "/cancel", aliceToken, ""},
		{"POST", "/v1/jobs", "/v1/jobs", aliceToken, fmt.Sprintf(`{"command":"core.echo","params":{"text":"x"},"in":"1h","queue":%q}`, q)},
		{"POST", "/v1/jobs", "/v1/jobs", aliceToken, fmt.Sprintf(`{"command":"core.echo","params":{"text":"x"},"at":"2000-01-01T00:00:00Z","queue":%q}`, q)},
		{"GET", "/v1/jobs/{id}/events", "/v1/jobs/" + fan.ID + "/events", aliceToken, ""},
		{"GET", "/v1/jobs/{id}/events", "/v1/jobs/" + schema.FanoutChildID(fan.ID, 0) + "/events", aliceToken, ""},
		{"GET", "/v1/jobs/{id}/events", "/v1/jobs/" + rich + "/events", aliceToken, ""},
		{"GET", "/v1/jobs/{id}", "/v1/jobs/" + rich, aliceToken, ""},
		{"GET", "/v1/audit/jobs", "/v1/audit/jobs?queue=" + q, aliceToken, ""},
		{"GET", "/v1/audit/jobs", "/v1/audit/jobs?status=bogus", aliceToken, ""},
		{"GET", "/v1/audit/jobs", "/v1/audit/jobs?principal=alice", bobToken, ""},
		{"GET", "/v1/audit/jobs/{id}", "/v1/audit/jobs/" + id, aliceToken, ""},
		{"GET", "/v1/audit/jobs/{id}", "/v1/audit/jobs/" + id, bobToken, ""},
		{"GET", "/v1/audit/jobs/{id}", "/v1/audit/jobs/no-such-job", aliceToken, ""},
		{"GET", "/v1/stats/jobs-per-minute", "/v1/stats/jobs-per-minute", aliceToken, ""},
		{"GET", "/v1/stats/jobs-per-minute", "/v1/stats/jobs-per-minute?hours=0", aliceToken, ""},
	} {
		status, h, body := f.do(tc.method, tc.path, tc.token, tc.body)
		if status >= 500 && status != http.StatusServiceUnavailable {
			t.Errorf("%s %s: %d %s", tc.method, tc.path, status, body)
		}
		c.check(tc.method, tc.route, status, h.Get("Content-Type"), body)
		if tc.route == "/v1/stats/jobs-per-minute" && status == http.StatusOK && !strings.Contains(string(body), `"source":"audit"`) {
			t.Errorf("the chart with an audit store: %s", body)
		}
	}
}
