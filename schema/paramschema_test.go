package schema_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/winchhq/winch/schema"
)

// The JSON Schema of a command's parameters accepts what ValidateParams
// accepts and refuses what it refuses, so that a form built from it sends
// what the workers will run.
func TestParamsJSONSchemaAgreesWithValidateParams(t *testing.T) {
	t.Parallel()
	min, max := 1.0, 9.0
	spec := schema.CommandSpec{Run: []string{"true"}, Params: map[string]schema.ParamSpec{
		"name":   {Type: schema.TypeString, Required: true, Pattern: "^[a-z]+$", Help: "a name"},
		"level":  {Type: schema.TypeEnum, Values: []string{"low", "high"}, Default: "low"},
		"count":  {Type: schema.TypeInt, Min: &min, Max: &max, Default: 2},
		"ratio":  {Type: schema.TypeFloat},
		"loud":   {Type: schema.TypeBool},
		"tags":   {Type: schema.TypeList, Pattern: "^[a-z]+$"},
		"secret": {Type: schema.TypeString, Secret: true},
	}}
	raw, _ := json.Marshal(spec.ParamsJSONSchema())
	doc, err := jsonschema.UnmarshalJSON(strings.NewReader(string(raw)))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource("params.json", doc); err != nil {
		t.Fatal(err)
	}
	sch, err := c.Compile("params.json")
	if err != nil {
		t.Fatalf("the schema does not compile: %v\n%s", err, raw)
	}
	for _, tc := range []struct {
		params string
		ok     bool
	}{
		{`{"name":"zed"}`, true},
		{`{"name":"zed","level":"high","count":9,"ratio":0.5,"loud":true,"tags":["a","b"],"secret":"x"}`, true},
		{`{"name":"zed","count":3.0}`, true},
		{`{}`, false},
		{`{"name":"Zed"}`, false},
		{`{"name":"zed","level":"medium"}`, false},
		{`{"name":"zed","count":10}`, false},
		{`{"name":"zed","count":0}`, false},
		{`{"name":"zed","count":2.5}`, false},
		{`{"name":"zed","count":"2"}`, false},
		{`{"name":"zed","loud":"yes"}`, false},
		{`{"name":"zed","ratio":"1"}`, false},
		{`{"name":"zed","tags":["A"]}`, false},
		{`{"name":"zed","tags":"a"}`, false},
		{`{"name":"zed","colour":"red"}`, false},
	} {
		var params map[string]any
		dec := json.NewDecoder(strings.NewReader(tc.params))
		dec.UseNumber()
		if err := dec.Decode(&params); err != nil {
			t.Fatal(err)
		}
		_, verr := spec.ValidateParams(params)
		inst, _ := jsonschema.UnmarshalJSON(strings.NewReader(tc.params))
		serr := sch.Validate(inst)
		if (verr == nil) != tc.ok || (serr == nil) != tc.ok {
			t.Errorf("%s: ValidateParams %v, schema %v; want ok=%v", tc.params, verr, serr, tc.ok)
		}
	}
	var s map[string]any
	_ = json.Unmarshal(raw, &s)
	secret := s["properties"].(map[string]any)["secret"].(map[string]any)
	if secret["format"] != "password" || secret["writeOnly"] != true {
		t.Fatalf("secret: %v", secret)
	}
}
