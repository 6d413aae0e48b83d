// Package modules reads command manifests (winch.yaml), holds the catalog of
// commands that workers and clients validate requests against, and provides
// the core module that every winch build carries.
package modules

import (
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/lexer"
	"github.com/goccy/go-yaml/parser"
	"github.com/goccy/go-yaml/token"

	"github.com/winchhq/winch/schema"
)

// Manifest is a module's winch.yaml.
type Manifest struct {
	Module      string                        `json:"module"`
	Description string                        `json:"description,omitempty"`
	Image       string                        `json:"image,omitempty"`
	Build       string                        `json:"build,omitempty"`
	Commands    map[string]schema.CommandSpec `json:"commands"`
}

var moduleName = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,63}$`)

// ManifestError is a problem in a manifest, located by file, line and field.
type ManifestError struct {
	File  string
	Line  int // 0 when unknown
	Field string
	Msg   string
}

func (e *ManifestError) Error() string {
	loc := e.File
	if e.Line > 0 {
		loc = fmt.Sprintf("%s:%d", loc, e.Line)
	}
	if e.Field != "" {
		return fmt.Sprintf("%s: %s: %s", loc, e.Field, e.Msg)
	}
	return fmt.Sprintf("%s: %s", loc, e.Msg)
}

// ParseManifest decodes and validates a manifest strictly: unknown keys,
// wrong types and invalid specifications are errors that name the file, the
// line and the field. file is only used in messages.
func ParseManifest(file string, data []byte) (m *Manifest, err error) {
	// The YAML library panics on some malformed documents (found by
	// fuzzing, see testdata/fuzz): a bad manifest is an error, never a crash.
	defer func() {
		if r := recover(); r != nil {
			m, err = nil, &ManifestError{File: file, Msg: fmt.Sprintf("not a valid YAML document (the parser failed: %v)", r)}
		}
	}()
	m = &Manifest{}
	if err := yaml.UnmarshalWithOptions(data, m, yaml.DisallowUnknownField()); err != nil {
		return nil, decodeError(file, data, err)
	}
	var errs []error
	fail := func(path, field, msg string) {
		errs = append(errs, &ManifestError{File: file, Line: lineOf(data, path), Field: field, Msg: msg})
	}
	if !moduleName.MatchString(m.Module) {
		fail("$.module", "module", fmt.Sprintf("%q is not a module name: lower-case letters, digits, '-' and '_', starting with a letter", m.Module))
	}
	if m.Image != "" && m.Build != "" {
		fail("$.build", "build", "a module has an image or a build, not both")
	}
	if m.Build != "" && !filepath.IsLocal(m.Build) {
		fail("$.build", "build", fmt.Sprintf("%q is not a path inside the module", m.Build))
	}
	if len(m.Commands) == 0 {
		fail("$.commands", "commands", "a module declares at least one command")
	}
	names := make([]string, 0, len(m.Commands))
	for name := range m.Commands {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if _, _, ok := schema.SplitCommand("m." + name); !ok {
			fail("$.commands."+name, "commands."+name, "a command name is lower-case letters, digits, '-' and '_', starting with a letter")
		}
		if err := m.Commands[name].Check(); err != nil {
			var v *schema.ValidationError
			if !errors.As(err, &v) {
				return nil, err
			}
			for _, p := range v.Problems {
				path := "$.commands." + name + "." + p.Field
				fail(path, "commands."+name+"."+p.Field, p.Message)
			}
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return m, nil
}

// decodeError turns the YAML library's error into a ManifestError with a
// line number and without the library's ANSI source excerpt.
func decodeError(file string, data []byte, err error) error {
	msg := yaml.FormatError(err, false, false)
	line := 0
	// FormatError gives "[line:col] message".
	if n, _ := fmt.Sscanf(msg, "[%d:", &line); n == 1 {
		if i := strings.Index(msg, "] "); i >= 0 {
			msg = msg[i+2:]
		}
	} else {
		// Errors from our own value types (durations, sizes) carry no
		// position, but quote the value: find the line that holds it.
		line = lineOfQuotedValue(data, msg)
	}
	return &ManifestError{File: file, Line: line, Field: fieldAt(data, line), Msg: strings.TrimSpace(msg)}
}

// fieldAt names the key on a line of a YAML document by its path, from the
// indentation of the lines above it: "commands.backup.retry".
func fieldAt(data []byte, line int) string {
	lines := strings.Split(string(data), "\n")
	if line <= 0 || line > len(lines) {
		return ""
	}
	key := func(l string) (string, int, bool) {
		t := strings.TrimLeft(l, " ")
		t = strings.TrimPrefix(t, "- ")
		k, _, ok := strings.Cut(t, ":")
		if !ok || k == "" || strings.ContainsAny(k, "{[\"'#") {
			return "", 0, false
		}
		return strings.TrimSpace(k), len(l) - len(strings.TrimLeft(l, " ")), true
	}
	k, indent, ok := key(lines[line-1])
	if !ok {
		return ""
	}
	path := []string{k}
	for i := line - 2; i >= 0 && indent > 0; i-- {
		if pk, pi, ok := key(lines[i]); ok && pi < indent {
			path = append([]string{pk}, path...)
			indent = pi
		}
	}
	return strings.Join(path, ".")
}

func lineOfQuotedValue(data []byte, msg string) int {
	i := strings.IndexByte(msg, '"')
	if i < 0 {
		return 0
	}
	value, err := strconv.QuotedPrefix(msg[i:])
	if err != nil {
		return 0
	}
	value, _ = strconv.Unquote(value)
	for _, tk := range lexer.Tokenize(string(data)) {
		if tk.Value == value && tk.Type != token.MappingKeyType {
			return tk.Position.Line
		}
	}
	return 0
}

// lineOf finds the line of the YAML node at path, or of its nearest parent
// that exists, so that an error points at the right place in the file.
func lineOf(data []byte, path string) int {
	f, err := parser.ParseBytes(data, 0)
	if err != nil {
		return 0
	}
	for p := path; p != "$" && p != ""; p = p[:strings.LastIndex(p, ".")] {
		yp, err := yaml.PathString(p)
		if err != nil {
			continue
		}
		if n, err := yp.FilterFile(f); err == nil && n != nil {
			return n.GetToken().Position.Line
		}
	}
	return 0
}
