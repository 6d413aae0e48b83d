package schema_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"

	"github.com/winchhq/winch/schema"
)

// FuzzDecodeRequest: any bytes either decode to a request that passes
// validation and survives a round trip, or give a *RequestError; never a
// panic. And DecodeRequest agrees with the published JSON Schema on every
// input (checkAgainstSchema). The seeds are requestCases, with field names
// in other cases among them.
func FuzzDecodeRequest(f *testing.F) {
	s := compile(f, "request.schema.json", schema.RequestJSONSchema)
	good, _ := json.Marshal(validRequest())
	f.Add(good)
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"version":1,"id":"a","command":"x.y","queue":"q","principal":"p","created_at":"2026-01-01T00:00:00Z","params":{"n":1e999}}`))
	f.Add([]byte(`{"version":1,"id":"p","command":"x.y","queue":"q","principal":"p","created_at":"2026-01-01T00:00:00Z","each":{"param":"name","values":["a","b"]},"parallel":2,"fail_fast":true,"parent_id":"q-1"}`))
	f.Add([]byte(`{"version":1,"id":"p","command":"x.y","queue":"q","principal":"p","created_at":"2026-01-01T00:00:00Z","each":{"param":"name","values":[]},"parallel":0}`))
	f.Add([]byte("\x00\xff"))
	f.Add([]byte(`{"VERSION":1,"Id":"a","cOmmand":"x.y","Queue":"q","Principal":"p","Created_at":"2026-01-01T00:00:00Z","Params":{"N":1}}`))
	for _, tt := range requestCases {
		if len(tt.data) <= 4096 {
			f.Add([]byte(tt.data))
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		checkAgainstSchema(t, s, data)
		req, err := schema.DecodeRequest(data)
		if err != nil {
			var reqErr *schema.RequestError
			if !errors.As(err, &reqErr) {
				t.Fatalf("error of type %T: %v", err, err)
			}
			return
		}
		if err := req.Validate(); err != nil {
			t.Fatalf("decoded request does not validate: %v", err)
		}
		again, err := json.Marshal(req)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		back, err := schema.DecodeRequest(again)
		if err != nil {
			t.Fatalf("round trip: %v\n%s", err, again)
		}
		if err := schemaVerdict(s, again); err != nil {
			t.Fatalf("the schema refuses the re-encoded request: %v\n%s", err, again)
		}
		if twice, _ := json.Marshal(back); !bytes.Equal(twice, again) {
			t.Fatalf("round trip changed the request:\n%s\n%s", again, twice)
		}
	})
}

// FuzzValidateParams: parameters from any JSON object are either accepted,
// normalized to the declared Go types, or rejected with a ValidationError.
func FuzzValidateParams(f *testing.F) {
	f.Add(`{"name":"main","level":3,"tables":["a"]}`)
	f.Add(`{"name":1,"level":1e400}`)
	f.Add(`{"ratio":-0,"format":"sql","compress":null}`)
	f.Fuzz(func(t *testing.T, params string) {
		var raw map[string]any
		if json.Unmarshal([]byte(params), &raw) != nil {
			return
		}
		got, err := backup.ValidateParams(raw)
		if err != nil {
			var v *schema.ValidationError
			if !errors.As(err, &v) || len(v.Problems) == 0 {
				t.Fatalf("error of type %T: %v", err, err)
			}
			return
		}
		for name, v := range got {
			ok := false
			switch backup.Params[name].Type {
			case schema.TypeString, schema.TypeEnum:
				_, ok = v.(string)
			case schema.TypeInt:
				_, ok = v.(int64)
			case schema.TypeFloat:
				_, ok = v.(float64)
			case schema.TypeBool:
				_, ok = v.(bool)
			case schema.TypeList:
				_, ok = v.([]string)
			}
			if !ok {
				t.Fatalf("param %s normalized to %T", name, v)
			}
		}
		if _, ok := got["name"]; !ok {
			t.Fatal("required param missing from accepted params")
		}
	})
}

// FuzzDecodeControlRequest: any bytes either decode to a valid control
// request or give an error, never a panic; what decodes, the published
// schema accepts too, and a request that decodes survives a round trip.
func FuzzDecodeControlRequest(f *testing.F) {
	s := compile(f, "control.schema.json", schema.ControlJSONSchema)
	f.Add([]byte(`{"version":1,"id":"c1","action":"cancel","job_id":"j1","principal":"alice","created_at":"2026-01-01T00:00:00Z"}`))
	f.Add([]byte(`{"Version":1,"ID":"c1","Action":"cancel","Job_ID":"j1","Principal":"alice","Created_At":"2026-01-01T00:00:00Z"}`))
	f.Add([]byte(`{"version":1,"id":"c1","action":"cancel","action":"cancel","job_id":"j1","principal":"alice","created_at":"2026-01-01T00:00:00Z"}`))
	f.Add([]byte(`{"version":1,"id":"c1","action":null,"job_id":"j1","principal":"alice","created_at":"2026-01-01T00:00:00Z"}`))
	f.Add([]byte(`{"version":1,"id":"p","command":"x.y","queue":"q","principal":"p","created_at":"2026-01-01T00:00:00Z","each":{"param":"name","values":["a","b"]},"parallel":2,"fail_fast":true,"parent_id":"q-1"}`))
	f.Add([]byte(`{"version":1,"id":"p","command":"x.y","queue":"q","principal":"p","created_at":"2026-01-01T00:00:00Z","each":{"param":"name","values":[]},"parallel":0}`))
	f.Add([]byte("\x00\xff"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := schema.DecodeControlRequest(data)
		if err != nil {
			return
		}
		var doc any
		if json.Unmarshal(data, &doc) != nil {
			t.Fatalf("decoded a control request from what is not JSON: %q", data)
		}
		if err := s.Validate(doc); err != nil {
			t.Fatalf("decoded %q, which the schema refuses: %v", data, err)
		}
		again, err := json.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		back, err := schema.DecodeControlRequest(again)
		if err != nil || !back.CreatedAt.Equal(c.CreatedAt) || back.ID != c.ID || back.JobID != c.JobID || back.Principal != c.Principal {
			t.Fatalf("round trip of %q: %+v, %v", again, back, err)
		}
	})
}
