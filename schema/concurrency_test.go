package schema_test

import (
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/winchhq/winch/schema"
)

func TestConcurrencyCheck(t *testing.T) {
	t.Parallel()
	params := map[string]schema.ParamSpec{
		"name":  {Type: schema.TypeString, Required: true},
		"token": {Type: schema.TypeString, Secret: true},
		"dbs":   {Type: schema.TypeList},
	}
	for _, tt := range []struct {
		name    string
		c       schema.Concurrency
		wantErr string
	}{
		{"fixed key", schema.Concurrency{Key: "migrations", Limit: 3}, ""},
		{"key with a parameter", schema.Concurrency{Key: "db-{name}", Limit: 1}, ""},
		{"no key", schema.Concurrency{Limit: 1}, "concurrency.key: is required"},
		{"no limit", schema.Concurrency{Key: "x"}, "concurrency.limit: is 0"},
		{"unknown parameter", schema.Concurrency{Key: "db-{nmae}", Limit: 1}, "{nmae} is not a parameter of this command; it takes dbs, name, token"},
		{"secret parameter", schema.Concurrency{Key: "{token}", Limit: 1}, "{token} is a secret parameter"},
		{"list parameter", schema.Concurrency{Key: "{dbs}", Limit: 1}, "{dbs} is a list"},
		{"unmatched brace", schema.Concurrency{Key: "db-{name", Limit: 1}, "unmatched brace"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := tt.c
			spec := schema.CommandSpec{Run: []string{"true"}, Params: params, Concurrency: &c}
			err := spec.Check()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error %v, want one with %q", err, tt.wantErr)
			}
		})
	}
}

func TestConcurrencyKey(t *testing.T) {
	t.Parallel()
	spec := schema.CommandSpec{Concurrency: &schema.Concurrency{Key: "db-{name}-{n}", Limit: 1}}
	if got := spec.ConcurrencyKey(map[string]any{"name": "main", "n": int64(2)}); got != "db-main-2" {
		t.Fatalf("key %q", got)
	}
	if got := (schema.CommandSpec{}).ConcurrencyKey(nil); got != "" {
		t.Fatalf("a command without a limit has key %q", got)
	}
	for key, want := range map[string]string{"db-main": "key.db-main", "a b/c": "key64.YSBiL2M"} {
		if got := schema.SlotBucketKey(key); got != want {
			t.Errorf("SlotBucketKey(%q) = %q, want %q", key, got, want)
		}
	}
}

func TestValidateFanout(t *testing.T) {
	t.Parallel()
	base := func() schema.Request {
		return schema.Request{Version: schema.Version, ID: "p1", Command: "db.vacuum", Queue: "default", Principal: "ann",
			CreatedAt: validRequest().CreatedAt, Each: &schema.Each{Param: "name", Values: []string{"a", "b"}}, Parallel: 2}
	}
	for _, tt := range []struct {
		name    string
		edit    func(*schema.Request)
		wantErr string
	}{
		{"valid", func(*schema.Request) {}, ""},
		{"parallel without each", func(r *schema.Request) { r.Each = nil }, "parallel and fail_fast apply to a fan-out"},
		{"no values", func(r *schema.Request) { r.Each.Values = nil }, "values is empty"},
		{"too many values", func(r *schema.Request) { r.Each.Values = make([]string, schema.MaxFanout+1) }, "10001 values, more than the 10000"},
		{"bad param name", func(r *schema.Request) { r.Each.Param = "Name" }, `param "Name" is not a parameter name`},
		{"param also given", func(r *schema.Request) { r.Params = map[string]any{"name": "x"} }, "also given in params"},
		{"id too long", func(r *schema.Request) { r.ID = strings.Repeat("a", 60) }, "too long for a fan-out"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := base()
			tt.edit(&r)
			err := r.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error %v, want one with %q", err, tt.wantErr)
			}
		})
	}
	child := base().FanoutChild(1)
	if child.ID != "p1-1" || child.ParentID != "p1" || child.Params["name"] != "b" || child.Each != nil || child.Parallel != 0 {
		t.Fatalf("child %+v", child)
	}
}

func TestParseEach(t *testing.T) {
	t.Parallel()
	one := schema.CommandSpec{Params: map[string]schema.ParamSpec{"name": {Type: schema.TypeString, Required: true}, "n": {Type: schema.TypeInt}}}
	two := schema.CommandSpec{Params: map[string]schema.ParamSpec{"a": {Type: schema.TypeString, Required: true}, "b": {Type: schema.TypeString, Required: true}}}
	for _, tt := range []struct {
		name      string
		spec      schema.CommandSpec
		arg       string
		lines     string // with a reader when not ""
		wantParam string
		want      []string
		wantErr   string
	}{
		{"named list", one, "name=a,b,c", "", "name", []string{"a", "b", "c"}, ""},
		{"dashes in the name", two, "a=x", "", "a", []string{"x"}, ""},
		{"the one required text parameter", one, "a,b", "", "name", []string{"a", "b"}, ""},
		{"a value with =", one, "name=k=v", "", "name", []string{"k=v"}, ""},
		{"ambiguous", two, "x,y", "", "", nil, "say which parameter takes the values"},
		{"lines", one, "", "a\n\n  b \nc", "name", []string{"a", "b", "c"}, ""},
		{"lines, named", two, "b", "x\n", "b", []string{"x"}, ""},
		{"lines, bad name", one, "N!", "x\n", "", nil, `"N!" is not a parameter name`},
		{"no lines", one, "", "\n\n", "", nil, "no values"},
		{"too many lines", one, "", strings.Repeat("v\n", schema.MaxFanout+1), "", nil, "more than 10000 values"},
		{"too many values", one, strings.Repeat("v,", schema.MaxFanout), "", "", nil, "10001 values, more than the 10000"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var r io.Reader
			if tt.lines != "" {
				r = strings.NewReader(tt.lines)
			}
			got, err := schema.ParseEach(tt.spec, tt.arg, r)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || got.Param != tt.wantParam || !slices.Equal(got.Values, tt.want) {
				t.Fatalf("got %+v %v", got, err)
			}
		})
	}
}

// FuzzParseEach: any text gives values a request takes, or an error; never
// a panic.
func FuzzParseEach(f *testing.F) {
	spec := schema.CommandSpec{Params: map[string]schema.ParamSpec{"name": {Type: schema.TypeString, Required: true}}}
	for _, seed := range []string{"name=a,b,c", "a,b", "=", "name=", ",,,", "Level=1", "name=a=b,c"} {
		f.Add(seed, "a\nb\n\n c \n", false)
		f.Add(seed, "", true)
	}
	f.Fuzz(func(t *testing.T, arg, text string, lines bool) {
		var r io.Reader
		if lines {
			r = strings.NewReader(text)
		}
		each, err := schema.ParseEach(spec, arg, r)
		if err != nil {
			return
		}
		req := schema.Request{Version: schema.Version, ID: "p", Command: "x.y", Queue: "q", Principal: "p",
			CreatedAt: time.Unix(1e9, 0), Each: each, Parallel: 1}
		if err := req.Validate(); err != nil {
			t.Fatalf("ParseEach(%q) gave %+v, which a request refuses: %v", arg, each, err)
		}
	})
}
