package modules_test

import (
	"os"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/winchhq/winch/internal/gittest"
	"github.com/winchhq/winch/internal/jobtest"
	"github.com/winchhq/winch/internal/testenv"
	"github.com/winchhq/winch/modules"
)

var natsURL string

func TestMain(m *testing.M) {
	os.Exit(testenv.WithNATS(func(_, url string) int {
		natsURL = url
		return m.Run()
	}))
}

func newUpstream(t *testing.T) *gittest.Repo { return gittest.New(t) }

func manifest(script string) map[string]string {
	return map[string]string{
		"winch.yaml": `module: db
description: Database chores
commands:
  backup:
    help: Back up one database
    params:
      name: {type: string, required: true, pattern: '^[a-z][a-z0-9_]*$'}
    run: ["sh", "scripts/backup.sh"]
    timeout: 1m
`,
		"scripts/backup.sh": script,
	}
}

// registry is a registry on the shared server, in a bucket of the test's
// own, with its own cache.
func registry(t *testing.T) *modules.Registry {
	t.Helper()
	kv, err := jobtest.New(t, natsURL, nil).JS.CreateKeyValue(t.Context(), jetstream.KeyValueConfig{Bucket: "MODS_" + sanitize(t.Name())})
	if err != nil {
		t.Fatal(err)
	}
	return &modules.Registry{KV: kv, Git: &modules.Git{CacheDir: t.TempDir()}}
}

func sanitize(s string) string {
	out := []rune{}
	for _, r := range s {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
			out = append(out, r)
		} else {
			out = append(out, '_')
		}
	}
	return string(out)
}
