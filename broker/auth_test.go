package broker_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/winchhq/winch/audit"
	"github.com/winchhq/winch/broker"
	"github.com/winchhq/winch/internal/jobtest"
	"github.com/winchhq/winch/internal/testenv"
	"github.com/winchhq/winch/notify"
	"github.com/winchhq/winch/schema"
)

// operatorSetup is winch's decentralized authorization as ops/auth/README.md
// describes it, made with the jwt and nkeys libraries: an operator, a
// system account, and an account "winch" with JetStream whose scoped signing
// key (role "client") signs every person's user with
// broker.ClientPermissions({{name()}}). Services are signed by the account
// key itself with broker.ServicePermissions.
type operatorSetup struct {
	t          *testing.T
	dir        string
	accountPub string
	accountKP  nkeys.KeyPair
	clientKP   nkeys.KeyPair // the scoped signing key
	revokedKP  nkeys.KeyPair
	config     string // nats-server config lines
}

func newOperatorSetup(t *testing.T, dir string, revoke func(acct *jwt.AccountClaims, s *operatorSetup)) *operatorSetup {
	t.Helper()
	must := func(kp nkeys.KeyPair, err error) nkeys.KeyPair {
		if err != nil {
			t.Fatal(err)
		}
		return kp
	}
	okp := must(nkeys.CreateOperator())
	opub, _ := okp.PublicKey()
	op := jwt.NewOperatorClaims(opub)
	op.Name = "winch-test"
	sysKP := must(nkeys.CreateAccount())
	sysPub, _ := sysKP.PublicKey()
	op.SystemAccount = sysPub
	opJWT, err := op.Encode(okp)
	if err != nil {
		t.Fatal(err)
	}
	sys := jwt.NewAccountClaims(sysPub)
	sys.Name = "SYS"
	sysJWT, err := sys.Encode(okp)
	if err != nil {
		t.Fatal(err)
	}
	s := &operatorSetup{t: t, dir: dir, accountKP: must(nkeys.CreateAccount()), clientKP: must(nkeys.CreateAccount())}
	s.accountPub, _ = s.accountKP.PublicKey()
	acct := jwt.NewAccountClaims(s.accountPub)
	acct.Name = "winch"
	acct.Limits.JetStreamLimits = jwt.JetStreamLimits{MemoryStorage: -1, DiskStorage: -1, Streams: -1, Consumer: -1}
	scope := jwt.NewUserScope()
	scope.Key, _ = s.clientKP.PublicKey()
	scope.Role = "client"
	perms := broker.ClientPermissions(broker.NameTemplate)
	scope.Template.Pub.Allow.Add(perms.Publish...)
	scope.Template.Sub.Allow.Add(perms.Subscribe...)
	scope.Template.Pub.Deny.Add(perms.PublishDeny...)
	acct.SigningKeys.AddScopedSigner(scope)
	if revoke != nil {
		revoke(acct, s)
	}
	acctJWT, err := acct.Encode(okp)
	if err != nil {
		t.Fatal(err)
	}
	s.config = fmt.Sprintf("operator: %s\nsystem_account: %s\nresolver: MEMORY\nresolver_preload: {\n  %s: %s\n  %s: %s\n}\n",
		opJWT, sysPub, sysPub, sysJWT, s.accountPub, acctJWT)
	return s
}

// user writes a .creds file for a user named name. A client is signed by
// the scoped key and carries no permissions of its own (the key's template
// gives them); a service is signed by the account with its permissions.
func (s *operatorSetup) user(name string, service bool, expires time.Time) (file, pub string) {
	s.t.Helper()
	ukp, err := nkeys.CreateUser()
	if err != nil {
		s.t.Fatal(err)
	}
	pub, _ = ukp.PublicKey()
	uc := jwt.NewUserClaims(pub)
	uc.Name = name
	if !expires.IsZero() {
		uc.Expires = expires.Unix()
	}
	signer := s.clientKP
	if service {
		signer = s.accountKP
		p := broker.ServicePermissions()
		uc.Pub.Allow.Add(p.Publish...)
		uc.Sub.Allow.Add(p.Subscribe...)
	} else {
		// A scoped key's users carry no limits of their own: the
		// server refuses one that does.
		uc.UserPermissionLimits = jwt.UserPermissionLimits{}
		uc.IssuerAccount = s.accountPub
	}
	return s.writeCreds(name, uc, signer, ukp), pub
}

// With the decentralized setup and TLS, each user connects with its .creds
// file over TLS, publishes requests only as itself, cannot write the record,
// and a wrong CA, an expired or a revoked user is refused with a clear
// error.
func TestJWTUsersOverTLS(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	certs := testenv.NewPKI(t, dir, "winch")
	other := testenv.NewPKI(t, dir, "other")
	var revokedPub string
	setup := newOperatorSetup(t, dir, func(acct *jwt.AccountClaims, s *operatorSetup) {
		ukp, _ := nkeys.CreateUser()
		revokedPub, _ = ukp.PublicKey()
		// Revoke whatever mallory's key signed before a minute from now.
		acct.RevokeAt(revokedPub, time.Now().Add(time.Minute))
		s.revokedKP = ukp
	})
	conf := filepath.Join(dir, "nats.conf")
	body := setup.config + fmt.Sprintf("listen: 127.0.0.1:-1\njetstream { store_dir: %q }\ntls {\n  cert_file: %q\n  key_file: %q\n  timeout: 2\n}\n",
		filepath.Join(dir, "js"), certs.CertFile, certs.KeyFile)
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	srv, err := broker.NewServer(broker.ServerConfig{ConfigFile: conf, NoMonitoring: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	// Two URLs naming one server (a cluster's seeds look like this): the
	// certificate covers both names.
	url := strings.Replace(srv.ClientURL(), "nats://", "tls://", 1)
	port := url[strings.LastIndex(url, ":")+1:]

	connect := func(creds, ca string) (*nats.Conn, error) {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		return broker.Connect(ctx, broker.ConnectConfig{URL: url + ",tls://localhost:" + port, Credentials: broker.Credentials{CredsFile: creds, CAFile: ca}})
	}
	workerCreds, _ := setup.user("worker", true, time.Time{})
	wnc, err := connect(workerCreds, certs.CAFile)
	if err != nil {
		t.Fatalf("the worker cannot connect with its .creds over TLS: %v", err)
	}
	defer wnc.Close()
	if !wnc.TLSRequired() {
		if _, err := wnc.TLSConnectionState(); err != nil {
			t.Fatalf("the connection is not TLS: %v", err)
		}
	}
	wjs, _ := jetstream.New(wnc)
	if _, err := broker.Ensure(t.Context(), wjs, broker.Topology{}); err != nil {
		t.Fatalf("the worker cannot create the topology: %v", err)
	}

	aliceCreds, _ := setup.user("alice", false, time.Time{})
	anc, err := connect(aliceCreds, certs.CAFile)
	if err != nil {
		t.Fatalf("alice cannot connect: %v", err)
	}
	defer anc.Close()
	if _, err := anc.TLSConnectionState(); err != nil {
		t.Fatalf("alice's connection is not TLS: %v", err)
	}
	ajs, _ := jetstream.New(anc)
	if _, err := ajs.Publish(t.Context(), broker.JobSubject("default", "j1", "alice"), []byte("{}")); err != nil {
		t.Fatalf("alice cannot publish a request as alice: %v", err)
	}
	if _, err := ajs.Publish(t.Context(), broker.ControlSubject("cancel", "j1", "alice"), []byte("{}")); err != nil {
		t.Fatalf("alice cannot ask to cancel as alice: %v", err)
	}
	for _, subject := range []string{
		broker.JobSubject("default", "j2", "bob"),
		broker.ControlSubject("cancel", "j1", "bob"),
		broker.JobSubject("default", "j3", "alice.bob"),
		broker.EventSubject("j1", "finished"),
		"$KV." + broker.StateBucket + ".j1",
		"$KV." + broker.WorkersBucket + ".w1",
		broker.WorkerSubject("w1"),
	} {
		ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
		if _, err := ajs.Publish(ctx, subject, []byte(`{"job_id":"j1","kind":"finished","state":"succeeded"}`)); err == nil {
			t.Errorf("alice's JWT published on %s", subject)
		}
		cancel()
	}
	js, err := wjs.Stream(t.Context(), broker.JobsStream)
	if err != nil {
		t.Fatal(err)
	}
	if info, err := js.Info(t.Context()); err != nil || info.State.Msgs != 1 {
		t.Fatalf("the jobs stream holds %d requests (%v), want alice's one", info.State.Msgs, err)
	}
	if _, err := ajs.KeyValue(t.Context(), broker.StateBucket); err != nil {
		t.Fatalf("alice cannot read job states: %v", err)
	}

	// The gateway's role (broker.GatewayPermissions): it publishes requests
	// and cancels for every principal it authenticates, and, like a
	// client, writes no state and no event, and cannot touch the services'
	// shared consumers.
	gnc, err := connect(setup.userWith("gateway", broker.GatewayPermissions()), certs.CAFile)
	if err != nil {
		t.Fatalf("the gateway cannot connect: %v", err)
	}
	defer gnc.Close()
	gjs, _ := jetstream.New(gnc)
	for _, subject := range []string{broker.JobSubject("default", "g1", "alice"), broker.JobSubject("default", "g2", "bob"), broker.ControlSubject("cancel", "g2", "bob")} {
		if _, err := gjs.Publish(t.Context(), subject, []byte("{}")); err != nil {
			t.Errorf("the gateway cannot publish on %s: %v", subject, err)
		}
	}
	for _, js := range []struct {
		who string
		js  jetstream.JetStream
	}{{"the gateway", gjs}, {"alice", ajs}} {
		for _, subject := range []string{
			broker.EventSubject("g1", "finished"),
			"$KV." + broker.StateBucket + ".g1",
			"$KV." + broker.WorkersBucket + ".w1",
			"$KV." + broker.SlotsBucket + ".key.k",
			"$KV." + broker.ModulesBucket + ".m",
		} {
			ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
			if _, err := js.js.Publish(ctx, subject, []byte(`{"job_id":"g1","kind":"finished","state":"succeeded"}`)); err == nil {
				t.Errorf("%s published on %s", js.who, subject)
			}
			cancel()
		}
		ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
		if err := js.js.DeleteConsumer(ctx, broker.EventsStream, broker.NotifierConsumer); err == nil {
			t.Errorf("%s deleted the notifiers' consumer", js.who)
		}
		cancel()
	}
	if _, err := wjs.Consumer(t.Context(), broker.EventsStream, broker.NotifierConsumer); err != nil {
		t.Fatalf("the notifiers' consumer: %v", err)
	}
	if info, err := wjs.Stream(t.Context(), broker.EventsStream); err != nil || info.CachedInfo().State.Msgs != 0 {
		t.Fatalf("the events stream: %v, want no event written by a client", err)
	}

	// Refusals, each with an error that says what to check.
	bobCreds, _ := setup.user("bob", false, time.Time{})
	expiredCreds, _ := setup.user("eve", false, time.Now().Add(-time.Minute))
	revokedCreds := setup.credsFor("mallory", setup.revokedKP)
	for _, tt := range []struct {
		name, creds, ca string
		want            error
		says            string
	}{
		{"wrong CA", bobCreds, other.CAFile, broker.ErrTLS, "WINCH_NATS_TLS_CA=" + other.CAFile},
		{"no CA", bobCreds, "", broker.ErrTLS, "set WINCH_NATS_TLS_CA"},
		{"expired user", expiredCreds, certs.CAFile, broker.ErrNotAuthorized, "expired or revoked"},
		{"revoked user", revokedCreds, certs.CAFile, broker.ErrNotAuthorized, "expired or revoked"},
		{"not a creds file", certs.CAFile, certs.CAFile, broker.ErrBadCredentials, "is not a NATS credentials file"},
	} {
		nc, err := connect(tt.creds, tt.ca)
		if err == nil {
			nc.Close()
			t.Errorf("%s: connected", tt.name)
			continue
		}
		if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.says) {
			t.Errorf("%s: %v; want %v saying %q", tt.name, err, tt.want, tt.says)
		}
	}
	if nc, err := connect(bobCreds, certs.CAFile); err != nil {
		t.Errorf("bob, with the right CA: %v", err)
	} else {
		nc.Close()
	}

	// The notifier's role (broker.NotifierPermissions) is enough to run
	// one, and writes nothing else.
	got := make(chan string, 4)
	recv := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		select {
		case got <- r.Header.Get(notify.HeaderDelivery):
		default:
		}
	}))
	defer recv.Close()
	nnc, err := connect(setup.userWith("notifier", broker.NotifierPermissions()), certs.CAFile)
	if err != nil {
		t.Fatalf("the notifier cannot connect: %v", err)
	}
	defer nnc.Close()
	n, err := notify.New(nnc, notify.Config{Secret: []byte("s"), AckWait: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(t.Context()); err != nil {
		t.Fatalf("a notifier with its role cannot start: %v", err)
	}
	defer func() { _ = n.Stop(context.Background()) }()
	ev := schema.Event{JobID: "n1", Attempt: 1, Seq: 2, Kind: schema.KindFinished, State: schema.StateSucceeded, Time: time.Now(),
		Command: "core.true", Principal: "alice", Notify: []schema.NotifyTarget{{URL: recv.URL}}}
	data, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := wjs.Publish(t.Context(), broker.EventSubject("n1", "finished"), data); err != nil {
		t.Fatal(err)
	}
	select {
	case id := <-got:
		if id != notify.DeliveryID(ev, 0) {
			t.Fatalf("delivery id %q", id)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("the notifier with its role delivered nothing: %+v", n.Stats())
	}
	njs, _ := jetstream.New(nnc)
	for _, subject := range []string{broker.EventSubject("n2", "finished"), "$KV." + broker.StateBucket + ".n2", broker.JobSubject("default", "n2", "alice")} {
		ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
		if _, err := njs.Publish(ctx, subject, []byte("{}")); err == nil {
			t.Errorf("the notifier published on %s", subject)
		}
		cancel()
	}
	if !jobtest.Eventually(5*time.Second, func() bool {
		c, err := wjs.Consumer(t.Context(), broker.EventsStream, broker.NotifierConsumer)
		if err != nil {
			return false
		}
		info, err := c.Info(t.Context())
		return err == nil && info.NumAckPending == 0 && info.NumPending == 0
	}) {
		t.Error("the notifier's acknowledgement did not reach the stream")
	}

	// The sink's role (broker.SinkPermissions) is enough to run one: the
	// events reach ClickHouse, and it writes nothing else.
	ch, err := testenv.StartClickHouse(t.TempDir())
	if err != nil {
		testenv.Missing(t, "clickhouse", err)
	}
	t.Cleanup(func() { _ = ch.Stop() })
	store, err := audit.Open(t.Context(), ch.DSN("winch_auth"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	if _, err := store.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	snc, err := connect(setup.userWith("sink", broker.SinkPermissions()), certs.CAFile)
	if err != nil {
		t.Fatalf("the sink cannot connect: %v", err)
	}
	defer snc.Close()
	sink, err := audit.NewSink(snc, store, audit.SinkConfig{MaxWait: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := sink.Start(t.Context()); err != nil {
		t.Fatalf("a sink with its role cannot start: %v", err)
	}
	defer func() { _ = sink.Stop(context.Background()) }()
	if !jobtest.Eventually(30*time.Second, func() bool {
		evs, err := store.Events(t.Context(), "n1")
		return err == nil && len(evs) == 1
	}) {
		t.Fatal("the sink with its role stored nothing of job n1")
	}
	if !jobtest.Eventually(5*time.Second, func() bool {
		c, err := wjs.Consumer(t.Context(), broker.EventsStream, broker.SinkConsumer)
		if err != nil {
			return false
		}
		info, err := c.Info(t.Context())
		return err == nil && info.NumAckPending == 0 && info.NumPending == 0
	}) {
		t.Error("the sink's acknowledgements did not reach the stream")
	}
	sjs, _ := jetstream.New(snc)
	for _, subject := range []string{broker.EventSubject("s2", "finished"), "$KV." + broker.StateBucket + ".s2", broker.JobSubject("default", "s2", "alice")} {
		ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
		if _, err := sjs.Publish(ctx, subject, []byte("{}")); err == nil {
			t.Errorf("the sink published on %s", subject)
		}
		cancel()
	}
}

// userWith writes a .creds file for a user named name signed by the
// account key with p: a role of its own, like the gateway's.
func (s *operatorSetup) userWith(name string, p broker.Permissions) string {
	s.t.Helper()
	ukp, err := nkeys.CreateUser()
	if err != nil {
		s.t.Fatal(err)
	}
	pub, _ := ukp.PublicKey()
	uc := jwt.NewUserClaims(pub)
	uc.Name = name
	uc.Pub.Allow.Add(p.Publish...)
	uc.Pub.Deny.Add(p.PublishDeny...)
	uc.Sub.Allow.Add(p.Subscribe...)
	return s.writeCreds(name, uc, s.accountKP, ukp)
}

func (s *operatorSetup) credsFor(name string, ukp nkeys.KeyPair) string {
	s.t.Helper()
	pub, _ := ukp.PublicKey()
	uc := jwt.NewUserClaims(pub)
	uc.Name = name
	uc.UserPermissionLimits = jwt.UserPermissionLimits{}
	uc.IssuerAccount = s.accountPub
	return s.writeCreds(name, uc, s.clientKP, ukp)
}

// writeCreds signs uc with signer and writes it with ukp's seed as
// name.creds, the file a user connects with.
func (s *operatorSetup) writeCreds(name string, uc *jwt.UserClaims, signer, ukp nkeys.KeyPair) string {
	s.t.Helper()
	ujwt, err := uc.Encode(signer)
	if err != nil {
		s.t.Fatal(err)
	}
	seed, _ := ukp.Seed()
	creds, err := jwt.FormatUserConfig(ujwt, seed)
	if err != nil {
		s.t.Fatal(err)
	}
	file := filepath.Join(s.dir, name+".creds")
	if err := os.WriteFile(file, creds, 0o600); err != nil {
		s.t.Fatal(err)
	}
	return file
}

// The nsc commands of ops/auth/README.md are what an operator types: each
// role's lists there are the code's, so that the documented setup grants
// what the tests prove and nothing else.
func TestDocumentedNscRolesAreTheCodes(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile("../ops/auth/README.md")
	if err != nil {
		t.Fatal(err)
	}
	// roles maps the line that starts a role's command to its flags.
	roles := map[string]struct{ allow, deny []string }{}
	var current string
	for line := range strings.Lines(string(data)) {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "nsc ") {
			current = line
			continue
		}
		for _, flag := range []string{"--allow-pub", "--deny-pub"} {
			rest, ok := strings.CutPrefix(line, flag+" '")
			if !ok || current == "" {
				continue
			}
			list := strings.Split(rest[:strings.Index(rest, "'")], ",")
			r := roles[current]
			if flag == "--allow-pub" {
				r.allow = append(r.allow, list...)
			} else {
				r.deny = append(r.deny, list...)
			}
			roles[current] = r
		}
	}
	tests := []struct {
		command string
		want    broker.Permissions
	}{
		{"--role client", broker.ClientPermissions(broker.NameTemplate)},
		{"--name gateway", broker.GatewayPermissions()},
		{"--name notifier", broker.NotifierPermissions()},
		{"--name sink", broker.SinkPermissions()},
		{"--name worker-1", broker.ServicePermissions()},
	}
	for _, tt := range tests {
		var found bool
		for command, r := range roles {
			if !strings.Contains(command, tt.command) {
				continue
			}
			found = true
			if !sameSet(r.allow, tt.want.Publish) || !sameSet(r.deny, tt.want.PublishDeny) {
				t.Errorf("ops/auth/README.md's %q grants\n allow %v\n deny  %v\nthe code's role is\n allow %v\n deny  %v",
					tt.command, r.allow, r.deny, tt.want.Publish, tt.want.PublishDeny)
			}
		}
		if !found {
			t.Errorf("ops/auth/README.md has no nsc command with %q", tt.command)
		}
	}
}

func sameSet(a, b []string) bool {
	set := map[string]bool{}
	for _, s := range a {
		set[s] = true
	}
	for _, s := range b {
		if !set[s] {
			return false
		}
	}
	return len(set) == len(b)
}
