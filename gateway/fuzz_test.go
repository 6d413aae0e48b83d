package gateway_test

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/winchhq/winch/gateway"
)

// DecodeSubmit takes any bytes: it never panics, refuses with a message,
// and what it accepts names a command, has at most the parameters allowed,
// and is what encoding/json reads strictly.
func FuzzDecodeSubmit(f *testing.F) {
	for _, s := range []string{
		`{"command":"core.echo","params":{"text":"hi"}}`,
		`{"command":"core.sleep","params":{"seconds":1.5},"queue":"q","timeout":"10s"}`,
		`{"command":7}`, `[]`, `null`, `{"command":"a.b","params":null}`, `{"command":"a.b"} {}`,
		`{"command":"a.b","params":{"n":12345678901234567890}}`, `{"command":"a.b","extra":1}`, "\xff", `{"COMMAND":"a.b"}`,
		`{"command":"a.b","each":{"param":"p","values":["x"]},"parallel":2,"fail_fast":true}`,
		`{"command":"a.b","priority":"high","notify":{"urls":["https://x.example"],"on":["failed"],"format":"slack"},"in":"2h"}`,
		`{"command":"a.b","at":"2030-01-01T00:00:00Z","notify":{"urls":[],"extra":1}}`, `{"command":"a.b","Priority":"low"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		req, err := gateway.DecodeSubmit(data, 8)
		if err != nil {
			if err.Error() == "" || strings.Contains(err.Error(), "json: ") {
				t.Fatalf("unhelpful message %q for %q", err, data)
			}
			return
		}
		if req.Command == "" || len(req.Params) > 8 {
			t.Fatalf("accepted %q as %+v", data, req)
		}
		var check map[string]json.RawMessage
		if err := json.Unmarshal(data, &check); err != nil {
			t.Fatalf("accepted what is not a JSON object: %q", data)
		}
		for k := range check {
			if !slices.Contains(gateway.SubmitFields, k) {
				t.Fatalf("accepted the unknown field %q", k)
			}
		}
	})
}
