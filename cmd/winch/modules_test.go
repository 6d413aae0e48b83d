package main

import (
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/winchhq/winch/internal/gittest"
)

// The module workflow through the real binary: add at a tag, list, show,
// commands, help, run at the pinned commit, sync, remove.
func TestModulesCommands(t *testing.T) {
	t.Parallel()
	env := []string{"WINCH_MODULE_CACHE=" + t.TempDir()}
	winch := func(args ...string) (string, int) {
		t.Helper()
		return runWinch(t, env, args...)
	}
	must := func(want string, args ...string) string {
		t.Helper()
		out, code := winch(args...)
		if code != 0 || !regexp.MustCompile(want).MatchString(out) {
			t.Fatalf("winch %s: exit %d, output does not match %q:\n%s", strings.Join(args, " "), code, want, out)
		}
		return out
	}
	manifest := `module: db
description: Database chores
commands:
  backup:
    help: Back up one database
    params:
      name: {type: string, required: true, pattern: '^[a-z][a-z0-9_]*$'}
      password: {type: string, secret: true}
    run: ["sh", "backup.sh"]
`
	up := gittest.New(t)
	c1 := up.Commit("v1", map[string]string{"winch.yaml": manifest, "backup.sh": "echo backed up $WINCH_PARAM_NAME with v1\n"})
	up.Tag("v1.0.0", c1)

	must(fmt.Sprintf(`^added db: tag v1.0.0 at %.12s, 1 commands\n$`, c1), "modules", "add", up.Dir, "--ref", "v1.0.0")
	must(fmt.Sprintf(`(?m)^db +%s +tag v1.0.0 +%.12s +\S+ \S+ +1$`, regexp.QuoteMeta(up.Dir), c1), "modules", "list")
	must(`(?s)module: db\n.*commit: `+c1+`.*backup:\n +help: Back up one database`, "modules", "show", "db")
	must(`(?m)^db.backup +Back up one database$`, "commands")
	must(`Usage: winch run db.backup --name=STRING \[--password=STRING\]`, "run", "db.backup", "--help")
	must(`^backed up main with v1\n$`, "run", "db.backup", "--name", "main")

	out, code := winch("run", "db.bakup", "--name", "main")
	if code != exitUsage || !strings.Contains(out, `unknown command "db.bakup": did you mean "db.backup"?`) {
		t.Fatalf("a typo: exit %d: %s", code, out)
	}
	out, code = winch("run", "db.backup", "--name", "Main")
	if code != exitUsage || !strings.Contains(out, `invalid parameters for db.backup: --name: "Main" does not match`) {
		t.Fatalf("bad parameters: exit %d: %s", code, out)
	}

	c2 := up.Commit("v2", map[string]string{"backup.sh": "echo backed up $WINCH_PARAM_NAME with v2\n"})
	up.Tag("v1.0.0", c2)
	must(`^backed up main with v1\n$`, "run", "db.backup", "--name", "main")
	must(fmt.Sprintf(`^db: tag v1.0.0 moved %.12s -> %.12s\n$`, c1, c2), "modules", "sync", "db")
	must(`^backed up main with v2\n$`, "run", "db.backup", "--name", "main")

	must(`^removed db\n$`, "modules", "remove", "db")
	out, code = winch("run", "db.backup", "--name", "main")
	if code != exitUsage || !strings.Contains(out, `unknown command "db.backup"`) {
		t.Fatalf("a removed module: exit %d: %s", code, out)
	}

	bad := gittest.New(t)
	bad.Commit("bad", map[string]string{"winch.yaml": "module: db\ncommands:\n  backup:\n    run: [sh]\n    timout: 1m\n"})
	out, code = winch("modules", "add", bad.Dir)
	if code != exitUsage || !strings.Contains(out, `:winch.yaml:5: commands.backup.timout: unknown field "timout"`) {
		t.Fatalf("a bad manifest: exit %d: %s", code, out)
	}
}
