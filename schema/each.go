package schema

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"
)

// ParseEach reads a fan-out's values as a user writes them: with lines
// nil, arg is "[PARAM=]A,B,..."; else arg is "[PARAM]" and the values are
// the lines of lines, trimmed, empty ones skipped. Without PARAM, the
// values go to the command's one required text parameter, if it has
// exactly one.
func ParseEach(spec CommandSpec, arg string, lines io.Reader) (*Each, error) {
	param, rest, named := strings.Cut(arg, "=")
	if lines != nil {
		param, rest, named = arg, "", arg != ""
	}
	param = strings.ReplaceAll(param, "-", "_")
	switch {
	case named && ValidParamName(param):
	case named && lines != nil:
		return nil, fmt.Errorf("%q is not a parameter name", arg)
	default:
		if param = defaultEachParam(spec); param == "" {
			return nil, fmt.Errorf("say which parameter takes the values, like name=%s", arg)
		}
		rest = arg
	}
	var values []string
	if lines == nil {
		values = strings.Split(rest, ",")
	} else {
		sc := bufio.NewScanner(lines)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			if v := strings.TrimSpace(sc.Text()); v != "" {
				if len(values) == MaxFanout {
					return nil, fmt.Errorf("more than %d values: split them", MaxFanout)
				}
				values = append(values, v)
			}
		}
		if err := sc.Err(); err != nil {
			return nil, err
		}
	}
	switch {
	case len(values) == 0:
		return nil, errors.New("no values")
	case len(values) > MaxFanout:
		return nil, fmt.Errorf("%d values, more than the %d a fan-out takes: split them", len(values), MaxFanout)
	}
	return &Each{Param: param, Values: values}, nil
}

// defaultEachParam is the command's only required text parameter, if it
// has exactly one.
func defaultEachParam(spec CommandSpec) string {
	found := ""
	for _, name := range spec.ParamNames() {
		p := spec.Params[name]
		if p.Required && (p.Type == TypeString || p.Type == TypeEnum) {
			if found != "" {
				return ""
			}
			found = name
		}
	}
	return found
}
