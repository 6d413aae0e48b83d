package schema

import (
	"encoding/base64"
	"fmt"
	"regexp"
	"strings"
)

// Concurrency limits how many runs of a command hold a slot of one key at
// once, across the fleet. The key may name the command's parameters in
// braces ("db-{name}"), so that runs on different targets do not wait for
// each other. A run that finds every slot held waits, without holding a
// worker, until one is freed (docs/ARCHITECTURE.md, "Concurrency limits").
type Concurrency struct {
	Key   string `json:"key"`
	Limit int    `json:"limit"`
}

// MaxConcurrencyKey bounds a concurrency key once its parameters are filled
// in.
const MaxConcurrencyKey = 200

var keyParam = regexp.MustCompile(`\{([^{}]*)\}`)

// check validates the declaration against the command's parameters.
func (c Concurrency) check(spec CommandSpec, v *ValidationError) {
	if strings.TrimSpace(c.Key) == "" {
		v.add("concurrency.key", `is required: name what runs may not share, like "migrations" or "db-{name}"`)
	}
	if c.Limit < 1 {
		v.add("concurrency.limit", fmt.Sprintf("is %d: at least 1 run must be able to hold the key", c.Limit))
	}
	for _, m := range keyParam.FindAllStringSubmatch(c.Key, -1) {
		p, ok := spec.Params[m[1]]
		switch {
		case !ok:
			v.add("concurrency.key", fmt.Sprintf("{%s} is not a parameter of this command%s", m[1], spec.suggest()))
		case p.Secret:
			v.add("concurrency.key", fmt.Sprintf("{%s} is a secret parameter: a key is shown to everyone who asks why a job waits", m[1]))
		case p.Type == TypeList:
			v.add("concurrency.key", fmt.Sprintf("{%s} is a list: a key takes one value", m[1]))
		}
	}
	if strings.ContainsAny(keyParam.ReplaceAllString(c.Key, ""), "{}") {
		v.add("concurrency.key", "has an unmatched brace: write parameters as {name}")
	}
}

// ConcurrencyKey is the key a run with the given validated parameters
// (CommandSpec.ValidateParams) holds a slot of; "" when the command has no
// limit.
func (c CommandSpec) ConcurrencyKey(params map[string]any) string {
	if c.Concurrency == nil {
		return ""
	}
	key := keyParam.ReplaceAllStringFunc(c.Concurrency.Key, func(m string) string {
		v, ok := params[m[1:len(m)-1]]
		if !ok || v == nil {
			return ""
		}
		return fmt.Sprint(v)
	})
	if len(key) > MaxConcurrencyKey {
		key = key[:MaxConcurrencyKey]
	}
	return key
}

var plainSlotKey = regexp.MustCompile(`^[A-Za-z0-9_-]{1,200}$`)

// SlotBucketKey is the key of a concurrency key's entry in the slots bucket:
// the key itself when it is made of letters, digits, '-' and '_' (so that an
// operator reads it), else its base64.
func SlotBucketKey(key string) string {
	if plainSlotKey.MatchString(key) {
		return "key." + key
	}
	return "key64." + base64.RawURLEncoding.EncodeToString([]byte(key))
}

// CheckFanoutParam says whether a fan-out may give its values in param:
// a parameter of the command that takes text (a string or an enum), and
// not a secret (its value names a child in every listing).
func (c CommandSpec) CheckFanoutParam(param string) error {
	p, ok := c.Params[param]
	switch {
	case !ok:
		return fmt.Errorf("%q is not a parameter of this command%s", param, c.suggest())
	case p.Secret:
		return fmt.Errorf("%q is a secret parameter: a fan-out's values are shown with its children", param)
	case p.Type != TypeString && p.Type != TypeEnum:
		return fmt.Errorf("%q is of type %s: a fan-out's values are text, so it takes a string or enum parameter", param, p.Type)
	}
	return nil
}
