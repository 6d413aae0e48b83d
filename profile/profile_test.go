package profile_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/winchhq/winch/profile"
)

func store(t *testing.T, ps ...profile.Profile) profile.Store {
	t.Helper()
	s := profile.Store{Dir: t.TempDir()}
	for _, p := range ps {
		if err := s.Save(p); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

// --context beats WINCH_CONTEXT, which beats the current context; with
// none of them, no context applies.
func TestSelectPrecedence(t *testing.T) {
	t.Parallel()
	s := store(t, profile.Profile{Name: "dev"}, profile.Profile{Name: "staging"}, profile.Profile{Name: "prod"})
	if _, _, ok, err := s.Select("", ""); ok || err != nil {
		t.Fatalf("with nothing selected: ok=%v err=%v", ok, err)
	}
	if err := s.Use("prod"); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		flag, env, want string
		from            profile.Source
	}{
		{"dev", "staging", "dev", profile.FromFlag},
		{"", "staging", "staging", profile.FromEnv},
		{"", "", "prod", profile.FromCurrent},
	} {
		p, from, ok, err := s.Select(tt.flag, tt.env)
		if err != nil || !ok || p.Name != tt.want || from != tt.from {
			t.Errorf("Select(%q, %q) = %s from %s, ok=%v, err=%v; want %s from %s", tt.flag, tt.env, p.Name, from, ok, err, tt.want, tt.from)
		}
	}
	if _, _, _, err := s.Select("nope", ""); !errors.Is(err, profile.ErrNotFound) || !strings.Contains(err.Error(), "winch context add nope") {
		t.Fatalf("an unknown context: %v", err)
	}
	if err := s.Remove("prod"); err != nil {
		t.Fatal(err)
	}
	if cur, _ := s.Current(); cur != "" {
		t.Fatalf("the removed context is still current: %q", cur)
	}
}

// A context file may hold a token: only its owner reads it, and a context
// shown is masked.
func TestSecretsAreKeptAndMasked(t *testing.T) {
	t.Parallel()
	p := profile.Profile{Name: "prod", NatsURL: "tls://alice:s3cret@nats1:4222,tls://tok3n@nats2:4222,tls://nats3:4222",
		GatewayURL: "https://winch.prod:5123", GatewayToken: "t0ken", Creds: "/home/a/prod.creds"}
	s := store(t, p)
	fi, err := os.Stat(filepath.Join(s.Dir, "contexts", "prod.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("context file mode %v, want 0600", fi.Mode().Perm())
	}
	got, err := s.Load("prod")
	if err != nil {
		t.Fatal(err)
	}
	if got != p {
		t.Fatalf("loaded %+v, saved %+v", got, p)
	}
	m := got.Masked()
	shown := strings.Join([]string{m.NatsURL, m.GatewayURL, m.GatewayToken, m.Creds}, " ")
	for _, secret := range []string{"s3cret", "tok3n", "t0ken"} {
		if strings.Contains(shown, secret) {
			t.Errorf("masked context shows %q: %s", secret, shown)
		}
	}
	if want := "tls://alice:***@nats1:4222,tls://***@nats2:4222,tls://nats3:4222"; m.NatsURL != want {
		t.Errorf("masked URL %s, want %s", m.NatsURL, want)
	}
	if m.GatewayToken != "***" || m.Creds != p.Creds {
		t.Errorf("masked %+v", m)
	}
}

// A context file is read strictly: a misspelt key is an error that names
// the file, not a setting silently ignored.
func TestLoadIsStrict(t *testing.T) {
	t.Parallel()
	s := store(t)
	dir := filepath.Join(s.Dir, "contexts")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string]string{
		"typo":   "nats_ulr: nats://x:4222\n",
		"badurl": "nats_url: http://x\n",
		"output": "output: xml\n",
	} {
		if err := os.WriteFile(filepath.Join(dir, name+".yaml"), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Load(name); err == nil || !strings.Contains(err.Error(), "context "+name) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if err := s.Save(profile.Profile{Name: "../etc"}); err == nil {
		t.Error("a context named ../etc was saved")
	}
}

// A context may borrow the server and credentials of a nats CLI context;
// its own values win.
func TestNatsCLIContextAsSource(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	body := `{"description":"","url":"nats://n1:4222,nats://n2:4222","user":"alice","password":"pw","creds":"/c/alice.creds","ca":"/c/ca.pem","nsc":"","jetstream_domain":""}`
	if err := os.WriteFile(filepath.Join(dir, "ngs.json"), []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	p, err := profile.Profile{Name: "x", NatsContext: "ngs", TLSCA: "/mine/ca.pem"}.WithNatsContext(dir)
	if err != nil {
		t.Fatal(err)
	}
	if p.NatsURL != "nats://alice:pw@n1:4222,nats://alice:pw@n2:4222" || p.Creds != "/c/alice.creds" || p.TLSCA != "/mine/ca.pem" {
		t.Fatalf("%+v", p)
	}
	if _, err := (profile.Profile{Name: "x", NatsContext: "missing"}).WithNatsContext(dir); err == nil || !strings.Contains(err.Error(), "nats context ls") {
		t.Fatalf("a missing nats context: %v", err)
	}
}

// FuzzParse: any file contents give a context that checks, or an error
// that names the context; never a panic. What parses survives a save and
// a load.
func FuzzParse(f *testing.F) {
	f.Add([]byte("nats_url: tls://a:4222,tls://b:4222\ncreds: /x.creds\nconfirm: true\n"))
	f.Add([]byte("nats_ulr: x\n"))
	f.Add([]byte("output: [a, b]\n"))
	f.Add([]byte("{"))
	f.Add([]byte("gateway_token: !!binary AAAA\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := profile.Parse("fz", "fz.yaml", data)
		if err != nil {
			if !strings.Contains(err.Error(), "context fz") {
				t.Fatalf("error without the context's name: %v", err)
			}
			return
		}
		if err := p.Check(); err != nil {
			t.Fatalf("parsed a context that does not check: %v", err)
		}
		s := profile.Store{Dir: t.TempDir()}
		if err := s.Save(p); err != nil {
			t.Fatalf("save: %v", err)
		}
		back, err := s.Load("fz")
		if err != nil || back != p {
			t.Fatalf("round trip: %+v, %v; want %+v", back, err, p)
		}
	})
}
