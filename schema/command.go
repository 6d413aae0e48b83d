package schema

import (
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// ParamType is the type of a command parameter.
type ParamType string

// Parameter types.
const (
	TypeString ParamType = "string"
	TypeInt    ParamType = "int"
	TypeFloat  ParamType = "float"
	TypeBool   ParamType = "bool"
	TypeEnum   ParamType = "enum"
	TypeList   ParamType = "list" // a list of strings
)

// CommandSpec declares one command of a module: its parameters, the argv it
// runs and the limits it runs within.
type CommandSpec struct {
	Help      string               `json:"help,omitempty"`
	Params    map[string]ParamSpec `json:"params,omitempty"`
	Run       []string             `json:"run"`
	Timeout   Duration             `json:"timeout,omitempty"`
	Retry     bool                 `json:"retry,omitempty"`
	Roles     []string             `json:"roles,omitempty"`
	Network   string               `json:"network,omitempty"`
	Resources Resources            `json:"resources,omitzero"`
	// Notify is a webhook to call when a run of the command ends (in the
	// states listed), whoever ran it and however.
	Notify *NotifyTarget `json:"notify,omitempty"`
	// Concurrency, when set, bounds the runs of the command that hold its
	// key at once; the others wait their turn.
	Concurrency *Concurrency `json:"concurrency,omitempty"`
}

// Resources are the limits a command runs within.
type Resources struct {
	Memory ByteSize `json:"memory,omitempty"`
	CPUs   float64  `json:"cpus,omitempty"`
	Pids   int64    `json:"pids,omitempty"`
}

// ParamSpec declares one parameter.
type ParamSpec struct {
	Type     ParamType `json:"type"`
	Help     string    `json:"help,omitempty"`
	Required bool      `json:"required,omitempty"`
	Default  any       `json:"default,omitempty"`
	Pattern  string    `json:"pattern,omitempty"` // strings and list items
	Min      *float64  `json:"min,omitempty"`     // ints and floats
	Max      *float64  `json:"max,omitempty"`
	Values   []string  `json:"values,omitempty"` // enums
	Secret   bool      `json:"secret,omitempty"`
}

var paramName = regexp.MustCompile(`^[a-z][a-z0-9_]{0,63}$`)

// ValidParamName reports whether name can name a parameter: it becomes the
// environment variable WINCH_PARAM_<NAME> and the flag --name.
func ValidParamName(name string) bool { return paramName.MatchString(name) }

// ParamNames returns the command's parameter names, sorted.
func (c CommandSpec) ParamNames() []string {
	names := make([]string, 0, len(c.Params))
	for n := range c.Params {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Check validates the specification itself: types known, defaults of the
// declared type, patterns that compile, an argv to run. Errors name the
// field by its path below the command.
func (c CommandSpec) Check() error {
	var v ValidationError
	if len(c.Run) == 0 || c.Run[0] == "" {
		v.add("run", "must be a non-empty list: the argv to run, like [\"sh\", \"scripts/backup.sh\"]")
	}
	switch c.Network {
	case "", "none", "bridge", "host":
	default:
		v.add("network", fmt.Sprintf("%q is not one of none, bridge, host", c.Network))
	}
	if c.Resources.Memory < 0 || c.Resources.CPUs < 0 || c.Resources.Pids < 0 {
		v.add("resources", "limits must not be negative")
	}
	if c.Notify != nil {
		if err := c.Notify.Check(); err != nil {
			v.add("notify", err.Error())
		}
	}
	if c.Concurrency != nil {
		c.Concurrency.check(c, &v)
	}
	for _, name := range c.ParamNames() {
		p := c.Params[name]
		field := "params." + name
		if !ValidParamName(name) {
			v.add(field, "a parameter name is lower-case letters, digits and '_', starting with a letter")
		}
		switch p.Type {
		case TypeString, TypeInt, TypeFloat, TypeBool, TypeList:
		case TypeEnum:
			if len(p.Values) == 0 {
				v.add(field+".values", "an enum needs a list of values")
			}
		default:
			v.add(field+".type", fmt.Sprintf("%q is not one of string, int, float, bool, enum, list", p.Type))
			continue
		}
		if p.Pattern != "" {
			if p.Type != TypeString && p.Type != TypeList {
				v.add(field+".pattern", "only string and list parameters take a pattern")
			} else if _, err := regexp.Compile(p.Pattern); err != nil {
				v.add(field+".pattern", fmt.Sprintf("does not compile: %v", err))
			}
		}
		if (p.Min != nil || p.Max != nil) && p.Type != TypeInt && p.Type != TypeFloat {
			v.add(field, "only int and float parameters take min and max")
		}
		if p.Default != nil {
			if p.Required {
				v.add(field+".default", "a required parameter cannot have a default")
			} else if _, err := p.coerce(p.Default); err != nil {
				v.add(field+".default", err.Error())
			}
		}
	}
	return v.orNil()
}

// ValidateParams checks params against the command and returns them
// normalized: defaults filled in, every value of its Go type (string, int64,
// float64, bool or []string). Errors list every problem at once, each
// naming the parameter, not a flag (Field "text", Message "required";
// Field "code", Message `want a whole number, got "x"`): a front end adds
// its own syntax (the CLI's "--").
func (c CommandSpec) ValidateParams(params map[string]any) (map[string]any, error) {
	var v ValidationError
	out := make(map[string]any, len(c.Params))
	var undeclared []string
	for name := range params {
		if _, ok := c.Params[name]; !ok {
			undeclared = append(undeclared, name)
		}
	}
	sort.Strings(undeclared)
	for _, name := range undeclared {
		v.add(name, "not a parameter of this command"+c.suggest())
	}
	for _, name := range c.ParamNames() {
		p := c.Params[name]
		raw, ok := params[name]
		if !ok || raw == nil {
			switch {
			case p.Required:
				v.add(name, "required")
			case p.Default != nil:
				d, _ := p.coerce(p.Default) // checked by Check
				out[name] = d
			}
			continue
		}
		val, err := p.coerce(raw)
		if err != nil {
			v.add(name, err.Error())
			continue
		}
		out[name] = val
	}
	if err := v.orNil(); err != nil {
		return nil, err
	}
	return out, nil
}

func (c CommandSpec) suggest() string {
	if len(c.Params) == 0 {
		return "; it takes none"
	}
	return "; it takes " + strings.Join(c.ParamNames(), ", ")
}

// coerce converts a decoded JSON value (or a Go value) to the parameter's Go
// type and checks its constraints.
func (p ParamSpec) coerce(raw any) (any, error) {
	switch p.Type {
	case TypeString, TypeEnum:
		s, ok := raw.(string)
		if !ok {
			return nil, fmt.Errorf("want a string, got %s", describe(raw))
		}
		return s, p.checkString(s)
	case TypeBool:
		b, ok := raw.(bool)
		if !ok {
			return nil, fmt.Errorf("want true or false, got %s", describe(raw))
		}
		return b, nil
	case TypeInt:
		f, ok := number(raw)
		if !ok || f != math.Trunc(f) || math.Abs(f) > 1<<53 {
			return nil, fmt.Errorf("want a whole number, got %s", describe(raw))
		}
		return int64(f), p.checkRange(f)
	case TypeFloat:
		f, ok := number(raw)
		if !ok || math.IsNaN(f) || math.IsInf(f, 0) {
			return nil, fmt.Errorf("want a number, got %s", describe(raw))
		}
		return f, p.checkRange(f)
	case TypeList:
		var items []string
		switch l := raw.(type) {
		case []string:
			items = slices.Clone(l)
		case []any:
			for i, it := range l {
				s, ok := it.(string)
				if !ok {
					return nil, fmt.Errorf("item %d: want a string, got %s", i, describe(it))
				}
				items = append(items, s)
			}
		default:
			return nil, fmt.Errorf("want a list of strings, got %s", describe(raw))
		}
		for i, s := range items {
			if err := p.checkString(s); err != nil {
				return nil, fmt.Errorf("item %d: %w", i, err)
			}
		}
		if items == nil {
			items = []string{}
		}
		return items, nil
	}
	return nil, fmt.Errorf("has unknown type %q", p.Type)
}

func (p ParamSpec) checkString(s string) error {
	if strings.ContainsRune(s, 0) {
		return fmt.Errorf("must not contain a NUL byte")
	}
	if p.Type == TypeEnum && !slices.Contains(p.Values, s) {
		return fmt.Errorf("%q is not one of %s", s, strings.Join(p.Values, ", "))
	}
	if p.Pattern != "" {
		re, err := regexp.Compile(p.Pattern)
		if err != nil {
			return fmt.Errorf("pattern %q does not compile: %v", p.Pattern, err)
		}
		if !re.MatchString(s) {
			return fmt.Errorf("%q does not match %s", s, p.Pattern)
		}
	}
	return nil
}

func (p ParamSpec) checkRange(f float64) error {
	if p.Min != nil && f < *p.Min {
		return fmt.Errorf("%v is less than the minimum %v", f, *p.Min)
	}
	if p.Max != nil && f > *p.Max {
		return fmt.Errorf("%v is more than the maximum %v", f, *p.Max)
	}
	return nil
}

func number(raw any) (float64, bool) {
	switch n := raw.(type) {
	case json.Number:
		f, err := n.Float64()
		return f, err == nil
	case float64:
		return n, true
	case int:
		return float64(n), true
	case int64:
		return float64(n), true
	case uint64:
		return float64(n), true
	}
	return 0, false
}

func describe(raw any) string {
	switch v := raw.(type) {
	case string:
		return strconv.Quote(v)
	case json.Number, float64, int, int64, uint64:
		return fmt.Sprintf("the number %v", v)
	case bool:
		return fmt.Sprintf("the boolean %v", v)
	case []any, []string:
		return "a list"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%T", raw)
}

// ParseParam converts a command-line string to the parameter's type, for
// clients that take parameters as flags. Lists take comma-separated items.
func (p ParamSpec) ParseParam(s string) (any, error) {
	switch p.Type {
	case TypeInt:
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("want a whole number, got %q", s)
		}
		return n, nil
	case TypeFloat:
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return nil, fmt.Errorf("want a number, got %q", s)
		}
		return f, nil
	case TypeBool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return nil, fmt.Errorf("want true or false, got %q", s)
		}
		return b, nil
	case TypeList:
		if s == "" {
			return []string{}, nil
		}
		return strings.Split(s, ","), nil
	}
	return s, nil
}

// SecretValues returns the values of the parameters marked secret, so that
// they can be masked wherever they would appear.
func (c CommandSpec) SecretValues(params map[string]any) []string {
	var out []string
	for name, p := range c.Params {
		if !p.Secret {
			continue
		}
		switch v := params[name].(type) {
		case string:
			if v != "" {
				out = append(out, v)
			}
		case []string:
			for _, s := range v {
				if s != "" {
					out = append(out, s)
				}
			}
		}
	}
	return out
}

// Masked is what a secret value is replaced with.
const Masked = "***"

// MaskParams returns params with the values of secret parameters replaced by
// Masked, for events and logs.
func (c CommandSpec) MaskParams(params map[string]any) map[string]any {
	if params == nil {
		return nil
	}
	out := make(map[string]any, len(params))
	for k, v := range params {
		if p, ok := c.Params[k]; ok && p.Secret {
			v = Masked
		}
		out[k] = v
	}
	return out
}

// ParamEnv returns the environment variables that carry params to the
// command: WINCH_PARAM_<NAME>=value. Lists are newline-separated; the JSON
// parameter file has them exactly.
func ParamEnv(params map[string]any) []string {
	env := make([]string, 0, len(params))
	for name, v := range params {
		var s string
		switch x := v.(type) {
		case []string:
			s = strings.Join(x, "\n")
		case float64:
			s = strconv.FormatFloat(x, 'f', -1, 64)
		default:
			s = fmt.Sprint(x)
		}
		env = append(env, "WINCH_PARAM_"+strings.ToUpper(name)+"="+s)
	}
	sort.Strings(env)
	return env
}

// ValidationError lists every problem found in a document at once.
type ValidationError struct {
	Problems []Problem
}

// Problem is one thing wrong with one field.
type Problem struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

func (v *ValidationError) add(field, msg string) {
	v.Problems = append(v.Problems, Problem{Field: field, Message: msg})
}

func (v *ValidationError) orNil() error {
	if len(v.Problems) == 0 {
		return nil
	}
	return v
}

func (v *ValidationError) Error() string {
	parts := make([]string, len(v.Problems))
	for i, p := range v.Problems {
		parts[i] = p.Field + ": " + p.Message
	}
	return strings.Join(parts, "; ")
}
