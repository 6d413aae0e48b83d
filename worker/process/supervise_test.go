package process

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/winchhq/winch/worker/process/supervisor"
)

// A supervisor whose worker died before it got going starts nothing.
func TestSupervisorStartsNothingOnceTheWorkerIsGone(t *testing.T) {
	t.Parallel()
	dedicated := os.Getenv("WINCH_TEST_SUPERVISOR") // see TestMain
	if dedicated == "" {
		t.Fatal("TestMain built no winch-supervise")
	}
	for _, bin := range []string{dedicated, selfExe} {
		t.Run(filepath.Base(bin), func(t *testing.T) {
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
				Path:       bin,
				Args:       []string{supervisor.Marker, "/bin/sh", "sh", "-c", "touch " + marker},
				ExtraFiles: []*os.File{aliveR, startedW},
			}
			err = cmd.Run()
			if exit, ok := err.(*exec.ExitError); !ok || exit.ExitCode() != supervisor.Failed {
				t.Fatalf("the supervisor without its worker: %v; want exit %d", err, supervisor.Failed)
			}
			if _, err := os.Stat(marker); !os.IsNotExist(err) {
				t.Fatalf("the supervisor ran the command without its worker: %v", err)
			}
		})
	}
}

func TestSupervisorPath(t *testing.T) {
	t.Parallel()
	withSupervisor, without := t.TempDir(), t.TempDir()
	beside := filepath.Join(withSupervisor, supervisor.Marker)
	if err := os.WriteFile(beside, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	// Not executable: not a supervisor.
	if err := os.WriteFile(filepath.Join(without, supervisor.Marker), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ configured, exe, want string }{
		{"/opt/sup", filepath.Join(withSupervisor, "winch"), "/opt/sup"},
		{"", filepath.Join(withSupervisor, "winch"), beside},
		{"", filepath.Join(without, "winch"), selfExe},
		{"", "", selfExe},
		{selfExe, filepath.Join(withSupervisor, "winch"), selfExe},
	} {
		if got := supervisorPath(tt.configured, tt.exe); got != tt.want {
			t.Errorf("supervisorPath(%q, %q) = %q; want %q", tt.configured, tt.exe, got, tt.want)
		}
	}
}
