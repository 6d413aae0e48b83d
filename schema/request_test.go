package schema_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/winchhq/winch/schema"
)

func validRequest() schema.Request {
	return schema.Request{
		Version: schema.Version, ID: "job-1", Command: "core.echo",
		Params: map[string]any{"text": "hi"}, Queue: "default", Principal: "alice",
		CreatedAt: time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC),
	}
}

func encode(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDecodeRequest(t *testing.T) {
	t.Parallel()
	good := encode(t, validRequest())
	tests := []struct {
		name    string
		data    string
		wantErr string // empty: must decode
	}{
		{"valid", string(good), ""},
		{"not json", "hello world", "not a valid JSON request document"},
		{"empty", "", "it is empty"},
		{"trailing data", string(good) + "{}", "data after the JSON document"},
		{"unknown field", strings.Replace(string(good), `"queue"`, `"qeue"`, 1), `unknown field "qeue"`},
		{"wrong type", strings.Replace(string(good), `"version":1`, `"version":"1"`, 1), `field "version" must be int`},
		{"future version", strings.Replace(string(good), `"version":1`, `"version":2`, 1), "version is 2"},
		{"bad id", strings.Replace(string(good), `"job-1"`, `"Job.1"`, 1), `id "Job.1" is not valid`},
		{"no command", strings.Replace(string(good), `"core.echo"`, `""`, 1), "command is missing"},
		{"command without module", strings.Replace(string(good), `"core.echo"`, `"echo"`, 1), "not of the form module.command"},
		{"principal with a dot", strings.Replace(string(good), `"alice"`, `"a.b"`, 1), `principal "a.b" is not valid`},
		{"bad queue", strings.Replace(string(good), `"default"`, `"a b"`, 1), `queue "a b" is not valid`},
		{"no time", strings.Replace(string(good), `"2026-11-28T12:00:00Z"`, `"0001-01-01T00:00:00Z"`, 1), "created_at is missing"},
		{"invalid utf-8", "\xff\xfe", "not valid UTF-8"},
		{"too large", `{"id":"` + strings.Repeat("a", schema.MaxRequestBytes) + `"}`, "more than the"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			req, err := schema.DecodeRequest([]byte(tt.data))
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("DecodeRequest: %v", err)
				}
				if req.ID != "job-1" || req.Params["text"] != "hi" {
					t.Fatalf("decoded %+v", req)
				}
				return
			}
			var reqErr *schema.RequestError
			if !errors.As(err, &reqErr) {
				t.Fatalf("error %v is not a *RequestError", err)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error %q does not say %q", err, tt.wantErr)
			}
		})
	}
}

func TestJobIDs(t *testing.T) {
	t.Parallel()
	a := schema.NewJobID()
	time.Sleep(2 * time.Millisecond)
	b := schema.NewJobID()
	if !schema.ValidJobID(a) || !schema.ValidJobID(b) {
		t.Fatalf("generated ids %q %q are not valid", a, b)
	}
	if a >= b {
		t.Fatalf("ids do not sort by time: %q then %q", a, b)
	}
	k1 := schema.IdempotentJobID("alice", "nightly-2026-11-28")
	if k1 != schema.IdempotentJobID("alice", "nightly-2026-11-28") || !schema.ValidJobID(k1) {
		t.Fatalf("idempotent id %q is not stable or not valid", k1)
	}
	if k1 == schema.IdempotentJobID("bob", "nightly-2026-11-28") {
		t.Fatal("two principals with the same key got the same job")
	}
}

func TestUnits(t *testing.T) {
	t.Parallel()
	sizes := []struct {
		in   string
		want schema.ByteSize
		err  bool
	}{
		{"256Mi", 256 << 20, false}, {"1Gi", 1 << 30, false}, {"512M", 512e6, false},
		{"1048576", 1 << 20, false}, {"12x", 0, true}, {"-1Mi", 0, true}, {"", 0, true},
		{"99999999999999Ti", 0, true},
	}
	for _, s := range sizes {
		got, err := schema.ParseByteSize(s.in)
		if (err != nil) != s.err || got != s.want {
			t.Errorf("ParseByteSize(%q) = %d, %v; want %d, err %v", s.in, got, err, s.want, s.err)
		}
	}
	var d schema.Duration
	if err := d.UnmarshalText([]byte("1h30m")); err != nil || time.Duration(d) != 90*time.Minute {
		t.Errorf("Duration 1h30m = %v, %v", time.Duration(d), err)
	}
	if err := d.UnmarshalText([]byte("soon")); err == nil || !strings.Contains(err.Error(), "like 30s") {
		t.Errorf("Duration soon: %v", err)
	}
}
