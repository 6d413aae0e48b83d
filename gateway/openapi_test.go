package gateway_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"

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

// Real answers of every route, good and bad, match what the document says
// of them.
func TestResponsesMatchTheDocument(t *testing.T) {
	t.Parallel()
	f := newFixture(t, options{})
	c := newChecker(t)
	id := f.submit(aliceToken, "core.echo", map[string]any{"text": "doc"})
	f.waitState(id, schema.StateSucceeded)
	sleeper := f.submit(aliceToken, "core.sleep", map[string]any{"seconds": 30})
	f.waitState(sleeper, schema.StateRunning)
	q := f.env.Queue
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
		{"GET", "/v1/audit/jobs", "/v1/audit/jobs", aliceToken, ""},
		{"GET", "/v1/audit/jobs/{id}", "/v1/audit/jobs/" + id, aliceToken, ""},
		{"GET", "/v1/stats/jobs-per-minute", "/v1/stats/jobs-per-minute", aliceToken, ""},
		{"GET", "/v1/stats/jobs-per-minute", "/v1/stats/jobs-per-minute?hours=0", aliceToken, ""},
	} {
		status, h, body := f.do(tc.method, tc.path, tc.token, tc.body)
		if status >= 500 && status != http.StatusServiceUnavailable {
			t.Errorf("%s %s: %d %s", tc.method, tc.path, status, body)
		}
		c.check(tc.method, tc.route, status, h.Get("Content-Type"), body)
	}
}
