package schema_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"slices"
	"strconv"
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

// baseFields are the fields of the request document validRequest encodes
// to, in order.
var baseFields = [][2]string{
	{"version", "1"}, {"id", `"job-1"`}, {"command", `"core.echo"`}, {"params", `{"text":"hi"}`},
	{"queue", `"default"`}, {"principal", `"alice"`}, {"created_at", `"2026-11-28T12:00:00Z"`},
}

// requestDoc is validRequest's document with changes: pairs of a field name
// and a raw JSON value that replaces the field's value, or removes the field
// if it is "-", or is added at the end if the field is not there.
func requestDoc(changes ...string) string {
	fields := slices.Clone(baseFields)
	for i := 0; i+1 < len(changes); i += 2 {
		name, raw := changes[i], changes[i+1]
		j := slices.IndexFunc(fields, func(f [2]string) bool { return f[0] == name })
		switch {
		case j < 0:
			fields = append(fields, [2]string{name, raw})
		case raw == "-":
			fields = slices.Delete(fields, j, j+1)
		default:
			fields[j][1] = raw
		}
	}
	parts := make([]string, len(fields))
	for i, f := range fields {
		parts[i] = strconv.Quote(f[0]) + ":" + f[1]
	}
	return "{" + strings.Join(parts, ",") + "}"
}

// renamed is validRequest's document with one field's name written as name.
func renamed(field, name string) string {
	return strings.Replace(requestDoc(), `"`+field+`":`, `"`+name+`":`, 1)
}

const (
	invalid = "request is not a valid JSON request document: "
	commit  = "0123456789abcdef0123456789abcdef01234567"
)

type requestCase struct {
	name    string
	data    string
	wantErr string                    // the exact error; empty: must decode
	check   func(schema.Request) bool // for documents that decode
}

// requestCases are documents DecodeRequest must decode or refuse with the
// given error. They are also seeds of FuzzDecodeRequest and are checked
// against the JSON Schema by TestDecodeRequestAgreesWithSchema.
var requestCases = []requestCase{
	{name: "valid", data: requestDoc()},
	{name: "every field", data: requestDoc("idempotency_key", `"nightly"`, "timeout", `"1h30m"`, "module_commit", `"`+commit+`"`,
		"params", `{"s":"x","n":-1.5e3,"b":true,"f":false,"l":["a","b"],"e":[],"big":1e999}`),
		check: func(r schema.Request) bool {
			return r.IdempotencyKey == "nightly" && time.Duration(r.Timeout) == 90*time.Minute && r.ModuleCommit == commit &&
				reflect.DeepEqual(r.Params, map[string]any{"s": "x", "n": json.Number("-1.5e3"), "b": true, "f": false,
					"l": []any{"a", "b"}, "e": []any{}, "big": json.Number("1e999")})
		}},
	{name: "whitespace around", data: " \n\t" + requestDoc() + "\r\n "},
	{name: "escaped name", data: renamed("command", `comm\u0061nd`), check: func(r schema.Request) bool { return r.Command == "core.echo" }},
	{name: "no params", data: requestDoc("params", "-"), check: func(r schema.Request) bool { return r.Params == nil }},
	{name: "empty params", data: requestDoc("params", "{}"), check: func(r schema.Request) bool { return r.Params != nil && len(r.Params) == 0 }},
	{name: "empty idempotency key", data: requestDoc("idempotency_key", `""`)},

	// notify: webhooks for the job's end, as strict as the rest.
	{name: "notify", data: requestDoc("notify", `[{"url":"https://hooks.example/w?x=1"},{"url":"http://10.0.0.1:8080/h","on":["failed","timed_out"],"format":"slack"}]`),
		check: func(r schema.Request) bool {
			return len(r.Notify) == 2 && r.Notify[0].URL == "https://hooks.example/w?x=1" && r.Notify[0].On == nil &&
				slices.Equal(r.Notify[1].On, []schema.State{schema.StateFailed, schema.StateTimedOut}) && r.Notify[1].Format == "slack"
		}},
	{name: "empty notify", data: requestDoc("notify", `[]`), check: func(r schema.Request) bool { return r.Notify == nil }},
	{name: "notify not http", data: requestDoc("notify", `[{"url":"ftp://x/y"}]`), wantErr: `notify item 0: notify url "ftp://x/y" is not an http:// or https:// URL (printable ASCII, no spaces)`},
	{name: "notify url with a space", data: requestDoc("notify", `[{"url":"https://x/a b"}]`), wantErr: `notify item 0: notify url "https://x/a b" is not an http:// or https:// URL (printable ASCII, no spaces)`},
	{name: "notify without url", data: requestDoc("notify", `[{"on":["failed"]}]`), wantErr: `notify item 0 has no url`},
	{name: "notify URL", data: requestDoc("notify", `[{"URL":"https://x/"}]`), wantErr: `notify item 0: unknown field "URL" (the fields are url, on, format)`},
	{name: "notify null url", data: requestDoc("notify", `[{"url":null}]`), wantErr: `notify item 0: field "url" must be a JSON string, not null`},
	{name: "notify url twice", data: requestDoc("notify", `[{"url":"https://x/","url":"https://y/"}]`), wantErr: invalid + `field "url" is given more than once (give each field once)`},
	{name: "notify on empty", data: requestDoc("notify", `[{"url":"https://x/","on":[]}]`), wantErr: `notify item 0: notify on is empty: list terminal states (succeeded, failed, cancelled, timed_out, rejected, dead), or leave it out for every end`},
	{name: "notify on running", data: requestDoc("notify", `[{"url":"https://x/","on":["running"]}]`), wantErr: `notify item 0: notify on: "running" is not a state a job ends in (succeeded, failed, cancelled, timed_out, rejected, dead)`},
	{name: "notify on number", data: requestDoc("notify", `[{"url":"https://x/","on":[1]}]`), wantErr: `notify item 0: on item 0 must be a state, not a number`},
	{name: "notify format empty", data: requestDoc("notify", `[{"url":"https://x/","format":""}]`), wantErr: `notify item 0: format is empty: write json or slack, or leave it out`},
	{name: "notify format teams", data: requestDoc("notify", `[{"url":"https://x/","format":"teams"}]`), wantErr: `notify item 0: notify format "teams": want json or slack`},
	{name: "notify item string", data: requestDoc("notify", `["https://x/"]`), wantErr: `notify item 0 must be an object with a url, not a string`},
	{name: "notify object", data: requestDoc("notify", `{"url":"https://x/"}`), wantErr: invalid + `field "notify" must be a JSON array, not a JSON object`},
	{name: "notify null", data: requestDoc("notify", `null`), wantErr: invalid + `field "notify" must be a JSON array, not null (leave out a field that has no value)`},
	{name: "notify too many", data: requestDoc("notify", "["+strings.Repeat(`{"url":"https://x/"},`, 8)+`{"url":"https://x/"}]`), wantErr: `notify has 9 targets, more than the 8 allowed`},
	{name: "notify url too long", data: requestDoc("notify", `[{"url":"https://x/`+strings.Repeat("a", 2040)+`"}]`), wantErr: `notify item 0: notify url is 2050 characters, more than the 2048 allowed`},

	// Field names match exactly, as in the schema.
	{name: "Command", data: renamed("command", "Command"), wantErr: invalid + `unknown field "Command" (field names are lower-case: did you mean "command"?)`},
	{name: "PARAMS", data: renamed("params", "PARAMS"), wantErr: invalid + `unknown field "PARAMS" (field names are lower-case: did you mean "params"?)`},
	{name: "Version", data: renamed("version", "Version"), wantErr: invalid + `unknown field "Version" (field names are lower-case: did you mean "version"?)`},
	{name: "ID", data: renamed("id", "ID"), wantErr: invalid + `unknown field "ID" (field names are lower-case: did you mean "id"?)`},
	{name: "Queue", data: renamed("queue", "Queue"), wantErr: invalid + `unknown field "Queue" (field names are lower-case: did you mean "queue"?)`},
	{name: "PRINCIPAL", data: renamed("principal", "PRINCIPAL"), wantErr: invalid + `unknown field "PRINCIPAL" (field names are lower-case: did you mean "principal"?)`},
	{name: "Created_At", data: renamed("created_at", "Created_At"), wantErr: invalid + `unknown field "Created_At" (field names are lower-case: did you mean "created_at"?)`},
	{name: "Module_Commit", data: requestDoc("Module_Commit", `"`+commit+`"`), wantErr: invalid + `unknown field "Module_Commit" (field names are lower-case: did you mean "module_commit"?)`},
	{name: "Timeout", data: requestDoc("Timeout", `"1s"`), wantErr: invalid + `unknown field "Timeout" (field names are lower-case: did you mean "timeout"?)`},
	// encoding/json folds Unicode: the Kelvin sign matches k, the long s matches s.
	{name: "Kelvin sign", data: requestDoc("idempotency_\u212aey", `"x"`), wantErr: invalid + "unknown field \"idempotency_\u212aey\" (field names are lower-case: did you mean \"idempotency_key\"?)"},
	{name: "long s", data: renamed("version", `ver\u017fion`), wantErr: invalid + "unknown field \"ver\u017fion\" (field names are lower-case: did you mean \"version\"?)"},
	{name: "both cases", data: requestDoc("Command", `"core.true"`), wantErr: invalid + `unknown field "Command" (field names are lower-case: did you mean "command"?)`},
	{name: "camel case", data: renamed("created_at", "createdAt"), wantErr: invalid + `unknown field "createdAt" (did you mean "created_at"?)`},
	{name: "unknown field", data: renamed("queue", "qeue"), wantErr: invalid + `unknown field "qeue" (the fields are version, id, command, params, queue, principal, idempotency_key, timeout, created_at, module_commit, notify, priority, schedule, parent_id, each, parallel, fail_fast)`},
	{name: "empty name", data: requestDoc("", "1"), wantErr: invalid + `unknown field "" (the fields are version, id, command, params, queue, principal, idempotency_key, timeout, created_at, module_commit, notify, priority, schedule, parent_id, each, parallel, fail_fast)`},

	// A name given twice is ambiguous.
	{name: "field twice", data: strings.Replace(requestDoc(), `"command":"core.echo"`, `"command":"core.echo","command":"core.true"`, 1), wantErr: invalid + `field "command" is given more than once (give each field once)`},
	{name: "field twice, same value", data: strings.Replace(requestDoc(), `"id":"job-1"`, `"id":"job-1","id":"job-1"`, 1), wantErr: invalid + `field "id" is given more than once (give each field once)`},
	{name: "parameter twice", data: requestDoc("params", `{"text":"hi","text":"ho"}`), wantErr: invalid + `parameter "text" is given more than once (give each parameter once)`},

	// Values of the wrong JSON type, null included.
	{name: "version as string", data: requestDoc("version", `"1"`), wantErr: invalid + `field "version" must be a JSON number, not a JSON string`},
	{name: "id as number", data: requestDoc("id", `1`), wantErr: invalid + `field "id" must be a JSON string, not a JSON number`},
	{name: "params as list", data: requestDoc("params", `["text"]`), wantErr: invalid + `field "params" must be a JSON object, not a JSON array`},
	{name: "timeout as number", data: requestDoc("timeout", `90`), wantErr: invalid + `field "timeout" must be a JSON string, not a JSON number`},
	{name: "created_at as boolean", data: requestDoc("created_at", `true`), wantErr: invalid + `field "created_at" must be a JSON string, not a JSON boolean`},
	{name: "null params", data: requestDoc("params", `null`), wantErr: invalid + `field "params" must be a JSON object, not null (leave out a field that has no value)`},
	{name: "null timeout", data: requestDoc("timeout", `null`), wantErr: invalid + `field "timeout" must be a JSON string, not null (leave out a field that has no value)`},
	{name: "null idempotency key", data: requestDoc("idempotency_key", `null`), wantErr: invalid + `field "idempotency_key" must be a JSON string, not null (leave out a field that has no value)`},
	{name: "high priority", data: requestDoc("priority", `"high"`)},
	{name: "normal priority", data: requestDoc("priority", `"normal"`)},
	{name: "low priority", data: requestDoc("priority", `"low"`)},
	{name: "unknown priority", data: requestDoc("priority", `"urgent"`), wantErr: `priority "urgent" is not one of high, normal, low`},
	{name: "empty priority", data: requestDoc("priority", `""`), wantErr: `priority "" is not one of high, normal, low (leave the field out for normal)`},
	{name: "numeric priority", data: requestDoc("priority", `1`), wantErr: invalid + `field "priority" must be a JSON string, not a JSON number`},
	{name: "upper-case priority", data: requestDoc("priority", `"HIGH"`), wantErr: `priority "HIGH" is not one of high, normal, low`},
	{name: "schedule", data: requestDoc("schedule", `"nightly-backup"`)},
	{name: "bad schedule", data: requestDoc("schedule", `"Nightly"`), wantErr: `schedule "Nightly" is not a schedule name (1 to 40 lower-case letters, digits, '-' or '_', starting with a letter)`},
	{name: "null module commit", data: requestDoc("module_commit", `null`), wantErr: invalid + `field "module_commit" must be a JSON string, not null (leave out a field that has no value)`},
	{name: "null id", data: requestDoc("id", `null`), wantErr: invalid + `field "id" must be a JSON string, not null (leave out a field that has no value)`},

	// version goes by value, as JSON Schema's const does.
	{name: "version 1.0", data: requestDoc("version", `1.0`), check: func(r schema.Request) bool { return r.Version == 1 }},
	{name: "version 1e0", data: requestDoc("version", `1e0`)},
	{name: "version 10E-1", data: requestDoc("version", `10E-1`)},
	{name: "version 0.1e+1", data: requestDoc("version", `0.1e+1`)},
	{name: "version 100e-2", data: requestDoc("version", `100e-2`)},
	{name: "version 1 and a little", data: requestDoc("version", `1.0000000000000000001`), wantErr: "version is 1.0000000000000000001; this worker understands version 1"},
	{name: "version -0", data: requestDoc("version", `-0`), wantErr: "version is 0; this worker understands version 1"},
	{name: "version with a huge exponent", data: requestDoc("version", `1e99999999999999999999`), wantErr: "version is 1e99999999999999999999; this worker understands version 1"},
	{name: "future version", data: requestDoc("version", `2`), wantErr: "version is 2; this worker understands version 1"},
	{name: "version 1.5", data: requestDoc("version", `1.5`), wantErr: "version is 1.5; this worker understands version 1"},
	{name: "version 1e999", data: requestDoc("version", `1e999`), wantErr: "version is 1e999; this worker understands version 1"},
	{name: "version -1", data: requestDoc("version", `-1`), wantErr: "version is -1; this worker understands version 1"},
	{name: "no version", data: requestDoc("version", "-"), wantErr: "version is 0; this worker understands version 1"},

	// The request's own fields.
	{name: "bad id", data: requestDoc("id", `"Job.1"`), wantErr: `id "Job.1" is not valid: use 1 to 64 lower-case letters, digits, '-' or '_'`},
	{name: "no id", data: requestDoc("id", "-"), wantErr: `id "" is not valid: use 1 to 64 lower-case letters, digits, '-' or '_'`},
	{name: "no command", data: requestDoc("command", `""`), wantErr: "command is missing: name one as module.command, for example core.echo"},
	{name: "command without module", data: requestDoc("command", `"echo"`), wantErr: `command "echo" is not of the form module.command (lower-case names)`},
	{name: "principal with a dot", data: requestDoc("principal", `"a.b"`), wantErr: `principal "a.b" is not valid: use 1 to 64 letters, digits, '-', '_' or '@'`},
	{name: "bad queue", data: requestDoc("queue", `"a b"`), wantErr: `queue "a b" is not valid: use 1 to 32 lower-case letters, digits, '-' or '_'`},
	{name: "empty module commit", data: requestDoc("module_commit", `""`), wantErr: `module_commit "" is not a full commit hash (40 lower-case hex digits); leave the field out to run the module's current commit`},
	{name: "upper-case module commit", data: requestDoc("module_commit", `"`+strings.ToUpper(commit)+`"`), wantErr: `module_commit "0123456789ABCDEF0123456789ABCDEF01234567" is not a full commit hash (40 lower-case hex digits); leave the field out to run the module's current commit`},

	// params: lower-case names to a string, number, boolean or list of strings.
	{name: "parameter name in capitals", data: requestDoc("params", `{"Text":"hi"}`), wantErr: `parameter name "Text" is not valid: use 1 to 64 lower-case letters, digits and '_', starting with a letter`},
	{name: "parameter name with a dash", data: requestDoc("params", `{"dry-run":true}`), wantErr: `parameter name "dry-run" is not valid: use 1 to 64 lower-case letters, digits and '_', starting with a letter`},
	{name: "null parameter", data: requestDoc("params", `{"text":null}`), wantErr: `parameter "text" must be a string, a number, a boolean or a list of strings, not null (leave out a parameter to use its default)`},
	{name: "object parameter", data: requestDoc("params", `{"text":{"a":1}}`), wantErr: `parameter "text" must be a string, a number, a boolean or a list of strings, not an object`},
	{name: "list of numbers", data: requestDoc("params", `{"l":["a",1]}`), wantErr: `parameter "l" must be a list of strings; item 1 is a number`},
	{name: "list of lists", data: requestDoc("params", `{"l":[["a"]]}`), wantErr: `parameter "l" must be a list of strings; item 0 is an array`},
	{name: "list with null", data: requestDoc("params", `{"l":[null]}`), wantErr: `parameter "l" must be a list of strings; item 0 is null`},

	// timeout: the schema's pattern, not all that time.ParseDuration takes.
	{name: "timeout 0s", data: requestDoc("timeout", `"0s"`), check: func(r schema.Request) bool { return r.Timeout == 0 }},
	{name: "timeout in µs", data: requestDoc("timeout", `"1.5µs"`), check: func(r schema.Request) bool { return time.Duration(r.Timeout) == 1500*time.Nanosecond }},
	{name: "timeout in us", data: requestDoc("timeout", `"2us"`), check: func(r schema.Request) bool { return time.Duration(r.Timeout) == 2*time.Microsecond }},
	{name: "timeout beyond a Duration", data: requestDoc("timeout", `"9999999999999999999h"`), check: func(r schema.Request) bool { return r.Timeout == math.MaxInt64 }},
	{name: "timeout sum beyond a Duration", data: requestDoc("timeout", `"2562047h47m16.854775807s1ns"`), check: func(r schema.Request) bool { return r.Timeout == math.MaxInt64 }},
	{name: "timeout 0", data: requestDoc("timeout", `"0"`), wantErr: `timeout "0" is not a duration: write numbers with units (ns, us, µs, ms, s, m, h), like 90s, 10m or 1h30m`},
	{name: "timeout .5s", data: requestDoc("timeout", `".5s"`), wantErr: `timeout ".5s" is not a duration: write numbers with units (ns, us, µs, ms, s, m, h), like 90s, 10m or 1h30m`},
	{name: "timeout 5.s", data: requestDoc("timeout", `"5.s"`), wantErr: `timeout "5.s" is not a duration: write numbers with units (ns, us, µs, ms, s, m, h), like 90s, 10m or 1h30m`},
	{name: "timeout +1s", data: requestDoc("timeout", `"+1s"`), wantErr: `timeout "+1s" is not a duration: write numbers with units (ns, us, µs, ms, s, m, h), like 90s, 10m or 1h30m`},
	{name: "timeout -0s", data: requestDoc("timeout", `"-0s"`), wantErr: `timeout "-0s" is not a duration: write numbers with units (ns, us, µs, ms, s, m, h), like 90s, 10m or 1h30m`},
	{name: "timeout in Greek μs", data: requestDoc("timeout", `"1\u03bcs"`), wantErr: "timeout \"1\u03bcs\" is not a duration: write numbers with units (ns, us, µs, ms, s, m, h), like 90s, 10m or 1h30m"},
	{name: "timeout soon", data: requestDoc("timeout", `"soon"`), wantErr: `timeout "soon" is not a duration: write numbers with units (ns, us, µs, ms, s, m, h), like 90s, 10m or 1h30m`},
	{name: "empty timeout", data: requestDoc("timeout", `""`), wantErr: `timeout "" is not a duration: write numbers with units (ns, us, µs, ms, s, m, h), like 90s, 10m or 1h30m`},

	// created_at: RFC 3339 as the schema's pattern and format say.
	{name: "created_at with offset", data: requestDoc("created_at", `"2026-11-28T13:00:00.123456789+01:00"`),
		check: func(r schema.Request) bool {
			return r.CreatedAt.Equal(time.Date(2026, 11, 28, 12, 0, 0, 123456789, time.UTC))
		}},
	{name: "created_at at -00:00", data: requestDoc("created_at", `"2026-11-28T12:00:00-00:00"`)},
	{name: "created_at in year 0", data: requestDoc("created_at", `"0000-01-01T00:00:00Z"`)},
	{name: "created_at on 29 February", data: requestDoc("created_at", `"2028-02-29T00:00:00Z"`)},
	{name: "no created_at", data: requestDoc("created_at", "-"), wantErr: "created_at is missing"},
	{name: "created_at zero", data: requestDoc("created_at", `"0001-01-01T00:00:00Z"`), wantErr: "created_at is missing"},
	{name: "created_at lower-case t", data: requestDoc("created_at", `"2026-11-28t12:00:00Z"`), wantErr: createdAtErr("2026-11-28t12:00:00Z")},
	{name: "created_at lower-case z", data: requestDoc("created_at", `"2026-11-28T12:00:00z"`), wantErr: createdAtErr("2026-11-28T12:00:00z")},
	{name: "created_at leap second", data: requestDoc("created_at", `"2026-12-31T23:59:60Z"`), wantErr: createdAtErr("2026-12-31T23:59:60Z")},
	{name: "created_at decimal comma", data: requestDoc("created_at", `"2026-11-28T12:00:00,5Z"`), wantErr: createdAtErr("2026-11-28T12:00:00,5Z")},
	{name: "created_at one-digit hour", data: requestDoc("created_at", `"2026-11-28T1:00:00Z"`), wantErr: createdAtErr("2026-11-28T1:00:00Z")},
	{name: "created_at offset +24:00", data: requestDoc("created_at", `"2026-11-28T12:00:00+24:00"`), wantErr: createdAtErr("2026-11-28T12:00:00+24:00")},
	{name: "created_at offset +0100", data: requestDoc("created_at", `"2026-11-28T12:00:00+0100"`), wantErr: createdAtErr("2026-11-28T12:00:00+0100")},
	{name: "created_at without offset", data: requestDoc("created_at", `"2026-11-28T12:00:00"`), wantErr: createdAtErr("2026-11-28T12:00:00")},
	{name: "created_at with a space", data: requestDoc("created_at", `"2026-11-28 12:00:00Z"`), wantErr: createdAtErr("2026-11-28 12:00:00Z")},
	{name: "created_at 30 February", data: requestDoc("created_at", `"2026-02-30T12:00:00Z"`), wantErr: createdAtErr("2026-02-30T12:00:00Z")},
	{name: "created_at yesterday", data: requestDoc("created_at", `"yesterday"`), wantErr: createdAtErr("yesterday")},

	// Not a request document at all.
	{name: "not json", data: "hello world", wantErr: invalid + "invalid character 'h' looking for beginning of value (at byte 1)"},
	{name: "empty", data: "", wantErr: invalid + "it is empty"},
	{name: "only space", data: " \n", wantErr: invalid + "it is empty"},
	{name: "array", data: "[" + requestDoc() + "]", wantErr: invalid + "it is an array, not an object"},
	{name: "null", data: "null", wantErr: invalid + "it is null, not an object"},
	{name: "string", data: `"core.echo"`, wantErr: invalid + "it is a string, not an object"},
	{name: "cut short", data: requestDoc()[:20], wantErr: invalid + "it ends before the document does"},
	{name: "trailing comma", data: strings.TrimSuffix(requestDoc(), "}") + ",}", wantErr: invalid + fmt.Sprintf("invalid character '}' looking for beginning of object key string (at byte %d)", len(requestDoc()))},
	{name: "trailing data", data: requestDoc() + "{}", wantErr: "request has data after the JSON document"},
	{name: "NUL", data: "\x00this is not json", wantErr: invalid + "invalid character '\\x00' looking for beginning of value (at byte 1)"},
	{name: "invalid utf-8", data: "\xff\xfe", wantErr: "request is not valid UTF-8 JSON"},
	{name: "invalid utf-8 in a string", data: requestDoc("idempotency_key", "\"\xff\""), wantErr: "request is not valid UTF-8 JSON"},
	{name: "too large", data: tooLarge, wantErr: fmt.Sprintf("request is %d bytes, more than the %d allowed", len(tooLarge), schema.MaxRequestBytes)},
}

var tooLarge = requestDoc("idempotency_key", `"`+strings.Repeat("a", schema.MaxRequestBytes)+`"`)

func createdAtErr(s string) string {
	return fmt.Sprintf("created_at %q is not a valid RFC 3339 date and time: write it like 2026-11-28T12:00:00Z or 2026-11-28T13:00:00.5+01:00", s)
}

func TestDecodeRequest(t *testing.T) {
	t.Parallel()
	if got, want := requestDoc(), string(encode(t, validRequest())); got != want {
		t.Fatalf("requestDoc() = %s; validRequest encodes to %s", got, want)
	}
	for _, tt := range requestCases {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			req, err := schema.DecodeRequest([]byte(tt.data))
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("DecodeRequest: %v", err)
				}
				if tt.check != nil && !tt.check(req) {
					t.Fatalf("decoded %+v", req)
				}
				return
			}
			var reqErr *schema.RequestError
			if !errors.As(err, &reqErr) {
				t.Fatalf("error %v is not a *RequestError", err)
			}
			if err.Error() != tt.wantErr {
				t.Fatalf("error\n%s\nwant\n%s", err, tt.wantErr)
			}
		})
	}
}

// Every field of Request survives an encode and a decode: the decoder knows
// every field the Go type has.
func TestDecodeRequestEveryField(t *testing.T) {
	t.Parallel()
	want := validRequest()
	want.Params = map[string]any{"s": "x", "n": json.Number("2"), "b": true, "l": []any{"a"}}
	want.IdempotencyKey = "nightly"
	want.Timeout = schema.Duration(90 * time.Second)
	want.ModuleCommit = commit
	want.Notify = []schema.NotifyTarget{{URL: "https://hooks.example/x?a=1", On: []schema.State{schema.StateFailed}, Format: schema.NotifySlack}}
	want.Priority = schema.PriorityHigh
	want.Schedule = "nightly-backup"
	want.ParentID = "parent-1"
	want.Each = &schema.Each{Param: "name", Values: []string{"main", "users"}}
	want.Parallel = 2
	want.FailFast = true
	v := reflect.ValueOf(want)
	for i := range v.NumField() {
		if v.Field(i).IsZero() {
			t.Fatalf("field %s is not set in this test", v.Type().Field(i).Name)
		}
	}
	got, err := schema.DecodeRequest(encode(t, want))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("decoded\n%+v\nwant\n%+v", got, want)
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
