package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"

	"github.com/winchhq/winch/broker"
	"github.com/winchhq/winch/internal/testenv"
)

// `winch broker -c FILE` serves TLS from the config file's tls block, and
// creates winch's streams through it; clients connect with the CA, and
// without it are told what to set.
func TestBrokerServesTLSFromItsConfig(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	certs := testenv.NewPKI(t, dir, "winch")
	other := testenv.NewPKI(t, dir, "other")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	conf := filepath.Join(dir, "nats.conf")
	body := fmt.Sprintf("listen: 127.0.0.1:%d\njetstream { store_dir: %q }\ntls {\n  cert_file: %q\n  key_file: %q\n}\n",
		port, filepath.Join(dir, "js"), certs.CertFile, certs.KeyFile)
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	// The certificate names localhost: the broker checks it against the
	// host of WINCH_NATS_URL, although it connects to its own address.
	url := fmt.Sprintf("tls://localhost:%d", port)
	env := []string{"WINCH_NATS_URL=" + url, "WINCH_NATS_TLS_CA=" + certs.CAFile}
	_, lines := startWinch(t, env, "broker", "-c", conf)
	waitLog(t, lines, "winch broker ready")
	go func() {
		for lines.Scan() {
		}
	}()
	if out, code := runWinch(t, env, "ps"); code != 0 {
		t.Fatalf("winch ps over TLS: exit %d\n%s", code, out)
	}
	for _, tt := range []struct {
		name string
		env  []string
		code int
		says string
	}{
		{"no CA", []string{"WINCH_NATS_URL=" + url, "WINCH_NATS_TLS_CA="}, exitUnavailable, "set WINCH_NATS_TLS_CA to the CA that signed the server's certificate"},
		{"wrong CA", []string{"WINCH_NATS_URL=" + url, "WINCH_NATS_TLS_CA=" + other.CAFile}, exitUnavailable, "check that WINCH_NATS_TLS_CA=" + other.CAFile},
		{"missing CA file", []string{"WINCH_NATS_URL=" + url, "WINCH_NATS_TLS_CA=" + filepath.Join(dir, "nope.pem")}, exitUsage, "WINCH_NATS_TLS_CA: open"},
	} {
		out, code := runWinch(t, tt.env, "ps")
		if code != tt.code || !strings.Contains(out, tt.says) {
			t.Errorf("%s: exit %d, want %d saying %q:\n%s", tt.name, code, tt.code, tt.says, out)
		}
	}
}

// jwtServer is an embedded NATS server configured in the test: TLS with a
// CA of its own, and decentralized authorization (an operator, a system
// account, and an account "winch" with JetStream) as ops/auth describes.
type jwtServer struct {
	t         *testing.T
	dir, url  string
	certs     testenv.PKI
	accountKP nkeys.KeyPair
}

func startJWTServer(t *testing.T) *jwtServer {
	t.Helper()
	dir := t.TempDir()
	s := &jwtServer{t: t, dir: dir, certs: testenv.NewPKI(t, dir, "winch")}
	okp, _ := nkeys.CreateOperator()
	opub, _ := okp.PublicKey()
	sysKP, _ := nkeys.CreateAccount()
	sysPub, _ := sysKP.PublicKey()
	op := jwt.NewOperatorClaims(opub)
	op.SystemAccount = sysPub
	opJWT, err := op.Encode(okp)
	if err != nil {
		t.Fatal(err)
	}
	sysJWT, err := jwt.NewAccountClaims(sysPub).Encode(okp)
	if err != nil {
		t.Fatal(err)
	}
	s.accountKP, _ = nkeys.CreateAccount()
	apub, _ := s.accountKP.PublicKey()
	acct := jwt.NewAccountClaims(apub)
	acct.Name = "winch"
	acct.Limits.JetStreamLimits = jwt.JetStreamLimits{MemoryStorage: -1, DiskStorage: -1, Streams: -1, Consumer: -1}
	acctJWT, err := acct.Encode(okp)
	if err != nil {
		t.Fatal(err)
	}
	conf := fmt.Sprintf("listen: 127.0.0.1:-1\njetstream { store_dir: %q }\ntls {\n  cert_file: %q\n  key_file: %q\n}\n"+
		"operator: %s\nsystem_account: %s\nresolver: MEMORY\nresolver_preload: {\n  %s: %s\n  %s: %s\n}\n",
		filepath.Join(dir, "js"), s.certs.CertFile, s.certs.KeyFile, opJWT, sysPub, sysPub, sysJWT, apub, acctJWT)
	s.url = startConfiguredServer(t, dir, conf)
	return s
}

// startConfiguredServer runs an embedded server from the config conf and
// returns its tls:// URL (localhost, which the test certificates name).
func startConfiguredServer(t *testing.T, dir, conf string) string {
	t.Helper()
	file := filepath.Join(dir, "nats.conf")
	if err := os.WriteFile(file, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	srv, err := broker.NewServer(broker.ServerConfig{ConfigFile: file, NoMonitoring: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	return strings.Replace(strings.Replace(srv.ClientURL(), "nats://", "tls://", 1), "127.0.0.1", "localhost", 1)
}

// creds writes a .creds file for a user of the winch account with p.
func (s *jwtServer) creds(name string, p broker.Permissions) string {
	s.t.Helper()
	ukp, _ := nkeys.CreateUser()
	upub, _ := ukp.PublicKey()
	uc := jwt.NewUserClaims(upub)
	uc.Name = name
	uc.Pub.Allow.Add(p.Publish...)
	uc.Sub.Allow.Add(p.Subscribe...)
	ujwt, err := uc.Encode(s.accountKP)
	if err != nil {
		s.t.Fatal(err)
	}
	seed, _ := ukp.Seed()
	data, err := jwt.FormatUserConfig(ujwt, seed)
	if err != nil {
		s.t.Fatal(err)
	}
	file := filepath.Join(s.dir, name+".creds")
	if err := os.WriteFile(file, data, 0o600); err != nil {
		s.t.Fatal(err)
	}
	return file
}

// `winch gateway` connects with WINCH_NATS_CREDS over TLS, as every other
// process does: with the gateway's own JWT (broker.GatewayPermissions) it
// is ready, and publishes a caller's request as that caller.
func TestGatewayConnectsWithCredsOverTLS(t *testing.T) {
	t.Parallel()
	s := startJWTServer(t)
	admin := s.creds("admin", broker.ServicePermissions())
	base := []string{"WINCH_NATS_URL=" + s.url, "WINCH_NATS_TLS_CA=" + s.certs.CAFile}
	if out, code := runWinch(t, append(base, "WINCH_NATS_CREDS="+admin), "init"); code != 0 {
		t.Fatalf("winch init with the admin's creds: exit %d\n%s", code, out)
	}
	token := "gateway-test-token-0123456789abcdef"
	sum := sha256.Sum256([]byte(token))
	httpAddr := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	metricsAddr := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	gw, lines := startWinch(t, append(base, "WINCH_NATS_CREDS="+s.creds("gateway", broker.GatewayPermissions()),
		"WINCH_HTTP_ADDR="+httpAddr, "WINCH_METRICS_ADDR="+metricsAddr, "WINCH_TOKENS="+hex.EncodeToString(sum[:])+":alice"), "gateway")
	waitLog(t, lines, "console: ")
	go func() {
		for lines.Scan() {
		}
	}()
	resp, err := http.Get("http://" + metricsAddr + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/readyz: %d %s", resp.StatusCode, body)
	}
	req, _ := http.NewRequest(http.MethodPost, "http://"+httpAddr+"/v1/jobs", strings.NewReader(`{"command":"core.echo","params":{"text":"hi"}}`))
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	var sub struct{ ID string }
	if resp.StatusCode/100 != 2 || json.Unmarshal(body, &sub) != nil || sub.ID == "" {
		t.Fatalf("POST /v1/jobs through the gateway: %d %s", resp.StatusCode, body)
	}
	out, code := runWinch(t, append(base, "WINCH_NATS_CREDS="+admin), "status", sub.ID)
	if code != 0 || !strings.Contains(out, "alice") {
		t.Fatalf("winch status %s: exit %d\n%s", sub.ID, code, out)
	}
	if err := gw.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := gw.Wait(); err != nil {
		t.Fatalf("the gateway exited with %v", err)
	}
}
