// Command winch-supervise is the per-job supervisor of the process executor
// (see package github.com/winchhq/winch/worker/process/supervisor): the
// worker starts one per job, with argv[0] "winch-supervise", the command's
// path and the command's argv. It is not meant to be run by hand. It links
// nothing but the supervisor, so that it starts in about a millisecond.
package main

import (
	"os"

	"github.com/winchhq/winch/worker/process/supervisor"
)

func main() { os.Exit(supervisor.Main(os.Args[1:])) }
