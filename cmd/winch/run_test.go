package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/winchhq/winch/broker"
	"github.com/winchhq/winch/internal/testenv"
	"github.com/winchhq/winch/modules"
	"github.com/winchhq/winch/producer"
	"github.com/winchhq/winch/schema"
)

// What the library refuses to run is a usage error, its parameters named
// as flags.
func TestRunErrors(t *testing.T) {
	t.Parallel()
	invalid := &producer.InvalidParamsError{Command: "db.backup", Params: []*producer.ParamError{
		{Param: "name", Message: "required"}, {Param: "level", Message: `want a whole number, got "x"`},
	}}
	tests := []struct {
		err  error
		code int
		msg  string
	}{
		{invalid, exitUsage, `invalid parameters for db.backup: --name: required; --level: want a whole number, got "x" (winch run db.backup --help)`},
		{fmt.Errorf("%w \"db.bakup\"", modules.ErrUnknownCommand), exitUsage, `unknown command "db.bakup"`},
		{&schema.RequestError{Reason: "queue \"a.b\" is not valid"}, exitUsage, `queue "a.b" is not valid`},
		{producer.ErrNotPermitted, exitNoPerm, producer.ErrNotPermitted.Error()},
		{fmt.Errorf("%w: timeout", producer.ErrRegistryUnavailable), exitUnavailable, "module registry unavailable: timeout"},
		// No answer through a whole failover: the service is unavailable.
		{fmt.Errorf("open state bucket: %w", context.DeadlineExceeded), exitUnavailable, "open state bucket: context deadline exceeded"},
	}
	for _, tt := range tests {
		var out strings.Builder
		code := exitCode(runError(tt.err), &out)
		if code != tt.code || out.String() != "winch: "+tt.msg+"\n" {
			t.Errorf("%v: exit %d, printed %q", tt.err, code, out.String())
		}
	}
	if err := runError(nil); err != nil {
		t.Errorf("runError(nil) = %v", err)
	}
	var exit *ExitError
	if err := runError(invalid); !errors.As(err, &exit) {
		t.Errorf("runError(%v) is not an ExitError", err)
	}
}

// A server with winch's state bucket but no module registry: the commands
// winch may run cannot be known, so nothing is published (69).
func TestRunWithoutARegistry(t *testing.T) {
	t.Parallel()
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
	if _, err := js.CreateKeyValue(t.Context(), jetstream.KeyValueConfig{Bucket: broker.StateBucket}); err != nil {
		t.Fatal(err)
	}
	env := []string{"WINCH_NATS_URL=" + srv.ClientURL()}
	for _, args := range [][]string{{"run", "core.echo", "--text", "x"}, {"commands"}} {
		out, code := runWinch(t, env, args...)
		if code != exitUnavailable || !strings.Contains(out, "module registry") || !strings.Contains(out, "winch dev") {
			t.Errorf("winch %s: exit %d\n%s", strings.Join(args, " "), code, out)
		}
	}
}
