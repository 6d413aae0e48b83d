package main

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/winchhq/winch/internal/testenv"
)

// `winch dev` serves the gateway and says where the console is; the
// issue's curl lines work against it as written (with its address).
func TestDevServesTheGatewayToCurl(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("curl"); err != nil {
		testenv.Missing(t, "curl", err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	natsAddr := l.Addr().String()
	l.Close()
	data := t.TempDir()
	env := []string{"WINCH_NATS_URL=nats://" + natsAddr, "WINCH_DATA_DIR=" + data, "WINCH_EXECUTOR=process", "WINCH_HTTP_ADDR=127.0.0.1:0"}
	dev, lines := startWinch(t, env, "dev")
	var console string
	for console == "" && lines.Scan() {
		var entry struct{ Msg, Curl string }
		if json.Unmarshal(lines.Bytes(), &entry) == nil && strings.HasPrefix(entry.Msg, "console: http://127.0.0.1:") {
			console = strings.TrimPrefix(entry.Msg, "console: ")
			if !strings.Contains(entry.Curl, filepath.Join(data, "gateway-token")) {
				t.Errorf("the console line does not say where the token is: %s", lines.Text())
			}
		}
	}
	if console == "" {
		t.Fatal("winch dev did not print the console URL")
	}
	waitLog(t, lines, "winch dev ready")
	go func() {
		for lines.Scan() {
		}
	}()
	base := strings.TrimSuffix(console, "/")
	token, err := os.ReadFile(filepath.Join(data, "gateway-token"))
	if err != nil {
		t.Fatal(err)
	}
	sh := func(script string) string {
		t.Helper()
		cmd := exec.Command("sh", "-ec", strings.ReplaceAll(script, "http://127.0.0.1:5123", base))
		cmd.Env = append(os.Environ(), "TOKEN="+strings.TrimSpace(string(token)))
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", script, err, out)
		}
		return string(out)
	}
	// The lines, word for word but for the port.
	out := sh(`curl -sS -H "Authorization: Bearer $TOKEN" -d '{"command":"core.echo","params":{"text":"hi"}}' \
     http://127.0.0.1:5123/v1/jobs`)
	var sub struct {
		ID    string
		State string
	}
	if err := json.Unmarshal([]byte(out), &sub); err != nil || sub.ID == "" || sub.State != "queued" {
		t.Fatalf("submit: %s", out)
	}
	events := sh(`curl -sS -N -H "Authorization: Bearer $TOKEN" http://127.0.0.1:5123/v1/jobs/` + sub.ID + `/events`)
	if !strings.Contains(events, `"data":"hi\n"`) || !strings.Contains(events, "event: finished") || !strings.Contains(events, `"state":"succeeded"`) {
		t.Fatalf("events:\n%s", events)
	}
	page := sh(`curl -sS http://127.0.0.1:5123/`)
	if !strings.Contains(page, "<title>winch console</title>") {
		t.Fatalf("console page: %s", page)
	}
	if out := sh(`curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:5123/v1/jobs`); out != "401" {
		t.Fatalf("without a token: %s", out)
	}
	if err := dev.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if err := dev.Wait(); err != nil {
		t.Fatalf("winch dev exited with %v after Ctrl-C", err)
	}
}

// `winch gateway` with WINCH_TLS_CERT and WINCH_TLS_KEY speaks HTTPS only,
// and may then listen beyond loopback: a client that trusts the
// certificate's CA reaches the API and the console; one that does not is
// refused by TLS, and plain HTTP gets no answer from the API.
func TestGatewayServesHTTPS(t *testing.T) {
	t.Parallel()
	pki := testenv.NewPKI(t, t.TempDir(), "gateway")
	const token = "https-token-0123456789"
	sum := sha256.Sum256([]byte(token))
	env := []string{"WINCH_HTTP_ADDR=0.0.0.0:0", "WINCH_TLS_CERT=" + pki.CertFile, "WINCH_TLS_KEY=" + pki.KeyFile,
		"WINCH_TOKENS=" + hex.EncodeToString(sum[:]) + ":alice"}
	gw, lines := startWinch(t, env, "gateway")
	var listening struct {
		Msg, URL string
		TLS      bool
	}
	for listening.Msg != "gateway listening" && lines.Scan() {
		_ = json.Unmarshal(lines.Bytes(), &listening)
	}
	if !listening.TLS || !strings.HasPrefix(listening.URL, "https://") {
		t.Fatalf("winch gateway with a certificate: %+v", listening)
	}
	go func() {
		for lines.Scan() {
		}
	}()
	port := listening.URL[strings.LastIndex(listening.URL, ":")+1:]
	ca, err := os.ReadFile(pki.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	get := func(client *http.Client, url string) (*http.Response, string, error) {
		req, _ := http.NewRequestWithContext(t.Context(), "GET", url, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := client.Do(req)
		if err != nil {
			return nil, "", err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp, string(body), nil
	}
	trusting := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	defer trusting.CloseIdleConnections()
	resp, body, err := get(trusting, "https://localhost:"+port+"/v1/whoami")
	if err != nil || resp.StatusCode != http.StatusOK || resp.TLS == nil || !strings.Contains(body, `"principal":"alice"`) {
		t.Fatalf("whoami over HTTPS: %v %v %s", resp, err, body)
	}
	if resp, body, err := get(trusting, "https://localhost:"+port+"/"); err != nil || !strings.Contains(body, "<title>winch console</title>") {
		t.Fatalf("the console over HTTPS: %v %v", resp, err)
	}
	if _, _, err := get(&http.Client{Timeout: 10 * time.Second}, "https://localhost:"+port+"/v1/whoami"); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("a client that does not trust the CA: %v", err)
	}
	if resp, body, err := get(&http.Client{Timeout: 10 * time.Second}, "http://127.0.0.1:"+port+"/v1/whoami"); err == nil && (resp.StatusCode == http.StatusOK || strings.Contains(body, "alice")) {
		t.Fatalf("plain HTTP: %d %s", resp.StatusCode, body)
	}
	if err := gw.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if err := gw.Wait(); err != nil {
		t.Fatalf("winch gateway exited with %v after Ctrl-C", err)
	}
}

// A gateway setting that cannot work is the operator's to fix: winch
// gateway says which and exits 64, not 69 (which says "try again later").
func TestGatewaySettingsRefusedAsUsage(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "cert.pem")
	tokens := filepath.Join(dir, "tokens.yaml")
	if err := os.WriteFile(notPEM, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(tokens, []byte("- sha256: ab\n  principle: alice\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	token := "WINCH_TOKENS=" + strings.Repeat("ab", 32) + ":alice"
	tests := []struct {
		name string
		env  []string
		want string
	}{
		{"certificate without key", []string{token, "WINCH_HTTP_ADDR=127.0.0.1:0", "WINCH_TLS_CERT=" + notPEM}, "set both WINCH_TLS_CERT and WINCH_TLS_KEY"},
		{"not PEM", []string{token, "WINCH_HTTP_ADDR=127.0.0.1:0", "WINCH_TLS_CERT=" + notPEM, "WINCH_TLS_KEY=" + notPEM}, "failed to find any PEM data"},
		{"plain HTTP beyond loopback", []string{token, "WINCH_HTTP_ADDR=0.0.0.0:0"}, "would carry tokens in clear"},
		{"tokens file", []string{"WINCH_TOKENS_FILE=" + tokens, "WINCH_HTTP_ADDR=127.0.0.1:0"}, `unknown field "principle"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			out, code := runWinch(t, tt.env, "gateway")
			if code != exitUsage || !strings.Contains(out, tt.want) {
				t.Fatalf("winch gateway exited %d (want %d), saying:\n%s\nwant it to say %q", code, exitUsage, out, tt.want)
			}
		})
	}
}
