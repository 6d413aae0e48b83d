package gateway_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/winchhq/winch/gateway"
)

// issuer is an OpenID Connect issuer of the test's own: discovery and
// keys over HTTP, ID tokens signed with an RSA key made here.
type issuer struct {
	srv *httptest.Server
	key *rsa.PrivateKey
}

func newIssuer(t *testing.T) *issuer {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	iss := &issuer{key: key}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]any{
			"issuer": iss.srv.URL, "jwks_uri": iss.srv.URL + "/keys", "authorization_endpoint": iss.srv.URL + "/auth",
			"token_endpoint": iss.srv.URL + "/token", "response_types_supported": []string{"id_token"},
			"subject_types_supported": []string{"public"}, "id_token_signing_alg_values_supported": []string{"RS256"},
		})
	})
	mux.HandleFunc("GET /keys", func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: "k1", Algorithm: "RS256", Use: "sig"}}})
	})
	iss.srv = httptest.NewServer(mux)
	t.Cleanup(iss.srv.Close)
	return iss
}

// token signs claims (with defaults for iss, aud, exp, iat) with key.
func (iss *issuer) token(t *testing.T, key *rsa.PrivateKey, claims map[string]any) string {
	t.Helper()
	all := map[string]any{"iss": iss.srv.URL, "aud": "winch", "iat": time.Now().Unix(), "exp": time.Now().Add(time.Hour).Unix()}
	for k, v := range claims {
		all[k] = v
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: key}, (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", "k1"))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.Signed(signer).Claims(all).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// ID tokens from the configured issuer sign in, as the principal their
// claim names, with their roles; anything else is a 401.
func TestOIDCIDTokens(t *testing.T) {
	t.Parallel()
	iss := newIssuer(t)
	f := newFixture(t, options{edit: func(c *gateway.Config) {
		c.OIDC = &gateway.OIDCConfig{Issuer: iss.srv.URL, Audience: "winch", PrincipalClaim: "preferred_username"}
	}})
	good := iss.token(t, iss.key, map[string]any{"sub": "u-1", "preferred_username": "olivia", "roles": []string{"admin"}})
	var who map[string]any
	f.must(http.StatusOK, "GET", "/v1/whoami", good, "", &who)
	if who["principal"] != "olivia" || who["via"] != "oidc" || strings.Join(toStrings(who["roles"]), ",") != "admin" {
		t.Fatalf("whoami: %v", who)
	}
	// A job submitted with it is olivia's.
	id := f.submit(good, "core.echo", map[string]any{"text": "from oidc"})
	events := f.follow(good, id)
	if events[0].Event.Principal != "olivia" || output(events, "stdout") != "from oidc\n" {
		t.Fatalf("events: %s %+v", kinds(events), events[0].Event)
	}
	other, _ := rsa.GenerateKey(rand.Reader, 2048)
	for name, tok := range map[string]string{
		"another audience": iss.token(t, iss.key, map[string]any{"preferred_username": "olivia", "aud": "someone-else"}),
		"expired":          iss.token(t, iss.key, map[string]any{"preferred_username": "olivia", "exp": time.Now().Add(-time.Hour).Unix()}),
		"another key":      iss.token(t, other, map[string]any{"preferred_username": "olivia"}),
		"another issuer":   iss.token(t, iss.key, map[string]any{"preferred_username": "olivia", "iss": "https://evil.example"}),
		"a bad principal":  iss.token(t, iss.key, map[string]any{"preferred_username": "olivia.smith"}),
	} {
		var p gateway.Problem
		f.must(http.StatusUnauthorized, "GET", "/v1/whoami", tok, "", &p)
		if name == "a bad principal" && !strings.Contains(p.Detail, "WINCH_OIDC_PRINCIPAL_CLAIM") {
			t.Errorf("%s: %s", name, p.Detail)
		}
	}
	// Tokens from the file still work beside OIDC.
	f.must(http.StatusOK, "GET", "/v1/whoami", aliceToken, "", nil)
}

func toStrings(v any) []string {
	var out []string
	list, _ := v.([]any)
	for _, x := range list {
		s, _ := x.(string)
		out = append(out, s)
	}
	return out
}

// writeCert makes a self-signed certificate for 127.0.0.1 and returns its
// files and a pool that trusts it.
func writeCert(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "winch test"},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(key)
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	_ = os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	_ = os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600)
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

// With a certificate, the gateway speaks HTTPS only: the API and its event
// streams over TLS.
func TestTLS(t *testing.T) {
	t.Parallel()
	cert, key, pool := writeCert(t)
	f := newFixture(t, options{edit: func(c *gateway.Config) { c.TLSCert, c.TLSKey = cert, key }})
	if !strings.HasPrefix(f.url, "https://") {
		t.Fatalf("url %s", f.url)
	}
	f.http = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	id := f.submit(aliceToken, "core.echo", map[string]any{"text": "over tls"})
	if out := output(f.follow(aliceToken, id), "stdout"); out != "over tls\n" {
		t.Fatalf("output %q", out)
	}
	// Plain HTTP to it gets no answer of the API.
	resp, err := http.Get("http://" + strings.TrimPrefix(f.url, "https://") + "/v1/whoami")
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusUnauthorized {
			t.Fatalf("plain HTTP answered %d", resp.StatusCode)
		}
	}
}

// Plain HTTP beyond loopback needs saying so; credentials are required.
func TestListenRules(t *testing.T) {
	t.Parallel()
	f := newFixture(t, options{noWorker: true})
	base := gateway.Config{Client: f.env.Client, Tokens: testTokens()}
	cert, key, _ := writeCert(t)
	for _, tc := range []struct {
		name string
		edit func(*gateway.Config)
		want string
	}{
		{"loopback", func(c *gateway.Config) { c.Addr = "127.0.0.1:0" }, ""},
		{"localhost", func(c *gateway.Config) { c.Addr = "localhost:0" }, ""},
		{"ipv6 loopback", func(c *gateway.Config) { c.Addr = "[::1]:0" }, ""},
		{"every interface", func(c *gateway.Config) { c.Addr = "0.0.0.0:5123" }, "would carry tokens in clear"},
		{"every interface, allowed", func(c *gateway.Config) { c.Addr, c.AllowInsecure = "0.0.0.0:5123", true }, ""},
		{"every interface, TLS", func(c *gateway.Config) { c.Addr, c.TLSCert, c.TLSKey = ":5123", cert, key }, ""},
		{"half a TLS pair", func(c *gateway.Config) { c.TLSCert = cert }, "set both WINCH_TLS_CERT and WINCH_TLS_KEY"},
		{"no way to sign in", func(c *gateway.Config) { c.Tokens = nil }, "no way to sign in"},
		{"a bad hash", func(c *gateway.Config) { c.Tokens = []gateway.Token{{SHA256: "abc", Principal: "x"}} }, "64 hex digits"},
		{"a bad principal", func(c *gateway.Config) {
			c.Tokens = []gateway.Token{{SHA256: gateway.HashToken("t"), Principal: "a.b"}}
		}, `principal "a.b" is not valid`},
		{"a hash twice", func(c *gateway.Config) {
			c.Tokens = []gateway.Token{{SHA256: gateway.HashToken("t"), Principal: "a"}, {SHA256: gateway.HashToken("t"), Principal: "b"}}
		}, "listed twice"},
	} {
		cfg := base
		tc.edit(&cfg)
		_, err := gateway.New(cfg)
		if (tc.want == "" && err != nil) || (tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want))) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
}

func TestTokensFromFileAndEnvironment(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "tokens.yaml")
	h := gateway.HashToken("s3cret")
	_ = os.WriteFile(path, []byte("- sha256: "+h+"\n  principal: alice\n  roles: [admin, dba]\n"), 0o600)
	entries, err := gateway.LoadTokens(path)
	if err != nil || len(entries) != 1 || entries[0].Principal != "alice" || strings.Join(entries[0].Roles, ",") != "admin,dba" {
		t.Fatalf("file: %+v %v", entries, err)
	}
	_ = os.WriteFile(path, []byte("- sha256: "+h+"\n  principle: alice\n"), 0o600)
	if _, err := gateway.LoadTokens(path); err == nil || !strings.Contains(err.Error(), "principle") {
		t.Fatalf("a misspelt field: %v", err)
	}
	env, err := gateway.ParseTokensEnv(h + ":alice:admin+dba " + h[:63] + "0:bob")
	if err != nil || len(env) != 2 || env[0].Principal != "alice" || len(env[0].Roles) != 2 || env[1].Principal != "bob" {
		t.Fatalf("env: %+v %v", env, err)
	}
	if _, err := gateway.ParseTokensEnv("justonepart"); err == nil {
		t.Fatal("a bad entry was taken")
	}
}
