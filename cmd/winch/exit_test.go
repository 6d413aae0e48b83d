package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/winchhq/winch/schema"
)

func TestExitCodeOfAJob(t *testing.T) {
	t.Parallel()
	code := func(n int) *int { return &n }
	tests := []struct {
		name string
		ev   schema.Event
		want int
	}{
		{"succeeded", schema.Event{State: schema.StateSucceeded, ExitCode: code(0)}, 0},
		{"failed with a code", schema.Event{State: schema.StateFailed, ExitCode: code(3)}, 3},
		{"out of memory", schema.Event{State: schema.StateFailed, ExitCode: code(137), Reason: schema.ReasonOOMKilled, Error: "killed: out of memory"}, 137},
		{"could not start", schema.Event{State: schema.StateFailed, Error: "cannot run"}, exitNotStarted},
		{"worker lost", schema.Event{State: schema.StateFailed, Reason: schema.ReasonWorkerLost}, exitWorkerLost},
		{"cancelled", schema.Event{State: schema.StateCancelled}, exitCancelled},
		{"timed out", schema.Event{State: schema.StateTimedOut}, exitTimedOut},
		{"rejected", schema.Event{State: schema.StateRejected}, exitRejected},
		{"dead", schema.Event{State: schema.StateDead}, exitDead},
	}
	for _, tt := range tests {
		err := exitFor(tt.ev)
		got := 0
		var exit *ExitError
		if errors.As(err, &exit) {
			got = exit.Code
		} else if err != nil {
			t.Fatalf("%s: %v is not an ExitError", tt.name, err)
		}
		if got != tt.want {
			t.Errorf("%s: exit %d, want %d", tt.name, got, tt.want)
		}
	}
}

func TestLoadRoles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	good := filepath.Join(dir, "roles.yaml")
	if err := os.WriteFile(good, []byte("alice: [dba, ops]\nbob: [dev]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	roles, err := loadRoles(good)
	if err != nil || len(roles["alice"]) != 2 || roles["bob"][0] != "dev" {
		t.Fatalf("roles %v, %v", roles, err)
	}
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("alice: dba\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := loadRoles(bad); err == nil || !strings.Contains(err.Error(), "want principal: [role, ...]") {
		t.Fatalf("a bad roles file: %v", err)
	}
}
