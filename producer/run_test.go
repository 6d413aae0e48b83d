package producer_test

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/winchhq/winch/broker"
	"github.com/winchhq/winch/internal/testenv"
	"github.com/winchhq/winch/modules"
	"github.com/winchhq/winch/producer"
	"github.com/winchhq/winch/schema"
)

const dbCommit = "0123456789abcdef0123456789abcdef01234567"

// dbModule is a registered module, at a commit.
func dbModule(t *testing.T, name string) modules.Entry {
	t.Helper()
	m, err := modules.ParseManifest("winch.yaml", []byte("module: "+name+`
commands:
  backup:
    params:
      name: {type: string, required: true, pattern: '^[a-z][a-z0-9_]*$'}
      tables: {type: list}
    run: ["sh", "backup.sh"]
`))
	if err != nil {
		t.Fatal(err)
	}
	return modules.Entry{Name: name, URL: "https://example.com/" + name + ".git", Ref: "main", Kind: "branch", Commit: dbCommit, Manifest: m}
}

func TestPrepare(t *testing.T) {
	t.Parallel()
	cat, err := modules.CatalogOf([]modules.Entry{{Name: "core", Manifest: modules.Core()}, dbModule(t, "db")})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		req     producer.RunRequest
		want    schema.Request // when valid
		wantErr string         // the whole message
		params  []producer.ParamError
	}{
		{
			name: "defaults filled in, JSON numbers typed",
			req:  producer.RunRequest{Command: "core.env", Params: map[string]any{"count": json.Number("3")}, Queue: "q", Principal: "alice"},
			want: schema.Request{Command: "core.env", Params: map[string]any{"name": "world", "count": int64(3), "verbose": false}, Queue: "q", Principal: "alice"},
		},
		{
			name: "a module's command is pinned to its commit",
			req: producer.RunRequest{Command: "db.backup", Params: map[string]any{"name": "main", "tables": []any{"users"}},
				Principal: "alice", ID: "job-1", IdempotencyKey: "k", Timeout: 90 * time.Second},
			want: schema.Request{Command: "db.backup", Params: map[string]any{"name": "main", "tables": []string{"users"}}, Principal: "alice",
				ID: "job-1", IdempotencyKey: "k", Timeout: schema.Duration(90 * time.Second), ModuleCommit: dbCommit},
		},
		{
			name:    "unknown command",
			req:     producer.RunRequest{Command: "core.ecko"},
			wantErr: "unknown command \"core.ecko\": did you mean \"core.echo\"? (`winch commands` lists them all)",
		},
		{
			name:    "missing",
			req:     producer.RunRequest{Command: "core.echo"},
			wantErr: "invalid parameters for core.echo: text: required",
			params:  []producer.ParamError{{Param: "text", Message: "required"}},
		},
		{
			name:    "not a whole number",
			req:     producer.RunRequest{Command: "core.exit", Params: map[string]any{"code": "x"}},
			wantErr: `invalid parameters for core.exit: code: want a whole number, got "x"`,
			params:  []producer.ParamError{{Param: "code", Message: `want a whole number, got "x"`}},
		},
		{
			name:    "below the minimum",
			req:     producer.RunRequest{Command: "core.sleep", Params: map[string]any{"seconds": -1.5}},
			wantErr: "invalid parameters for core.sleep: seconds: -1.5 is less than the minimum 0",
			params:  []producer.ParamError{{Param: "seconds", Message: "-1.5 is less than the minimum 0"}},
		},
		{
			name:    "not matching the pattern",
			req:     producer.RunRequest{Command: "db.backup", Params: map[string]any{"name": "Main"}},
			wantErr: `invalid parameters for db.backup: name: "Main" does not match ^[a-z][a-z0-9_]*$`,
			params:  []producer.ParamError{{Param: "name", Message: `"Main" does not match ^[a-z][a-z0-9_]*$`}},
		},
		{
			name:    "not a parameter",
			req:     producer.RunRequest{Command: "core.echo", Params: map[string]any{"text": "x", "txt": "y"}},
			wantErr: "invalid parameters for core.echo: txt: not a parameter of this command; it takes stderr, text",
			params:  []producer.ParamError{{Param: "txt", Message: "not a parameter of this command; it takes stderr, text"}},
		},
		{
			name:    "a command without parameters",
			req:     producer.RunRequest{Command: "core.true", Params: map[string]any{"x": true}},
			wantErr: "invalid parameters for core.true: x: not a parameter of this command; it takes none",
			params:  []producer.ParamError{{Param: "x", Message: "not a parameter of this command; it takes none"}},
		},
		{
			name: "every problem at once, unknown names first, then by name",
			req:  producer.RunRequest{Command: "db.backup", Params: map[string]any{"zz": 1, "aa": 2, "tables": "users"}},
			wantErr: "invalid parameters for db.backup: aa: not a parameter of this command; it takes name, tables; " +
				"zz: not a parameter of this command; it takes name, tables; name: required; tables: want a list of strings, got \"users\"",
			params: []producer.ParamError{
				{Param: "aa", Message: "not a parameter of this command; it takes name, tables"},
				{Param: "zz", Message: "not a parameter of this command; it takes name, tables"},
				{Param: "name", Message: "required"},
				{Param: "tables", Message: `want a list of strings, got "users"`},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := producer.Prepare(cat, tt.req)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(got, tt.want) {
					t.Fatalf("prepared\n%#v\nwant\n%#v", got, tt.want)
				}
				return
			}
			if err == nil || err.Error() != tt.wantErr {
				t.Fatalf("error\n%v\nwant\n%s", err, tt.wantErr)
			}
			if !producer.IsInvalid(err) {
				t.Errorf("IsInvalid(%v) is false", err)
			}
			var invalid *producer.InvalidParamsError
			if tt.params == nil {
				if !errors.Is(err, producer.ErrUnknownCommand) || errors.As(err, &invalid) {
					t.Fatalf("%v: want an unknown command", err)
				}
				return
			}
			if !errors.As(err, &invalid) || invalid.Command != tt.req.Command {
				t.Fatalf("%v is not an *InvalidParamsError for %s", err, tt.req.Command)
			}
			var gotParams []producer.ParamError
			for _, p := range invalid.Params {
				gotParams = append(gotParams, *p)
			}
			if !reflect.DeepEqual(gotParams, tt.params) {
				t.Errorf("problems %+v, want %+v", gotParams, tt.params)
			}
			var first *producer.ParamError
			if !errors.As(err, &first) || *first != tt.params[0] {
				t.Errorf("errors.As gives %+v, want %+v", first, tt.params[0])
			}
		})
	}
}

func TestRunSubmitsWhatItValidated(t *testing.T) {
	c := client(t)
	sub, err := c.Run(t.Context(), producer.RunRequest{
		Command: "core.env", Params: map[string]any{"count": json.Number("2")}, Queue: "nobody-serves-this", Principal: "alice",
	})
	if err != nil {
		t.Fatal(err)
	}
	r := sub.Request
	want := map[string]any{"name": "world", "count": int64(2), "verbose": false}
	if !schema.ValidJobID(r.ID) || r.Command != "core.env" || !reflect.DeepEqual(r.Params, want) || r.ModuleCommit != "" {
		t.Fatalf("submitted %+v", r)
	}
	if st, err := c.Status(t.Context(), r.ID); err != nil || st.State != schema.StateQueued {
		t.Fatalf("status %+v, %v", st, err)
	}

	// What fails validation is never published.
	for _, req := range []producer.RunRequest{
		{Command: "core.echo", Principal: "alice", ID: "never-published-1"},
		{Command: "core.ecko", Params: map[string]any{"text": "x"}, Principal: "alice", ID: "never-published-2"},
		{Command: "core.echo", Params: map[string]any{"text": "x"}, Principal: "alice", ID: "never-published-3", Queue: "a.b"},
	} {
		if _, err := c.Run(t.Context(), req); !producer.IsInvalid(err) {
			t.Errorf("Run(%+v): %v", req, err)
		}
		if _, err := c.Status(t.Context(), req.ID); !errors.Is(err, producer.ErrNotFound) {
			t.Errorf("%s: status %v", req.ID, err)
		}
	}
}

func TestRunResolvesModulesInTheRegistry(t *testing.T) {
	c := client(t)
	js, err := jetstream.New(connect(t))
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(t.Context(), broker.ModulesBucket)
	if err != nil {
		t.Fatal(err)
	}
	entry := dbModule(t, "runtest")
	data, err := json.Marshal(entry)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(t.Context(), entry.Name, data); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = kv.Delete(t.Context(), entry.Name) })

	cat, err := c.Catalog(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if cmd, err := cat.Lookup("runtest.backup"); err != nil || cmd.Commit != dbCommit {
		t.Fatalf("catalog: %+v, %v", cmd, err)
	}
	if _, err := cat.Lookup("core.echo"); err != nil {
		t.Fatalf("catalog without the core: %v", err)
	}
	sub, err := c.Run(t.Context(), producer.RunRequest{Command: "runtest.backup", Params: map[string]any{"name": "main"}, Queue: "nobody-serves-this", Principal: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	if sub.Request.ModuleCommit != dbCommit {
		t.Fatalf("module commit %q, want %q", sub.Request.ModuleCommit, dbCommit)
	}
	if err := kv.Delete(t.Context(), entry.Name); err != nil {
		t.Fatal(err)
	}
	// Removed: gone for new requests.
	if _, err := c.Run(t.Context(), producer.RunRequest{Command: "runtest.backup", Params: map[string]any{"name": "main"}, Principal: "alice"}); !errors.Is(err, producer.ErrUnknownCommand) {
		t.Fatalf("a removed module's command: %v", err)
	}
}

func TestCatalogWithoutARegistry(t *testing.T) {
	srv := testenv.OwnNATS(t)
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	_, err = producer.LoadCatalog(t.Context(), js)
	if !errors.Is(err, producer.ErrRegistryUnavailable) || !errors.Is(err, producer.ErrNoTopology) || !strings.Contains(err.Error(), "winch dev") {
		t.Fatalf("LoadCatalog on a bare server: %v", err)
	}
}
