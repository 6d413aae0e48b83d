package process

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// A supervisor whose worker died before it got going starts nothing.
func TestSupervisorStartsNothingOnceTheWorkerIsGone(t *testing.T) {
	t.Parallel()
	marker := filepath.Join(t.TempDir(), "ran")
	aliveR, aliveW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer aliveR.Close()
	startedR, startedW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer startedR.Close()
	defer startedW.Close()
	_ = aliveW.Close() // the worker is gone
	cmd := &exec.Cmd{
		Path:       "/proc/self/exe",
		Args:       []string{superviseName, "/bin/sh", "sh", "-c", "touch " + marker},
		ExtraFiles: []*os.File{aliveR, startedW},
	}
	if err := cmd.Run(); err == nil {
		t.Fatal("the supervisor succeeded without its worker")
	}
	if _, err := os.Stat(marker); !os.IsNotExist(err) {
		t.Fatalf("the supervisor ran the command without its worker: %v", err)
	}
}
