package schema_test

import (
	"strings"
	"testing"

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
