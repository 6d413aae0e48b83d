package files_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/winchhq/winch/worker/files"
)

func write(t *testing.T, path, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestTarCopiesTheTree(t *testing.T) {
	t.Parallel()
	src := t.TempDir()
	write(t, filepath.Join(src, "winch.yaml"), "module: db\n")
	write(t, filepath.Join(src, "scripts", "backup.sh"), "echo backup\n")
	write(t, filepath.Join(src, ".git", "HEAD"), "ref: refs/heads/main\n")
	if err := os.Symlink("scripts/backup.sh", filepath.Join(src, "run.sh")); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := files.Tar(src, &buf); err != nil {
		t.Fatal(err)
	}
	dst := t.TempDir()
	if err := files.Untar(&buf, dst); err != nil {
		t.Fatal(err)
	}
	if data, err := os.ReadFile(filepath.Join(dst, "run.sh")); err != nil || string(data) != "echo backup\n" {
		t.Fatalf("run.sh through its link: %q %v", data, err)
	}
	if _, err := os.Stat(filepath.Join(dst, ".git")); !os.IsNotExist(err) {
		t.Fatal(".git was copied")
	}
}

func TestTarRefusesLinksOutOfTheModule(t *testing.T) {
	t.Parallel()
	for name, target := range map[string]string{
		"relative": "../../etc/passwd",
		"absolute": "/etc/passwd",
	} {
		src := t.TempDir()
		write(t, filepath.Join(src, "winch.yaml"), "module: db\n")
		if err := os.Symlink(target, filepath.Join(src, "leak")); err != nil {
			t.Fatal(err)
		}
		if err := files.Tar(src, &bytes.Buffer{}); !errors.Is(err, files.ErrEscape) {
			t.Errorf("%s link %s: %v", name, target, err)
		}
	}
}
