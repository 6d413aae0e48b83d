package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

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
	s.url = tlsURL(startConfiguredServer(t, dir, conf))
	return s
}

// tlsURL is a server's URL as a TLS client names it: tls://, and
// localhost, which the test certificates name.
func tlsURL(url string) string {
	return strings.Replace(strings.Replace(url, "nats://", "tls://", 1), "127.0.0.1", "localhost", 1)
}

// startConfiguredServer runs an embedded server from the config conf and
// returns its client URL.
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
	return srv.ClientURL()
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

// clientCert writes a CA of the test's own and a client certificate and
// key it signed, for servers that verify their clients.
func clientCert(t *testing.T, dir string) (caFile, certFile, keyFile string) {
	t.Helper()
	key := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	write := func(name, kind string, der []byte) string {
		file := filepath.Join(dir, name)
		if err := os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return file
	}
	caKey, leafKey := key(), key()
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "clients test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	leaf := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "alice"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, KeyUsage: x509.KeyUsageDigitalSignature}
	leafDER, err := x509.CreateCertificate(rand.Reader, leaf, ca, &leafKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(leafKey)
	if err != nil {
		t.Fatal(err)
	}
	return write("clients-ca.pem", "CERTIFICATE", caDER), write("alice.pem", "CERTIFICATE", leafDER), write("alice-key.pem", "EC PRIVATE KEY", keyDER)
}

// Every way of giving credentials works through the real binary: a .creds
// file over TLS (variable, flag, context), a bare nkey (variable, flag),
// and a client certificate to a server that verifies it (variables,
// flags); without them each server refuses.
func TestCredentialsThroughTheBinary(t *testing.T) {
	t.Parallel()
	type step struct {
		name string
		env  []string
		args []string
		code int
		says string
	}
	run := func(t *testing.T, steps []step) {
		t.Helper()
		for _, s := range steps {
			out, code := runWinch(t, s.env, s.args...)
			if code != s.code || !strings.Contains(out, s.says) {
				t.Errorf("%s: winch %s: exit %d, want %d saying %q:\n%s", s.name, strings.Join(s.args, " "), code, s.code, s.says, out)
			}
		}
	}

	t.Run("creds", func(t *testing.T) {
		t.Parallel()
		s := startJWTServer(t)
		admin := s.creds("admin", broker.ServicePermissions())
		alice := s.creds("alice", broker.ClientPermissions("alice"))
		url, ca := "WINCH_NATS_URL="+s.url, "WINCH_NATS_TLS_CA="+s.certs.CAFile
		config := "XDG_CONFIG_HOME=" + t.TempDir()
		run(t, []step{
			{"WINCH_NATS_CREDS", []string{url, ca, "WINCH_NATS_CREDS=" + admin}, []string{"init"}, 0, ""},
			{"--creds", []string{url, ca}, []string{"--creds", alice, "--as", "alice", "ps"}, 0, ""},
			{"--creds and --tls-ca", []string{url}, []string{"--creds", alice, "--tls-ca", s.certs.CAFile, "ps"}, 0, ""},
			{"no creds", []string{url, ca}, []string{"ps"}, exitNoPerm, ""},
			{"context add", []string{config}, []string{"context", "add", "x", "--nats-url", s.url, "--ca", s.certs.CAFile, "--creds", alice, "--principal", "alice"}, 0, "context x saved"},
			{"--context", []string{config, "WINCH_NATS_URL="}, []string{"--context", "x", "ps"}, 0, "winch: context x (--context)"},
			{"--context publishes as its principal", []string{config, "WINCH_NATS_URL="}, []string{"--context", "x", "run", "-d", "core.true"}, 0, ""},
		})
	})

	t.Run("nkey", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		ukp, _ := nkeys.CreateUser()
		pub, _ := ukp.PublicKey()
		seed, _ := ukp.Seed()
		seedFile := filepath.Join(dir, "user.nk")
		if err := os.WriteFile(seedFile, seed, 0o600); err != nil {
			t.Fatal(err)
		}
		url := "WINCH_NATS_URL=" + startConfiguredServer(t, dir, fmt.Sprintf("listen: 127.0.0.1:-1\njetstream { store_dir: %q }\nauthorization { users: [ {nkey: %s} ] }\n", filepath.Join(dir, "js"), pub))
		run(t, []step{
			{"WINCH_NATS_NKEY", []string{url, "WINCH_NATS_NKEY=" + seedFile}, []string{"init"}, 0, ""},
			{"--nkey", []string{url}, []string{"--nkey", seedFile, "ps"}, 0, ""},
			{"no nkey", []string{url}, []string{"ps"}, exitNoPerm, ""},
			{"not a seed", []string{url}, []string{"--nkey", filepath.Join(dir, "nope"), "ps"}, exitUsage, "WINCH_NATS_NKEY"},
		})
	})

	t.Run("client certificate", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		certs := testenv.NewPKI(t, dir, "winch")
		clientCA, cert, key := clientCert(t, dir)
		url := "WINCH_NATS_URL=" + tlsURL(startConfiguredServer(t, dir, fmt.Sprintf(
			"listen: 127.0.0.1:-1\njetstream { store_dir: %q }\ntls {\n  cert_file: %q\n  key_file: %q\n  ca_file: %q\n  verify: true\n}\n",
			filepath.Join(dir, "js"), certs.CertFile, certs.KeyFile, clientCA)))
		ca := "WINCH_NATS_TLS_CA=" + certs.CAFile
		run(t, []step{
			{"WINCH_NATS_TLS_CERT/KEY", []string{url, ca, "WINCH_NATS_TLS_CERT=" + cert, "WINCH_NATS_TLS_KEY=" + key}, []string{"init"}, 0, ""},
			{"--tls-cert/--tls-key", []string{url, ca}, []string{"--tls-cert", cert, "--tls-key", key, "ps"}, 0, ""},
			{"no client certificate", []string{url, ca}, []string{"ps"}, exitUnavailable, ""},
			{"a certificate without its key", []string{url, ca}, []string{"--tls-cert", cert, "ps"}, exitUsage, "WINCH_NATS_TLS_CERT and WINCH_NATS_TLS_KEY go together"},
		})
	})
}
