// Package profile keeps the named client settings that `winch context`
// manages: one file per deployment (dev, staging, production) under the
// user's config dir, and which one is current. The package is named for
// what it holds, a profile of settings, because "context" is the standard
// library's; the CLI keeps the word users know from docker, kubectl and the
// nats CLI.
//
// Precedence, for each setting: its flag, then its environment variable,
// then the selected context, then winch's default. The context itself is
// chosen by --context, else WINCH_CONTEXT, else the current one (`winch
// context use`), else none.
package profile

import (
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/goccy/go-yaml"

	"github.com/winchhq/winch/broker"
)

// Profile is one context: where a deployment's NATS is, how to prove who
// you are to it, and the defaults that go with it. Paths are stored as
// given; secrets (a token, a password in a URL) are stored in the file,
// which only its owner may read.
type Profile struct {
	Name        string `yaml:"-" json:"name"`
	Description string `yaml:"description,omitempty" json:"description,omitempty"`
	NatsURL     string `yaml:"nats_url,omitempty" json:"nats_url,omitempty"`
	Creds       string `yaml:"creds,omitempty" json:"creds,omitempty"`
	NKey        string `yaml:"nkey,omitempty" json:"nkey,omitempty"`
	TLSCA       string `yaml:"tls_ca,omitempty" json:"tls_ca,omitempty"`
	TLSCert     string `yaml:"tls_cert,omitempty" json:"tls_cert,omitempty"`
	TLSKey      string `yaml:"tls_key,omitempty" json:"tls_key,omitempty"`
	Principal   string `yaml:"principal,omitempty" json:"principal,omitempty"`
	Queue       string `yaml:"queue,omitempty" json:"queue,omitempty"`
	Output      string `yaml:"output,omitempty" json:"output,omitempty"`
	// GatewayURL and GatewayToken are for the HTTP gateway, once there is
	// one; the token is a secret.
	GatewayURL   string `yaml:"gateway_url,omitempty" json:"gateway_url,omitempty"`
	GatewayToken string `yaml:"gateway_token,omitempty" json:"gateway_token,omitempty"`
	// NatsContext names a context of the nats CLI (`nats context`) whose
	// server, credentials and TLS files fill what this one leaves empty.
	NatsContext string `yaml:"nats_context,omitempty" json:"nats_context,omitempty"`
	// Confirm makes `winch run` ask before it publishes (or want --yes).
	Confirm bool `yaml:"confirm,omitempty" json:"confirm,omitempty"`
}

// Setting names, as the flags that they default are named.
const (
	NatsURL      = "nats-url"
	Creds        = "creds"
	NKey         = "nkey"
	TLSCA        = "tls-ca"
	TLSCert      = "tls-cert"
	TLSKey       = "tls-key"
	Principal    = "as"
	Queue        = "queue"
	Output       = "output"
	GatewayURL   = "gateway-url"
	GatewayToken = "gateway-token"
)

// Setting returns the value the profile gives the flag named name, or "".
func (p Profile) Setting(name string) string {
	switch name {
	case NatsURL:
		return p.NatsURL
	case Creds:
		return p.Creds
	case NKey:
		return p.NKey
	case TLSCA:
		return p.TLSCA
	case TLSCert:
		return p.TLSCert
	case TLSKey:
		return p.TLSKey
	case Principal:
		return p.Principal
	case Queue:
		return p.Queue
	case Output:
		return p.Output
	case GatewayURL:
		return p.GatewayURL
	case GatewayToken:
		return p.GatewayToken
	}
	return ""
}

// Masked is the profile as it may be shown: the token and any password in
// the URLs replaced by ***.
func (p Profile) Masked() Profile {
	if p.GatewayToken != "" {
		p.GatewayToken = "***"
	}
	p.NatsURL = broker.RedactURLs(p.NatsURL)
	p.GatewayURL = broker.RedactURLs(p.GatewayURL)
	return p
}

// Check says what is wrong with the profile's values, if anything.
func (p Profile) Check() error {
	if !ValidName(p.Name) {
		return fmt.Errorf("context name %q is not valid: use 1 to 64 letters, digits, '-' and '_', starting with a letter or digit", p.Name)
	}
	for _, s := range strings.Split(p.NatsURL, ",") {
		if s = strings.TrimSpace(s); s == "" && p.NatsURL == "" {
			break
		}
		u, err := url.Parse(s)
		if err != nil || u.Host == "" || (u.Scheme != "nats" && u.Scheme != "tls" && u.Scheme != "ws" && u.Scheme != "wss") {
			return fmt.Errorf("nats_url %q: want nats://HOST:PORT or tls://HOST:PORT, several separated by commas", s)
		}
	}
	switch p.Output {
	case "", "text", "json", "csv":
	default:
		return fmt.Errorf("output %q: want text, json or csv", p.Output)
	}
	if (p.TLSCert == "") != (p.TLSKey == "") {
		return errors.New("tls_cert and tls_key go together: a client certificate needs its key")
	}
	if p.Creds != "" && p.NKey != "" {
		return errors.New("creds and nkey are both set; a user has a credentials file or an nkey, not both")
	}
	return nil
}

var namePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$`)

// ValidName reports whether name can name a context (it is a file name).
func ValidName(name string) bool { return namePattern.MatchString(name) }

// ErrNotFound says no context has the name asked for.
var ErrNotFound = errors.New("no such context")

// Store is where contexts live: Dir/contexts/<name>.yaml, and the current
// one's name in Dir/context.txt.
type Store struct{ Dir string }

// DefaultStore is winch's directory under the user's config dir
// (os.UserConfigDir: $XDG_CONFIG_HOME or ~/.config on Linux).
func DefaultStore() (Store, error) {
	dir, err := os.UserConfigDir()
	if err != nil {
		return Store{}, fmt.Errorf("no config directory for contexts (set XDG_CONFIG_HOME or HOME): %w", err)
	}
	return Store{Dir: filepath.Join(dir, "winch")}, nil
}

func (s Store) file(name string) string { return filepath.Join(s.Dir, "contexts", name+".yaml") }

// Save writes p, replacing a context of the same name. The file is the
// owner's alone: it may hold a token.
func (s Store) Save(p Profile) error {
	if err := p.Check(); err != nil {
		return err
	}
	data, err := yaml.Marshal(p)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(s.file(p.Name)), 0o700); err != nil {
		return err
	}
	tmp := s.file(p.Name) + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, s.file(p.Name))
}

// Load reads the context named name, strictly: an unknown key is an error.
func (s Store) Load(name string) (Profile, error) {
	if !ValidName(name) {
		return Profile{}, fmt.Errorf("%w %q (context names are letters, digits, '-' and '_')", ErrNotFound, name)
	}
	data, err := os.ReadFile(s.file(name))
	if errors.Is(err, fs.ErrNotExist) {
		return Profile{}, fmt.Errorf("%w %q: add it with `winch context add %s --nats-url URL` (winch context ls lists them)", ErrNotFound, name, name)
	}
	if err != nil {
		return Profile{}, err
	}
	return Parse(name, s.file(name), data)
}

// Parse reads a context file's contents strictly: an unknown key, a value
// of the wrong type or an invalid setting is an error naming the context and
// file. A malformed document is an error too, never a panic.
func Parse(name, file string, data []byte) (p Profile, err error) {
	defer func() {
		// The YAML library panics on some malformed documents (see
		// modules.ParseManifest).
		if r := recover(); r != nil {
			p, err = Profile{}, fmt.Errorf("context %s (%s): not a valid YAML document (the parser failed: %v)", name, file, r)
		}
	}()
	if err := yaml.UnmarshalWithOptions(data, &p, yaml.Strict()); err != nil {
		return Profile{}, fmt.Errorf("context %s (%s): %s", name, file, yaml.FormatError(err, false, false))
	}
	p.Name = name
	if err := p.Check(); err != nil {
		return Profile{}, fmt.Errorf("context %s (%s): %w", name, file, err)
	}
	return p, nil
}

// List returns every context, by name.
func (s Store) List() ([]Profile, error) {
	entries, err := os.ReadDir(filepath.Join(s.Dir, "contexts"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []Profile
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), ".yaml")
		if !ok || e.IsDir() {
			continue
		}
		p, err := s.Load(name)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Remove deletes a context; if it was the current one, none is current.
func (s Store) Remove(name string) error {
	if _, err := s.Load(name); err != nil {
		return err
	}
	if cur, _ := s.Current(); cur == name {
		if err := os.Remove(filepath.Join(s.Dir, "context.txt")); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return os.Remove(s.file(name))
}

// Current is the name of the current context, or "" if none is.
func (s Store) Current() (string, error) {
	data, err := os.ReadFile(filepath.Join(s.Dir, "context.txt"))
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	return strings.TrimSpace(string(data)), err
}

// Use makes name the current context; "" makes none current.
func (s Store) Use(name string) error {
	if name == "" {
		err := os.Remove(filepath.Join(s.Dir, "context.txt"))
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return err
	}
	if _, err := s.Load(name); err != nil {
		return err
	}
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(s.Dir, "context.txt"), []byte(name+"\n"), 0o600)
}

// Source says where the selected context's name came from.
type Source string

// Sources of a selection, strongest first.
const (
	FromFlag    Source = "--context"
	FromEnv     Source = "WINCH_CONTEXT"
	FromCurrent Source = "the current context"
)

// Select picks the context: flag, else env, else the current one. ok is
// false when none is selected (winch's defaults apply).
func (s Store) Select(flag, env string) (p Profile, from Source, ok bool, err error) {
	name, from := flag, FromFlag
	if name == "" {
		name, from = env, FromEnv
	}
	if name == "" {
		if name, err = s.Current(); err != nil {
			return Profile{}, "", false, err
		}
		from = FromCurrent
	}
	if name == "" {
		return Profile{}, "", false, nil
	}
	p, err = s.Load(name)
	if err != nil {
		return Profile{}, from, false, err
	}
	if p.NatsContext != "" {
		if p, err = p.WithNatsContext(""); err != nil {
			return Profile{}, from, false, err
		}
	}
	return p, from, true, nil
}
