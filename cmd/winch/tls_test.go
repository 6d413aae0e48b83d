package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

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
