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

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/winchhq/winch/schema"
)

func compile(t *testing.T, name string, data []byte) *jsonschema.Schema {
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
