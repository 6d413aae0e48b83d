package profile

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"
)

// natsCLIContext is the part of a nats CLI context file
// (~/.config/nats/context/NAME.json) that winch can use.
type natsCLIContext struct {
	URL      string `json:"url"`
	User     string `json:"user"`
	Password string `json:"password"`
	Token    string `json:"token"`
	Creds    string `json:"creds"`
	NKey     string `json:"nkey"`
	Cert     string `json:"cert"`
	Key      string `json:"key"`
	CA       string `json:"ca"`
}

// WithNatsContext fills what p leaves empty from the nats CLI context it
// names, read from dir (default: nats under the user's config dir). A
// context of winch's own always wins over the one it borrows from.
func (p Profile) WithNatsContext(dir string) (Profile, error) {
	if dir == "" {
		cfg, err := os.UserConfigDir()
		if err != nil {
			return p, err
		}
		dir = filepath.Join(cfg, "nats", "context")
	}
	if !ValidName(p.NatsContext) {
		return p, fmt.Errorf("context %s: nats_context %q is not a nats CLI context name", p.Name, p.NatsContext)
	}
	file := filepath.Join(dir, p.NatsContext+".json")
	data, err := os.ReadFile(file)
	if errors.Is(err, fs.ErrNotExist) {
		return p, fmt.Errorf("context %s: nats_context %q: no %s (see `nats context ls`)", p.Name, p.NatsContext, file)
	}
	if err != nil {
		return p, err
	}
	var nc natsCLIContext
	if err := json.Unmarshal(data, &nc); err != nil {
		return p, fmt.Errorf("context %s: nats CLI context %s: %w", p.Name, file, err)
	}
	if p.NatsURL == "" && nc.URL != "" {
		p.NatsURL = withUserInfo(nc.URL, nc)
	}
	fill := func(dst *string, v string) {
		if *dst == "" {
			*dst = expandHome(v)
		}
	}
	fill(&p.Creds, nc.Creds)
	fill(&p.NKey, nc.NKey)
	fill(&p.TLSCA, nc.CA)
	fill(&p.TLSCert, nc.Cert)
	fill(&p.TLSKey, nc.Key)
	return p, p.Check()
}

// withUserInfo carries the nats context's user and password, or token,
// into each of its URLs, as WINCH_NATS_URL takes them.
func withUserInfo(urls string, nc natsCLIContext) string {
	if nc.User == "" && nc.Token == "" {
		return urls
	}
	parts := strings.Split(urls, ",")
	for i, s := range parts {
		u, err := url.Parse(strings.TrimSpace(s))
		if err != nil || u.User != nil {
			continue
		}
		if nc.Token != "" {
			u.User = url.User(nc.Token)
		} else {
			u.User = url.UserPassword(nc.User, nc.Password)
		}
		parts[i] = u.String()
	}
	return strings.Join(parts, ",")
}

func expandHome(path string) string {
	if rest, ok := strings.CutPrefix(path, "~/"); ok {
		if home, err := os.UserHomeDir(); err == nil {
			return filepath.Join(home, rest)
		}
	}
	return path
}
