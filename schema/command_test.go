package schema_test

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/winchhq/winch/schema"
)

func ptr(f float64) *float64 { return &f }

var backup = schema.CommandSpec{
	Help: "Back up one database",
	Run:  []string{"sh", "backup.sh"},
	Params: map[string]schema.ParamSpec{
		"name":     {Type: schema.TypeString, Required: true, Pattern: `^[a-z][a-z0-9_]*$`},
		"compress": {Type: schema.TypeBool, Default: true},
		"level":    {Type: schema.TypeInt, Default: int64(6), Min: ptr(1), Max: ptr(9)},
		"ratio":    {Type: schema.TypeFloat, Min: ptr(0), Max: ptr(1)},
		"format":   {Type: schema.TypeEnum, Values: []string{"sql", "custom"}, Default: "custom"},
		"tables":   {Type: schema.TypeList, Pattern: `^[a-z_]+$`},
		"password": {Type: schema.TypeString, Secret: true},
	},
}

func TestValidateParams(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		params  string // JSON, as a worker receives them
		want    map[string]any
		wantErr []string
	}{
		{
			name:   "defaults filled in and types normalized",
			params: `{"name":"main","level":3,"tables":["users","orders"],"ratio":0.5}`,
			want: map[string]any{"name": "main", "compress": true, "level": int64(3), "format": "custom",
				"tables": []string{"users", "orders"}, "ratio": 0.5},
		},
		{name: "missing required", params: `{}`, wantErr: []string{"name: required"}},
		{name: "wrong type", params: `{"name":"main","level":"three"}`, wantErr: []string{`level: want a whole number, got "three"`}},
		{name: "not whole", params: `{"name":"main","level":2.5}`, wantErr: []string{"level: want a whole number, got the number 2.5"}},
		{name: "below min", params: `{"name":"main","level":0}`, wantErr: []string{"level: 0 is less than the minimum 1"}},
		{name: "above max", params: `{"name":"main","ratio":2}`, wantErr: []string{"ratio: 2 is more than the maximum 1"}},
		{name: "pattern", params: `{"name":"Main"}`, wantErr: []string{`name: "Main" does not match ^[a-z][a-z0-9_]*$`}},
		{name: "enum", params: `{"name":"main","format":"xml"}`, wantErr: []string{`format: "xml" is not one of sql, custom`}},
		{name: "list item", params: `{"name":"main","tables":["ok","NO"]}`, wantErr: []string{`tables: item 1: "NO" does not match`}},
		{name: "list of numbers", params: `{"name":"main","tables":[1]}`, wantErr: []string{"tables: item 0: want a string, got the number 1"}},
		{name: "bool as string", params: `{"name":"main","compress":"yes"}`, wantErr: []string{`compress: want true or false, got "yes"`}},
		{name: "unknown", params: `{"name":"main","nmae":"x"}`, wantErr: []string{"nmae: not a parameter of this command; it takes compress"}},
		{name: "every problem at once", params: `{"level":"x","extra":1}`, wantErr: []string{"extra: not", "name: required", "level: want"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dec := json.NewDecoder(strings.NewReader(tt.params))
			dec.UseNumber()
			var raw map[string]any
			if err := dec.Decode(&raw); err != nil {
				t.Fatal(err)
			}
			got, err := backup.ValidateParams(raw)
			if len(tt.wantErr) == 0 {
				if err != nil {
					t.Fatalf("ValidateParams: %v", err)
				}
				if !reflect.DeepEqual(got, tt.want) {
					t.Fatalf("got %#v\nwant %#v", got, tt.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("ValidateParams accepted %s", tt.params)
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}

func TestParseParamFromFlags(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		param string
		in    string
		want  any
		err   bool
	}{
		{"level", "7", int64(7), false}, {"level", "x", nil, true},
		{"ratio", "0.25", 0.25, false}, {"compress", "false", false, false}, {"compress", "nope", nil, true},
		{"tables", "a,b", []string{"a", "b"}, false}, {"tables", "", []string{}, false}, {"name", "main", "main", false},
	} {
		got, err := backup.Params[tt.param].ParseParam(tt.in)
		if (err != nil) != tt.err || (!tt.err && !reflect.DeepEqual(got, tt.want)) {
			t.Errorf("ParseParam(%s, %q) = %#v, %v", tt.param, tt.in, got, err)
		}
	}
}

func TestSecretsAreMasked(t *testing.T) {
	t.Parallel()
	params := map[string]any{"name": "main", "password": "hunter2"}
	masked := backup.MaskParams(params)
	if masked["password"] != schema.Masked || masked["name"] != "main" {
		t.Fatalf("MaskParams = %v", masked)
	}
	if params["password"] != "hunter2" {
		t.Fatal("MaskParams changed its input")
	}
	if got := backup.SecretValues(params); !reflect.DeepEqual(got, []string{"hunter2"}) {
		t.Fatalf("SecretValues = %v", got)
	}
}

func TestParamEnv(t *testing.T) {
	t.Parallel()
	env := schema.ParamEnv(map[string]any{"name": "main", "level": int64(3), "ratio": 1e6, "on": true, "tables": []string{"a", "b"}})
	want := []string{"WINCH_PARAM_LEVEL=3", "WINCH_PARAM_NAME=main", "WINCH_PARAM_ON=true", "WINCH_PARAM_RATIO=1000000", "WINCH_PARAM_TABLES=a\nb"}
	if !reflect.DeepEqual(env, want) {
		t.Fatalf("ParamEnv = %q", env)
	}
}

func TestCheckSpec(t *testing.T) {
	t.Parallel()
	bad := schema.CommandSpec{
		Network: "internet",
		Params: map[string]schema.ParamSpec{
			"Bad":   {Type: schema.TypeString},
			"kind":  {Type: schema.TypeEnum},
			"n":     {Type: "number"},
			"p":     {Type: schema.TypeString, Pattern: "("},
			"m":     {Type: schema.TypeString, Min: ptr(1)},
			"d":     {Type: schema.TypeInt, Default: "x"},
			"r":     {Type: schema.TypeInt, Required: true, Default: int64(1)},
			"count": {Type: schema.TypeBool, Pattern: "x"},
		},
	}
	err := bad.Check()
	if err == nil {
		t.Fatal("Check accepted a bad spec")
	}
	for _, w := range []string{
		"run: must be a non-empty list",
		`network: "internet" is not one of none, bridge, host`,
		"params.Bad: a parameter name is lower-case",
		"params.kind.values: an enum needs a list of values",
		`params.n.type: "number" is not one of`,
		"params.p.pattern: does not compile",
		"params.m: only int and float parameters take min and max",
		`params.d.default: want a whole number, got "x"`,
		"params.r.default: a required parameter cannot have a default",
		"params.count.pattern: only string and list parameters take a pattern",
	} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("Check error does not say %q:\n%v", w, err)
		}
	}
	if err := backup.Check(); err != nil {
		t.Fatalf("Check rejected a good spec: %v", err)
	}
}
