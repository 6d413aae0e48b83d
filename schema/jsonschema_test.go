package schema_test

import (
	"bytes"
	"encoding/json"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/winchhq/winch/schema"
)

func compile(t testing.TB, name string, data []byte) *jsonschema.Schema {
	t.Helper()
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	if err := c.AddResource(name, doc); err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile(name)
	if err != nil {
		t.Fatalf("compile %s: %v", name, err)
	}
	return s
}

func instance(t *testing.T, data []byte) any {
	t.Helper()
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// jsonFields lists the JSON names of a struct's fields.
func jsonFields(typ reflect.Type) []string {
	var out []string
	for f := range typ.Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		out = append(out, name)
	}
	sort.Strings(out)
	return out
}

func schemaFields(t *testing.T, data []byte) []string {
	var doc struct {
		Properties map[string]any `json:"properties"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	var out []string
	for k := range doc.Properties {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// The JSON Schema files and the Go types describe the same documents: the
// same fields, and what one accepts the other accepts.
func TestJSONSchemaMatchesGoTypes(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name string
		data []byte
		typ  reflect.Type
	}{
		{"request.schema.json", schema.RequestJSONSchema, reflect.TypeFor[schema.Request]()},
		{"event.schema.json", schema.EventJSONSchema, reflect.TypeFor[schema.Event]()},
		{"control.schema.json", schema.ControlJSONSchema, reflect.TypeFor[schema.ControlRequest]()},
	} {
		if got, want := schemaFields(t, tt.data), jsonFields(tt.typ); !slices.Equal(got, want) {
			t.Errorf("%s has properties %v; the Go type has %v", tt.name, got, want)
		}
	}
}

func TestRequestJSONSchema(t *testing.T) {
	t.Parallel()
	s := compile(t, "request.schema.json", schema.RequestJSONSchema)
	full := validRequest()
	full.Params = map[string]any{"text": "hi", "n": 3, "on": true, "list": []string{"a"}}
	full.Timeout = schema.Duration(90 * time.Second)
	full.IdempotencyKey = "nightly"
	full.Notify = []schema.NotifyTarget{{URL: "https://hooks.example/w", On: []schema.State{schema.StateFailed}, Format: "slack"}}
	good := encode(t, full)
	if err := s.Validate(instance(t, good)); err != nil {
		t.Fatalf("schema rejects a request the Go code wrote: %v\n%s", err, good)
	}
	if _, err := schema.DecodeRequest(good); err != nil {
		t.Fatalf("DecodeRequest rejects it: %v", err)
	}
	// Documents that both must refuse.
	for name, mutate := range map[string]func(m map[string]any){
		"missing id":       func(m map[string]any) { delete(m, "id") },
		"bad command":      func(m map[string]any) { m["command"] = "echo" },
		"unknown field":    func(m map[string]any) { m["comand"] = "core.echo" },
		"version 2":        func(m map[string]any) { m["version"] = 2 },
		"dotted principal": func(m map[string]any) { m["principal"] = "a.b" },
		"bad timeout":      func(m map[string]any) { m["timeout"] = "soon" },
		"bad time":         func(m map[string]any) { m["created_at"] = "yesterday" },
		"notify ftp":       func(m map[string]any) { m["notify"] = []any{map[string]any{"url": "ftp://x/"}} },
		"notify on queued": func(m map[string]any) {
			m["notify"] = []any{map[string]any{"url": "https://x/", "on": []any{"queued"}}}
		},
	} {
		var m map[string]any
		_ = json.Unmarshal(good, &m)
		mutate(m)
		doc := encode(t, m)
		if err := s.Validate(instance(t, doc)); err == nil {
			t.Errorf("%s: the schema accepts %s", name, doc)
		}
		if _, err := schema.DecodeRequest(doc); err == nil {
			t.Errorf("%s: DecodeRequest accepts %s", name, doc)
		}
	}
}

func TestEventJSONSchema(t *testing.T) {
	t.Parallel()
	s := compile(t, "event.schema.json", schema.EventJSONSchema)
	code := 3
	for _, ev := range []schema.Event{
		{JobID: "j1", Attempt: 1, Seq: 1, Time: time.Now(), Kind: schema.KindAccepted, State: schema.StateRunning,
			Command: "core.echo", Principal: "alice", Queue: "default", Params: map[string]any{"text": "hi"}, Worker: "w1"},
		{JobID: "j1", Attempt: 1, Seq: 2, Time: time.Now(), Kind: schema.KindLog, Stream: schema.Stderr, Data: "oops\n"},
		{JobID: "j1", Attempt: 1, Seq: 3, Time: time.Now(), Kind: schema.KindFinished, State: schema.StateFailed, ExitCode: &code},
	} {
		data := encode(t, ev)
		if err := s.Validate(instance(t, data)); err != nil {
			t.Errorf("schema rejects %s: %v", data, err)
		}
		back, err := schema.DecodeEvent(data)
		if err != nil || back.MsgID() != ev.MsgID() {
			t.Errorf("DecodeEvent(%s) = %+v, %v", data, back, err)
		}
	}
	// A newer worker's event, with a field this build does not know, still
	// decodes: readers must not lose a job's end to a version skew.
	newer := []byte(`{"job_id":"j1","attempt":1,"seq":9,"time":"2026-01-01T00:00:00Z","kind":"finished","state":"succeeded","added_later":true}`)
	if ev, err := schema.DecodeEvent(newer); err != nil || !ev.Terminal() {
		t.Errorf("an event with an unknown field: %+v, %v", ev, err)
	}
	bad := []byte(`{"job_id":"j1","attempt":1,"seq":1,"time":"2026-01-01T00:00:00Z","kind":"exploded"}`)
	if err := s.Validate(instance(t, bad)); err == nil {
		t.Error("schema accepts an unknown kind")
	}
}

// A control request is decoded exactly as its schema says: what one
// accepts the other accepts.
func TestControlJSONSchema(t *testing.T) {
	t.Parallel()
	s := compile(t, "control.schema.json", schema.ControlJSONSchema)
	good := encode(t, schema.ControlRequest{Version: 1, ID: "c1", Action: schema.ActionCancel, JobID: "j1", Principal: "alice", CreatedAt: time.Now()})
	for _, tt := range []struct {
		name string
		data []byte
		ok   bool
	}{
		{"from Go", good, true},
		{"unknown action", []byte(`{"version":1,"id":"c1","action":"pause","job_id":"j1","principal":"alice","created_at":"2026-01-01T00:00:00Z"}`), false},
		{"unknown field", []byte(`{"version":1,"id":"c1","action":"cancel","job_id":"j1","principal":"alice","created_at":"2026-01-01T00:00:00Z","force":true}`), false},
		{"bad job", []byte(`{"version":1,"id":"c1","action":"cancel","job_id":"../x","principal":"alice","created_at":"2026-01-01T00:00:00Z"}`), false},
		{"no principal", []byte(`{"version":1,"id":"c1","action":"cancel","job_id":"j1","created_at":"2026-01-01T00:00:00Z"}`), false},
		{"another case", []byte(`{"version":1,"id":"c1","Action":"cancel","job_id":"j1","principal":"alice","created_at":"2026-01-01T00:00:00Z"}`), false},
	} {
		schemaErr := s.Validate(instance(t, tt.data))
		_, decodeErr := schema.DecodeControlRequest(tt.data)
		if (schemaErr == nil) != tt.ok || (decodeErr == nil) != tt.ok {
			t.Errorf("%s: schema says %v, DecodeControlRequest says %v; want ok=%v", tt.name, schemaErr, decodeErr, tt.ok)
		}
	}
}

// schemaVerdict is what a publisher that validates against the request
// schema says of data: nil if it is a valid request.
func schemaVerdict(s *jsonschema.Schema, data []byte) error {
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		return err
	}
	return s.Validate(v)
}

// requestSchemaDifferences are the only documents the request schema accepts
// and DecodeRequest refuses: constraints a JSON Schema cannot express. Each
// says whether it applies to a document. DecodeRequest accepts nothing the
// schema refuses.
var requestSchemaDifferences = []struct {
	name, reason, example string
	applies               func(data []byte) bool
}{
	{
		name:    "larger than MaxRequestBytes",
		reason:  "a schema cannot bound a document's size; DecodeRequest refuses a request the broker might cut off, with a clear error",
		example: tooLarge,
		applies: func(data []byte) bool { return len(data) > schema.MaxRequestBytes },
	},
	{
		name:    "not UTF-8",
		reason:  "JSON text must be UTF-8 (RFC 8259 section 8.1); the validator's parser replaces invalid bytes before the schema sees them, DecodeRequest refuses them",
		example: requestDoc("idempotency_key", "\"\xff\""),
		applies: func(data []byte) bool { return !utf8.Valid(data) },
	},
	{
		name: "a name given twice in one object",
		reason: "a schema sees one value per name (this validator's parser keeps the last, others the first) and cannot say names are unique; " +
			"what such a document asks for depends on the parser, so DecodeRequest refuses it",
		example: strings.Replace(requestDoc(), `"id":"job-1"`, `"id":"job-1","id":"job-1"`, 1),
		applies: hasRepeatedName,
	},
	{
		name: "created_at at the zero instant",
		reason: "0001-01-01T00:00:00Z is Go's zero time, which Request.Validate reads as created_at missing; " +
			"a pattern cannot single out one instant written with any offset, and no client makes a request in year 1",
		example: requestDoc("created_at", `"0001-01-01T01:00:00+01:00"`),
		applies: func(data []byte) bool {
			v, _ := jsonschema.UnmarshalJSON(bytes.NewReader(data))
			m, _ := v.(map[string]any)
			s, _ := m["created_at"].(string)
			t, err := time.Parse(time.RFC3339, s)
			return err == nil && t.IsZero()
		},
	},
}

// hasRepeatedName reports whether an object in the JSON document data has
// a member name twice.
func hasRepeatedName(data []byte) bool {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber() // or 1e999 ends the walk
	type object struct {
		seen map[string]bool
		key  bool // the next token is a name or the closing brace
	}
	var stack []*object // nil for an array
	for {
		tok, err := dec.Token()
		if err != nil {
			return false
		}
		var top *object
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		if top != nil && top.key {
			if tok == json.Delim('}') {
				stack = stack[:len(stack)-1]
				continue
			}
			name, _ := tok.(string)
			if top.seen[name] {
				return true
			}
			top.seen[name], top.key = true, false
			continue
		}
		if top != nil {
			top.key = true // after this value
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, &object{seen: map[string]bool{}, key: true})
		case json.Delim('['):
			stack = append(stack, nil)
		case json.Delim(']'):
			stack = stack[:len(stack)-1]
		}
	}
}

// checkAgainstSchema fails t if DecodeRequest and the request schema
// disagree about data, other than by one of requestSchemaDifferences.
func checkAgainstSchema(t testing.TB, s *jsonschema.Schema, data []byte) {
	t.Helper()
	_, decodeErr := schema.DecodeRequest(data)
	schemaErr := schemaVerdict(s, data)
	switch {
	case decodeErr == nil && schemaErr != nil:
		t.Errorf("DecodeRequest accepts a request the schema refuses: %v\n%q", schemaErr, data)
	case decodeErr != nil && schemaErr == nil:
		for _, d := range requestSchemaDifferences {
			if d.applies(data) {
				return
			}
		}
		t.Errorf("the schema accepts a request DecodeRequest refuses: %v\n%q", decodeErr, data)
	}
}

// DecodeRequest takes exactly the requests the published schema takes.
func TestDecodeRequestAgreesWithSchema(t *testing.T) {
	t.Parallel()
	s := compile(t, "request.schema.json", schema.RequestJSONSchema)
	for _, tt := range requestCases {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			checkAgainstSchema(t, s, []byte(tt.data))
		})
	}
}

// Each known difference between the schema and DecodeRequest is real, and
// applies to none of the requests the two agree on.
func TestRequestSchemaDifferences(t *testing.T) {
	t.Parallel()
	s := compile(t, "request.schema.json", schema.RequestJSONSchema)
	for _, d := range requestSchemaDifferences {
		example := []byte(d.example)
		if err := schemaVerdict(s, example); err != nil {
			t.Errorf("%s: the schema refuses the example: %v", d.name, err)
		}
		if _, err := schema.DecodeRequest(example); err == nil {
			t.Errorf("%s: DecodeRequest accepts the example", d.name)
		}
		if !d.applies(example) {
			t.Errorf("%s: does not apply to its own example", d.name)
		}
		for _, tt := range requestCases {
			if tt.wantErr == "" && d.applies([]byte(tt.data)) {
				t.Errorf("%s: applies to %s, which DecodeRequest accepts", d.name, tt.name)
			}
		}
	}
}
