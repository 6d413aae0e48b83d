package process_test

import (
	"context"
	"os"
	"testing"

	"github.com/winchhq/winch/worker/process"
)

// BenchmarkRunTrue runs `true` as a job, end to end, under each supervisor.
// The re-executed binary is the test binary here, far smaller than winch, so
// reexec understates what the fallback costs in winch: set
// WINCH_BENCH_REEXEC to a winch binary (make build) to measure it too, as
// reexec-winch.
func BenchmarkRunTrue(b *testing.B) {
	cases := supervisors
	if winch := os.Getenv("WINCH_BENCH_REEXEC"); winch != "" {
		// Any binary that links package process supervises when its
		// argv[0] is the marker.
		cases = append(cases[:len(cases):len(cases)], struct{ name, path string }{"reexec-winch", winch})
	}
	for _, s := range cases {
		b.Run(s.name, func(b *testing.B) {
			e := &process.Executor{Supervisor: s.path}
			for b.Loop() {
				j, _, _ := job([]string{"true"}, nil)
				res, err := e.Run(context.Background(), j)
				if err != nil || res.ExitCode != 0 {
					b.Fatalf("Run: %+v, %v", res, err)
				}
			}
		})
	}
}
