package schema

import (
	"encoding/json"
	"fmt"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzEachMember: on every well-formed document, the one-pass scanner and
// the token-by-token decoder see the same members, in the same order, and
// stop at the same error; eachMember may use either.
func FuzzEachMember(f *testing.F) {
	for _, seed := range []string{
		`{}`, `[]`, `"x"`, `1`, `null`,
		`{"a":1,"b":"x\"y","c":{"d":[1,{"e":"]}"}]},"f":true,"g":null}`,
		` { "a" : [ ] , "b" : { } , "a" : 2 } `,
		`{"\u0061":1,"a":2}`,
		`{"version":1,"id":"job-1","command":"core.echo","params":{"text":"hi","n":-1.5e3,"l":["a","b\\"]},"queue":"default","principal":"alice","created_at":"2026-11-28T12:00:00Z"}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if !json.Valid(data) || !utf8.Valid(data) {
			return
		}
		type seen struct{ name, raw string }
		walk := func(each func([]byte, string, func(string, []byte) error) error) ([]seen, string) {
			var got []seen
			err := each(data, "field", func(name string, raw []byte) error {
				got = append(got, seen{name, string(raw)})
				if len(got) == 3 { // an error from fn stops both at the same member
					return fmt.Errorf("stop at %q", name)
				}
				return nil
			})
			return got, fmt.Sprint(err)
		}
		scanned, scanErr := walk(scanMembers)
		decoded, decodeErr := walk(decodeMembers)
		if !reflect.DeepEqual(scanned, decoded) || scanErr != decodeErr {
			t.Fatalf("%s\nscanned %q (%s)\ndecoded %q (%s)", data, scanned, scanErr, decoded, decodeErr)
		}
	})
}

func BenchmarkDecodeRequest(b *testing.B) {
	data := []byte(`{"version":1,"id":"06h28epmilf65fc1q5igsc3mkc","command":"db.backup","params":{"name":"main","retain":7,"tables":["a","b"]},"queue":"default","principal":"alice","timeout":"10m","created_at":"2026-11-28T12:00:00.123456Z"}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeRequest(data); err != nil {
			b.Fatal(err)
		}
	}
}

// FuzzValidTokens: the loops that check IDs, principals and queues say
// what request.schema.json's patterns say.
func FuzzValidTokens(f *testing.F) {
	for _, seed := range []string{"", "a", "A", "-a", "a-", "job_1", "Alice@corp", "a.b", strings.Repeat("a", 64), strings.Repeat("a", 65), "é"} {
		f.Add(seed)
	}
	patterns := []struct {
		re    *regexp.Regexp
		valid func(string) bool
	}{
		{regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,63}$`), ValidJobID},
		{regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_@-]{0,63}$`), ValidPrincipal},
		{regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,31}$`), ValidQueue},
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, p := range patterns {
			if got, want := p.valid(s), p.re.MatchString(s); got != want {
				t.Fatalf("%q: %v, but %s says %v", s, got, p.re, want)
			}
		}
	})
}
