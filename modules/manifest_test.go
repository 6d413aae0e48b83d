package modules_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/winchhq/winch/modules"
)

func TestCoreManifestIsValid(t *testing.T) {
	t.Parallel()
	core := modules.Core()
	for _, name := range []string{"echo", "sleep", "exit", "env", "seq", "true"} {
		if _, ok := core.Commands[name]; !ok {
			t.Errorf("core has no %s command", name)
		}
	}
	if !core.Commands["env"].Params["token"].Secret {
		t.Error("core.env's token is not secret")
	}
}

// A command's manifest may ask for a webhook when a run ends.
func TestManifestNotify(t *testing.T) {
	t.Parallel()
	m, err := modules.ParseManifest("winch.yaml", []byte("module: db\ncommands:\n  backup:\n    run: [sh]\n    notify: {on: [failed, timed_out], url: 'https://hooks.example/db', format: slack}\n"))
	if err != nil {
		t.Fatal(err)
	}
	n := m.Commands["backup"].Notify
	if n == nil || n.URL != "https://hooks.example/db" || n.Format != "slack" || len(n.On) != 2 || n.On[1] != "timed_out" {
		t.Fatalf("notify %+v", n)
	}
}

func TestParseManifestErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, yaml, want string
	}{
		{
			name: "unknown key",
			yaml: "module: db\ncommands:\n  backup:\n    run: [sh]\n    timout: 1m\n",
			want: `winch.yaml:5: commands.backup.timout: unknown field "timout"`,
		},
		{
			name: "notify state",
			yaml: "module: db\ncommands:\n  backup:\n    run: [sh]\n    notify: {on: [failed, exploded], url: https://hooks.example/db}\n",
			want: `winch.yaml:5: commands.backup.notify: notify on: "exploded" is not a state a job ends in (succeeded, failed, cancelled, timed_out, rejected, dead)`,
		},
		{
			name: "notify unknown key",
			yaml: "module: db\ncommands:\n  backup:\n    run: [sh]\n    notify: {url: https://hooks.example/db, when: failed}\n",
			want: `winch.yaml:5: commands.backup.notify: unknown field "when"`,
		},
		{
			name: "wrong type",
			yaml: "module: db\ncommands:\n  backup:\n    run: [sh]\n    retry: sometimes\n",
			want: "winch.yaml:5: commands.backup.retry: cannot unmarshal string into Go struct field Manifest.Commands of type bool",
		},
		{
			name: "argv not a list",
			yaml: "module: db\ncommands:\n  backup:\n    run: sh scripts/backup.sh\n",
			want: "winch.yaml:4: commands.backup.run: string was used where sequence is expected",
		},
		{
			name: "bad pattern",
			yaml: "module: db\ncommands:\n  backup:\n    run: [sh]\n    params:\n      name: {type: string, pattern: '('}\n",
			want: "winch.yaml:6: commands.backup.params.name.pattern: does not compile: error parsing regexp: missing closing ): `(`",
		},
		{
			name: "duplicate command",
			yaml: "module: db\ncommands:\n  backup:\n    run: [sh]\n  backup:\n    run: [sh]\n",
			want: `winch.yaml:5: commands.backup: mapping key "backup" already defined at [3:3]`,
		},
		{
			name: "bad module name",
			yaml: "module: DB\ncommands:\n  backup:\n    run: [sh]\n",
			want: `winch.yaml:1: module: "DB" is not a module name: lower-case letters, digits, '-' and '_', starting with a letter`,
		},
		{
			name: "no commands",
			yaml: "module: db\n",
			want: "winch.yaml: commands: a module declares at least one command",
		},
		{
			name: "empty run",
			yaml: "module: db\ncommands:\n  backup:\n    help: x\n    run: []\n",
			want: `winch.yaml:5: commands.backup.run: must be a non-empty list: the argv to run, like ["sh", "scripts/backup.sh"]`,
		},
		{
			name: "bad timeout",
			yaml: "module: db\ncommands:\n  backup:\n    run: [sh]\n    timeout: soon\n",
			want: `winch.yaml:5: commands.backup.timeout: duration "soon": want a number with a unit, like 30s, 10m or 1h`,
		},
		{
			name: "default of the wrong type",
			yaml: "module: db\ncommands:\n  backup:\n    run: [sh]\n    params:\n      n: {type: int, default: many}\n",
			want: `winch.yaml:6: commands.backup.params.n.default: want a whole number, got "many"`,
		},
		{
			name: "build outside the module",
			yaml: "module: db\nbuild: ../Dockerfile\ncommands:\n  backup:\n    run: [sh]\n",
			want: `winch.yaml:2: build: "../Dockerfile" is not a path inside the module`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := modules.ParseManifest("winch.yaml", []byte(tt.yaml))
			if err == nil {
				t.Fatal("ParseManifest accepted it")
			}
			var me *modules.ManifestError
			if !errors.As(err, &me) {
				t.Fatalf("error %T is not a *ManifestError: %v", err, err)
			}
			if err.Error() != tt.want {
				t.Fatalf("error\n%s\nwant\n%s", err, tt.want)
			}
		})
	}
}

func TestCatalogLookupSuggests(t *testing.T) {
	t.Parallel()
	cat, err := modules.NewCatalog(modules.Core())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cat.Lookup("core.echo"); err != nil {
		t.Fatal(err)
	}
	_, err = cat.Lookup("core.ecko")
	if !errors.Is(err, modules.ErrUnknownCommand) || !strings.Contains(err.Error(), `did you mean "core.echo"?`) {
		t.Fatalf("Lookup(core.ecko) = %v", err)
	}
	if _, err := cat.Lookup("zzzzzzzzzzzzzzz"); err == nil || strings.Contains(err.Error(), "did you mean") {
		t.Fatalf("a far-off name got a suggestion: %v", err)
	}
	if _, err := modules.NewCatalog(modules.Core(), modules.Core()); err == nil {
		t.Fatal("a module declared twice was accepted")
	}
}

func FuzzParseManifest(f *testing.F) {
	f.Add([]byte("module: db\ncommands:\n  backup:\n    run: [sh]\n    params:\n      name: {type: string, required: true, pattern: '^[a-z]+$'}\n"))
	f.Add([]byte("module: x\ncommands: {a: {run: [a], timeout: 1m, resources: {memory: 1Gi, cpus: 0.5, pids: 10}}}\n"))
	f.Add([]byte("- [\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := modules.ParseManifest("winch.yaml", data)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error message")
			}
			return
		}
		for name, cmd := range m.Commands {
			if err := cmd.Check(); err != nil {
				t.Fatalf("accepted command %s fails Check: %v", name, err)
			}
		}
	})
}
