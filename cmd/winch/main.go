// Command winch is the one binary of winch: the services (dev, broker,
// worker) and the client commands (run, logs, status, ps, cancel, commands).
// This package only wires kong commands to winch's packages.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// The signals themselves too, for commands that tell a second Ctrl-C
	// from the first (winch run).
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	err := Run(ctx, os.Args[1:], Stdio{In: os.Stdin, Out: os.Stdout, Err: os.Stderr, Signals: sigs})
	signal.Stop(sigs)
	stop()
	os.Exit(exitCode(err, os.Stderr))
}
