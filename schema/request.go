package schema

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// DefaultQueue is the queue a request goes to when it names none.
const DefaultQueue = "default"

// MaxRequestBytes bounds an encoded request; the broker's max payload is the
// hard limit, this one gives a clear error before it.
const MaxRequestBytes = 256 << 10

// MaxFanoutRequestBytes bounds an encoded fan-out request (one with each),
// whose values may be many: under the jobs stream's 1 MiB messages.
const MaxFanoutRequestBytes = 1000 << 10

// SizeLimit is the most bytes r may take encoded.
func (r Request) SizeLimit() int {
	if r.Each != nil {
		return MaxFanoutRequestBytes
	}
	return MaxRequestBytes
}

// Request asks for one command to run. Clients publish it, JSON encoded, on
// winch.jobs.<queue>.<id>.<principal> with the ID as the Nats-Msg-Id header.
type Request struct {
	// Version is the schema version of this document (Version).
	Version int `json:"version"`
	// ID names the job; see NewJobID and IdempotentJobID.
	ID string `json:"id"`
	// Command is "module.command", for example "core.echo".
	Command string `json:"command"`
	// Params are the command's parameters by name; the worker validates them
	// against the command's specification again before it runs anything.
	Params map[string]any `json:"params,omitempty"`
	// Queue routes the request to a pool of workers.
	Queue string `json:"queue"`
	// Principal is who asks. It must equal the last token of the subject the
	// request was published on, which the broker vouches for.
	Principal string `json:"principal"`
	// IdempotencyKey, when set, is what the ID was derived from.
	IdempotencyKey string `json:"idempotency_key,omitempty"`
	// Timeout bounds the run; the command's own timeout bounds it too, and
	// the shorter wins. Zero means the command's timeout alone.
	Timeout Duration `json:"timeout,omitempty"`
	// CreatedAt is when the client made the request.
	CreatedAt time.Time `json:"created_at"`
	// ModuleCommit is the commit of the command's module the client
	// validated the request against, and that the worker runs. Empty (left
	// out of the JSON) for core commands, or to run what the registry names
	// when the worker takes it.
	ModuleCommit string `json:"module_commit,omitempty"`
	// Notify are webhooks to call when the job ends, besides those of the
	// command's manifest. A schedule sets them for each run it makes.
	Notify []NotifyTarget `json:"notify,omitempty"`
	// Priority is high, normal or low; empty (left out of the JSON, as
	// clients older than priorities do) is normal. The subject carries it
	// too (broker.PriorityJobSubject): workers take requests by subject.
	Priority Priority `json:"priority,omitempty"`
	// Schedule names the schedule whose fire made this request, when one
	// did (a worker publishes it, on the schedule owner's subject).
	Schedule string `json:"schedule,omitempty"`
	// ParentID names the fan-out parent of a child request; a worker that
	// drives the fan-out sets it.
	ParentID string `json:"parent_id,omitempty"`
	// Each makes the request a fan-out: a parent job that runs the command
	// once per value, as child jobs, at most Parallel at once (default 1),
	// in the order given, stopping at the first failure if FailFast.
	Each     *Each `json:"each,omitempty"`
	Parallel int   `json:"parallel,omitempty"`
	FailFast bool  `json:"fail_fast,omitempty"`
}

// Each is a fan-out's values: one child job per value, with the value in
// the parameter Param.
type Each struct {
	Param  string   `json:"param"`
	Values []string `json:"values"`
}

// MaxFanout bounds a fan-out's values.
const MaxFanout = 10_000

// maxFanoutParentID leaves room in a job id for a child's "-<index>".
const maxFanoutParentID = 64 - len("-9999")

// Priority orders requests waiting on one queue: a free worker takes high
// before normal before low (with the aging rule of the README).
type Priority string

// Priorities.
const (
	PriorityHigh   Priority = "high"
	PriorityNormal Priority = "normal"
	PriorityLow    Priority = "low"
)

// ParsePriority reads a priority as a user writes it; "" is normal.
func ParsePriority(s string) (Priority, error) {
	switch p := Priority(s); p {
	case "", PriorityNormal:
		return PriorityNormal, nil
	case PriorityHigh, PriorityLow:
		return p, nil
	}
	return "", &RequestError{Reason: fmt.Sprintf("priority %q is not one of high, normal, low", s)}
}

// Or is p, or normal when p is empty.
func (p Priority) Or() Priority {
	if p == "" {
		return PriorityNormal
	}
	return p
}

// SubjectToken is the priority's token in a request subject: "" for
// normal (see broker.PriorityJobSubject).
func (p Priority) SubjectToken() string {
	if p == PriorityHigh || p == PriorityLow {
		return string(p)
	}
	return ""
}

var schedulePattern = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,39}$`)

var (
	commitPattern = regexp.MustCompile(`^[0-9a-f]{40}$`)
	// durationPattern and createdAtPattern are the patterns of timeout and
	// created_at in request.schema.json: the worker takes exactly what the
	// published schema allows.
	durationPattern  = regexp.MustCompile(`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`)
	createdAtPattern = regexp.MustCompile(`^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]+)?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$`)
)

// DecodeRequest decodes and structurally validates an encoded request. It is
// exactly as strict as request.schema.json, except where the schema cannot
// say it (size, UTF-8, duplicate names, the zero created_at):
//
//   - Field names match exactly. encoding/json would take "Command" or
//     "PARAMS" for command and params; DecodeRequest refuses them, like any
//     unknown field, so that a misspelt field is an error rather than
//     silently ignored or silently taken.
//   - A name given twice, at the top level or among the params, is an error:
//     parsers disagree on which value wins (encoding/json takes the last,
//     others the first), so the request is ambiguous.
//   - No field may be null; leave out a field that has no value.
//   - params are an object of lower-case names to a string, a number, a
//     boolean or a list of strings. They are checked against the command
//     later; see CommandSpec.ValidateParams.
//   - version is compared by value, so 1.0 is 1; timeout and created_at
//     follow the schema's patterns; module_commit, when present, is a full
//     commit hash. A timeout too long for a time.Duration (about 292 years)
//     is taken as the longest one: the command's own timeout wins anyway.
func DecodeRequest(data []byte) (Request, error) {
	var r Request
	if len(data) > MaxFanoutRequestBytes {
		return r, &RequestError{Reason: fmt.Sprintf("request is %d bytes, more than the %d allowed", len(data), MaxRequestBytes)}
	}
	if !utf8.Valid(data) {
		return r, &RequestError{Reason: "request is not valid UTF-8 JSON"}
	}
	if err := r.decode(data); err != nil {
		return Request{}, err
	}
	if err := r.Validate(); err != nil {
		return Request{}, err
	}
	if len(data) > r.SizeLimit() {
		return Request{}, &RequestError{Reason: fmt.Sprintf("request is %d bytes, more than the %d allowed", len(data), MaxRequestBytes)}
	}
	return r, nil
}

// notDocument says the request is not a well-formed request document.
func notDocument(format string, args ...any) error {
	return &RequestError{Reason: "request is not a valid JSON request document: " + fmt.Sprintf(format, args...)}
}

// requestField decodes one member of a request document, whose raw value is
// of the JSON kind the field takes.
type requestField struct {
	name string
	kind string // of JSON value: "string", "number" or "object"
	set  func(r *Request, raw []byte) error
}

// requestFields are the fields of a request document, in the order of
// Request's fields.
var requestFields = []requestField{
	{"version", "number", func(r *Request, raw []byte) error {
		n, ok := jsonInt(string(raw))
		if !ok {
			return &RequestError{Reason: fmt.Sprintf("version is %s; this worker understands version %d", raw, Version)}
		}
		r.Version = n
		return nil
	}},
	{"id", "string", func(r *Request, raw []byte) (err error) { r.ID, err = jsonString(raw); return err }},
	{"command", "string", func(r *Request, raw []byte) (err error) { r.Command, err = jsonString(raw); return err }},
	{"params", "object", func(r *Request, raw []byte) error {
		p, err := decodeParams(raw)
		r.Params = p
		return err
	}},
	{"queue", "string", func(r *Request, raw []byte) (err error) { r.Queue, err = jsonString(raw); return err }},
	{"principal", "string", func(r *Request, raw []byte) (err error) { r.Principal, err = jsonString(raw); return err }},
	{"idempotency_key", "string", func(r *Request, raw []byte) (err error) { r.IdempotencyKey, err = jsonString(raw); return err }},
	{"timeout", "string", func(r *Request, raw []byte) error {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return err
		}
		if !durationPattern.MatchString(s) {
			return &RequestError{Reason: fmt.Sprintf("timeout %q is not a duration: write numbers with units (ns, us, µs, ms, s, m, h), like 90s, 10m or 1h30m", s)}
		}
		d, err := time.ParseDuration(s)
		if err != nil {
			// The pattern leaves only overflow: longer than any command runs.
			d = math.MaxInt64
		}
		r.Timeout = Duration(d)
		return nil
	}},
	{"created_at", "string", func(r *Request, raw []byte) error {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return err
		}
		t, err := time.Parse(time.RFC3339, s)
		if err != nil || !createdAtPattern.MatchString(s) {
			return &RequestError{Reason: fmt.Sprintf("created_at %q is not a valid RFC 3339 date and time: write it like 2026-11-28T12:00:00Z or 2026-11-28T13:00:00.5+01:00", s)}
		}
		r.CreatedAt = t
		return nil
	}},
	{"module_commit", "string", func(r *Request, raw []byte) error {
		if err := json.Unmarshal(raw, &r.ModuleCommit); err != nil {
			return err
		}
		if !commitPattern.MatchString(r.ModuleCommit) {
			return &RequestError{Reason: fmt.Sprintf("module_commit %q is not a full commit hash (40 lower-case hex digits); leave the field out to run the module's current commit", r.ModuleCommit)}
		}
		return nil
	}},
	{"notify", "array", func(r *Request, raw []byte) error {
		n, err := decodeNotify(raw)
		if len(n) > 0 {
			r.Notify = n
		}
		return err
	}},
	{"priority", "string", func(r *Request, raw []byte) error {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return err
		}
		if s == "" {
			return &RequestError{Reason: `priority "" is not one of high, normal, low (leave the field out for normal)`}
		}
		p, err := ParsePriority(s)
		r.Priority = p
		return err
	}},
	{"schedule", "string", func(r *Request, raw []byte) error {
		if err := json.Unmarshal(raw, &r.Schedule); err != nil {
			return err
		}
		if !schedulePattern.MatchString(r.Schedule) {
			return &RequestError{Reason: fmt.Sprintf("schedule %q is not a schedule name (1 to 40 lower-case letters, digits, '-' or '_', starting with a letter)", r.Schedule)}
		}
		return nil
	}},
	{"parent_id", "string", func(r *Request, raw []byte) error {
		if err := json.Unmarshal(raw, &r.ParentID); err != nil {
			return err
		}
		if !ValidJobID(r.ParentID) {
			return &RequestError{Reason: fmt.Sprintf("parent_id %q is not a job id", r.ParentID)}
		}
		return nil
	}},
	{"each", "object", func(r *Request, raw []byte) error {
		var e Each
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&e); err != nil {
			return &RequestError{Reason: fmt.Sprintf("each: %s (write {\"param\": NAME, \"values\": [\"a\", \"b\"]})", describeJSONError(err))}
		}
		r.Each = &e
		return nil
	}},
	{"parallel", "number", func(r *Request, raw []byte) error {
		n, ok := jsonInt(string(raw))
		if !ok || n < 1 || n > MaxFanout {
			return &RequestError{Reason: fmt.Sprintf("parallel is %s: want a whole number from 1 to %d", raw, MaxFanout)}
		}
		r.Parallel = n
		return nil
	}},
	{"fail_fast", "boolean", func(r *Request, raw []byte) error { return json.Unmarshal(raw, &r.FailFast) }},
}

// requestFieldNames lists the field names for error messages.
var requestFieldNames = func() string {
	names := make([]string, len(requestFields))
	for i, f := range requestFields {
		names[i] = f.name
	}
	return strings.Join(names, ", ")
}()

// decode reads a request document into r, field by field.
func (r *Request) decode(data []byte) error {
	return eachMember(data, "field", func(name string, raw []byte) error {
		i := slices.IndexFunc(requestFields, func(f requestField) bool { return f.name == name })
		if i < 0 {
			return notDocument("unknown field %q (%s)", name, suggestField(name))
		}
		f := requestFields[i]
		if kind := jsonKind(raw); kind != f.kind {
			if kind == "null" {
				return notDocument("field %q must be a JSON %s, not null (leave out a field that has no value)", name, f.kind)
			}
			return notDocument("field %q must be a JSON %s, not a JSON %s", name, f.kind, kind)
		}
		if err := f.set(r, raw); err != nil {
			var reqErr *RequestError
			if errors.As(err, &reqErr) {
				return err
			}
			return notDocument("field %q: %v", name, err)
		}
		return nil
	})
}

// suggestField says what to write instead of an unknown field name.
func suggestField(name string) string {
	strip := func(s string) string { return strings.NewReplacer("_", "", "-", "", " ", "").Replace(s) }
	for _, f := range requestFields {
		if strings.EqualFold(name, f.name) {
			return fmt.Sprintf("field names are lower-case: did you mean %q?", f.name)
		}
	}
	for _, f := range requestFields {
		if strings.EqualFold(strip(name), strip(f.name)) {
			return fmt.Sprintf("did you mean %q?", f.name)
		}
	}
	return "the fields are " + requestFieldNames
}

// eachMember calls fn with the name and raw value of each member of the JSON
// object that is the whole of data. A name given twice is an error: which
// value counts would depend on the parser. member names a member in errors:
// "field" or "parameter".
//
// A well-formed document (json.Valid, which allocates nothing) is split by
// scanMembers in one pass; anything else goes token by token through
// encoding/json's decoder, whose errors say where the document went wrong.
// Both call fn in document order, so the first error is the same either way
// (FuzzEachMember holds them to it).
func eachMember(data []byte, member string, fn func(name string, raw []byte) error) error {
	if json.Valid(data) {
		return scanMembers(data, member, fn)
	}
	return decodeMembers(data, member, fn)
}

// scanMembers is eachMember for a document json.Valid accepted: with the
// syntax known good, finding where each name and value ends is all that is
// left to do.
func scanMembers(data []byte, member string, fn func(name string, raw []byte) error) error {
	i := skipSpace(data, 0)
	if data[i] != '{' {
		return notDocument("it is %s, not an object", withArticle(jsonKind(data[i:])))
	}
	var seenBuf [16]string
	seen := seenBuf[:0]
	for i = skipSpace(data, i+1); data[i] != '}'; i = skipSpace(data, i) {
		if data[i] == ',' {
			i = skipSpace(data, i+1)
		}
		end := valueEnd(data, i)
		name, err := jsonString(data[i:end])
		if err != nil {
			return notDocument("%s", describeJSONError(err))
		}
		i = skipSpace(data, skipSpace(data, end)+1) // past the colon
		end = valueEnd(data, i)
		if slices.Contains(seen, name) {
			return notDocument("%s %q is given more than once (give each %s once)", member, name, member)
		}
		seen = append(seen, name)
		if err := fn(name, data[i:end]); err != nil {
			return err
		}
		i = end
	}
	return nil
}

// skipSpace returns the index of the first byte at or after i that is not
// JSON white space.
func skipSpace(data []byte, i int) int {
	for i < len(data) && (data[i] == ' ' || data[i] == '\t' || data[i] == '\n' || data[i] == '\r') {
		i++
	}
	return i
}

// valueEnd returns the index just past the well-formed JSON value that
// starts at data[i].
func valueEnd(data []byte, i int) int {
	switch data[i] {
	case '"':
		for i++; data[i] != '"'; i++ {
			if data[i] == '\\' {
				i++ // the escaped byte cannot end the string
			}
		}
		return i + 1
	case '{', '[':
		depth := 0
		for ; ; i++ {
			switch data[i] {
			case '"':
				i = valueEnd(data, i) - 1
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return i + 1
				}
			}
		}
	}
	for ; i < len(data); i++ { // a number, true, false or null
		switch data[i] {
		case ' ', '\t', '\r', '\n', ',', '}', ']':
			return i
		}
	}
	return i
}

// arrayItems yields the index and raw value of each item of the
// well-formed JSON array raw.
func arrayItems(raw []byte) iter.Seq2[int, []byte] {
	return func(yield func(int, []byte) bool) {
		i := skipSpace(raw, 1)
		for n := 0; raw[i] != ']'; n++ {
			end := valueEnd(raw, i)
			if !yield(n, raw[i:end]) {
				return
			}
			if i = skipSpace(raw, end); raw[i] == ',' {
				i = skipSpace(raw, i+1)
			}
		}
	}
}

// jsonString decodes a well-formed JSON string; one without escapes is
// taken as it is.
func jsonString(raw []byte) (string, error) {
	if len(raw) >= 2 && bytes.IndexByte(raw, '\\') < 0 {
		return string(raw[1 : len(raw)-1]), nil
	}
	var s string
	err := json.Unmarshal(raw, &s)
	return s, err
}

// decodeMembers is eachMember for a document that is not well-formed JSON,
// token by token, so that the error says what is wrong where.
func decodeMembers(data []byte, member string, fn func(name string, raw []byte) error) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return notDocument("%s", describeJSONError(err))
	}
	if tok != json.Delim('{') {
		return notDocument("it is %s, not an object", withArticle(tokenKind(tok)))
	}
	inside := func(err error) error {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return notDocument("%s", describeJSONError(err))
	}
	seen := make(map[string]bool)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return inside(err)
		}
		name, _ := tok.(string) // the decoder returns only strings as names
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return inside(err)
		}
		if seen[name] {
			return notDocument("%s %q is given more than once (give each %s once)", member, name, member)
		}
		seen[name] = true
		if err := fn(name, bytes.TrimLeft(raw, " \t\r\n")); err != nil {
			return err
		}
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return inside(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return &RequestError{Reason: "request has data after the JSON document"}
	}
	return nil
}

// decodeParams reads the params object: lower-case names, each to a string,
// a number (as a json.Number), a boolean or a list of strings (as []any), as
// the schema says. Which names and values the command takes is checked
// later.
func decodeParams(raw []byte) (map[string]any, error) {
	params := make(map[string]any)
	// raw came out of a well-formed document, whichever way it was read.
	err := scanMembers(raw, "parameter", func(name string, raw []byte) error {
		if !ValidParamName(name) {
			return &RequestError{Reason: fmt.Sprintf("parameter name %q is not valid: use 1 to 64 lower-case letters, digits and '_', starting with a letter", name)}
		}
		kind := jsonKind(raw)
		switch kind {
		case "string":
			s, err := jsonString(raw)
			if err != nil {
				return err
			}
			params[name] = s
		case "number":
			params[name] = json.Number(raw)
		case "boolean":
			params[name] = raw[0] == 't'
		case "array":
			list := []any{}
			for i, it := range arrayItems(raw) {
				if k := jsonKind(it); k != "string" {
					return &RequestError{Reason: fmt.Sprintf("parameter %q must be a list of strings; item %d is %s", name, i, withArticle(k))}
				}
				s, err := jsonString(it)
				if err != nil {
					return err
				}
				list = append(list, s)
			}
			params[name] = list
		default:
			hint := ""
			if kind == "null" {
				hint = " (leave out a parameter to use its default)"
			}
			return &RequestError{Reason: fmt.Sprintf("parameter %q must be a string, a number, a boolean or a list of strings, not %s%s", name, withArticle(kind), hint)}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return params, nil
}

// jsonKind names the kind of a raw JSON value, as JSON Schema's types do.
func jsonKind(raw []byte) string {
	raw = bytes.TrimLeft(raw, " \t\r\n")
	if len(raw) == 0 {
		return "nothing"
	}
	switch raw[0] {
	case '{':
		return "object"
	case '[':
		return "array"
	case '"':
		return "string"
	case 't', 'f':
		return "boolean"
	case 'n':
		return "null"
	}
	return "number"
}

func tokenKind(tok json.Token) string {
	switch tok.(type) {
	case json.Delim:
		return "array" // the only other opening token
	case string:
		return "string"
	case json.Number, float64:
		return "number"
	case bool:
		return "boolean"
	}
	return "null"
}

func withArticle(kind string) string {
	switch kind {
	case "null":
		return "null"
	case "object", "array":
		return "an " + kind
	}
	return "a " + kind
}

// jsonInt returns the value of the JSON number num if it is a whole number of
// at most nine digits. Like JSON Schema, it goes by value: 1, 1.0, 1e0 and
// 10e-1 are all 1.
func jsonInt(num string) (int, bool) {
	neg := strings.HasPrefix(num, "-")
	num = strings.TrimPrefix(num, "-")
	mantissa, expText := num, ""
	if i := strings.IndexAny(num, "eE"); i >= 0 {
		mantissa, expText = num[:i], num[i+1:]
	}
	whole, frac, _ := strings.Cut(mantissa, ".")
	digits := strings.TrimLeft(whole+frac, "0")
	if digits == "" {
		return 0, true // zero, whatever the exponent
	}
	exp := -len(frac)
	if expText != "" {
		e, err := strconv.Atoi(expText)
		if err != nil || e > 1e9 || e < -1e9 {
			return 0, false // far from a nine-digit whole number
		}
		exp += e
	}
	trimmed := strings.TrimRight(digits, "0")
	exp += len(digits) - len(trimmed)
	if exp < 0 || len(trimmed)+exp > 9 {
		return 0, false
	}
	n, err := strconv.Atoi(trimmed + strings.Repeat("0", exp))
	if err != nil {
		return 0, false
	}
	if neg {
		n = -n
	}
	return n, true
}

// Validate checks the request's own fields (not its parameters).
func (r Request) Validate() error {
	switch {
	case r.Version != Version:
		return &RequestError{Reason: fmt.Sprintf("version is %d; this worker understands version %d", r.Version, Version)}
	case !ValidJobID(r.ID):
		return &RequestError{Reason: fmt.Sprintf("id %q is not valid: use 1 to 64 lower-case letters, digits, '-' or '_'", r.ID)}
	case r.Command == "":
		return &RequestError{Reason: "command is missing: name one as module.command, for example core.echo"}
	case !ValidQueue(r.Queue):
		return &RequestError{Reason: fmt.Sprintf("queue %q is not valid: use 1 to 32 lower-case letters, digits, '-' or '_'", r.Queue)}
	case !ValidPrincipal(r.Principal):
		return &RequestError{Reason: fmt.Sprintf("principal %q is not valid: use 1 to 64 letters, digits, '-', '_' or '@'", r.Principal)}
	case r.CreatedAt.IsZero():
		return &RequestError{Reason: "created_at is missing"}
	}
	if r.ModuleCommit != "" && !commitPattern.MatchString(r.ModuleCommit) {
		return &RequestError{Reason: fmt.Sprintf("module_commit %q is not a full commit hash (40 lower-case hex digits)", r.ModuleCommit)}
	}
	if r.Priority != "" {
		if _, err := ParsePriority(string(r.Priority)); err != nil {
			return err
		}
	}
	if r.Schedule != "" && !schedulePattern.MatchString(r.Schedule) {
		return &RequestError{Reason: fmt.Sprintf("schedule %q is not a schedule name", r.Schedule)}
	}
	if _, _, ok := SplitCommand(r.Command); !ok {
		return &RequestError{Reason: fmt.Sprintf("command %q is not of the form module.command (lower-case names)", r.Command)}
	}
	if len(r.Notify) > MaxNotifyTargets {
		return &RequestError{Reason: fmt.Sprintf("notify has %d targets, more than the %d allowed", len(r.Notify), MaxNotifyTargets)}
	}
	for i, n := range r.Notify {
		if err := n.Check(); err != nil {
			return &RequestError{Reason: fmt.Sprintf("notify item %d: %v", i, err)}
		}
	}
	return r.validateFanout()
}

// validateFanout checks the fan-out fields: values to fan out over, a
// parallelism only with them.
func (r Request) validateFanout() error {
	if r.ParentID != "" && !ValidJobID(r.ParentID) {
		return &RequestError{Reason: fmt.Sprintf("parent_id %q is not a job id", r.ParentID)}
	}
	if r.Each == nil {
		if r.Parallel != 0 || r.FailFast {
			return &RequestError{Reason: "parallel and fail_fast apply to a fan-out: give each too"}
		}
		return nil
	}
	switch e := r.Each; {
	case len(r.ID) > maxFanoutParentID:
		return &RequestError{Reason: fmt.Sprintf("id %q is too long for a fan-out: at most %d characters, so that its children's ids (<id>-<index>) fit", r.ID, maxFanoutParentID)}
	case !ValidParamName(e.Param):
		return &RequestError{Reason: fmt.Sprintf("each: param %q is not a parameter name", e.Param)}
	case len(e.Values) == 0:
		return &RequestError{Reason: "each: values is empty: give at least one value to run the command for"}
	case len(e.Values) > MaxFanout:
		return &RequestError{Reason: fmt.Sprintf("each: %d values, more than the %d a fan-out takes: split them", len(e.Values), MaxFanout)}
	case r.Parallel < 0 || r.Parallel > MaxFanout:
		return &RequestError{Reason: fmt.Sprintf("parallel is %d: want a whole number from 1 to %d", r.Parallel, MaxFanout)}
	}
	if _, ok := r.Params[r.Each.Param]; ok {
		return &RequestError{Reason: fmt.Sprintf("each: param %q is also given in params: each value replaces it, so give it in one place", r.Each.Param)}
	}
	return nil
}

// FanoutChild is the request of the fan-out's child for the value at
// index: the parent's command, parameters and settings with the value in
// Each.Param.
func (r Request) FanoutChild(index int) Request {
	c := r
	c.ID = FanoutChildID(r.ID, index)
	c.ParentID = r.ID
	c.Each, c.Parallel, c.FailFast, c.IdempotencyKey = nil, 0, false, ""
	c.Params = make(map[string]any, len(r.Params)+1)
	for k, v := range r.Params {
		c.Params[k] = v
	}
	c.Params[r.Each.Param] = r.Each.Values[index]
	return c
}

// RequestError says why a request cannot run at all. A worker answers it with
// a rejected event and never retries.
type RequestError struct{ Reason string }

func (e *RequestError) Error() string { return e.Reason }

func describeJSONError(err error) string {
	var syn *json.SyntaxError
	switch {
	case errors.As(err, &syn):
		return fmt.Sprintf("%v (at byte %d)", syn, syn.Offset)
	case errors.Is(err, io.EOF):
		return "it is empty"
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "it ends before the document does"
	}
	return err.Error()
}
