package docker_test

import (
	"testing"
	"time"

	"github.com/winchhq/winch/modules"
	"github.com/winchhq/winch/schema"
	"github.com/winchhq/winch/worker"
)

// A concurrency limit set on a core command holds for containers: three
// runs of core.sleep with limit 1, over two workers, one container at a
// time, each after the one before it ended.
func TestConcurrencyLimitWithContainers(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	core := modules.Core()
	sleep := core.Commands["sleep"]
	sleep.Concurrency = &schema.Concurrency{Key: "docker-" + e.Queue, Limit: 1}
	core.Commands["sleep"] = sleep
	cat, err := modules.NewCatalog(core)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		e.StartWorker(worker.Config{Concurrency: 3, Catalog: cat})
	}
	var ids []string
	for range 3 {
		ids = append(ids, e.Submit("core.sleep", map[string]any{"seconds": 0.5}))
	}
	type window struct{ start, end time.Time }
	var runs []window
	for _, id := range ids {
		var w window
		for _, ev := range e.Follow(id) {
			switch ev.Kind {
			case schema.KindStarted:
				w.start = ev.Time
			case schema.KindFinished:
				w.end = ev.Time
				if ev.State != schema.StateSucceeded {
					t.Fatalf("job %s ended %s: %s", id, ev.State, ev.Error)
				}
			}
		}
		runs = append(runs, w)
	}
	for i, a := range runs {
		for j, b := range runs {
			if i < j && a.start.Before(b.end) && b.start.Before(a.end) {
				t.Fatalf("jobs %s and %s ran at once: %v–%v and %v–%v", ids[i], ids[j], a.start, a.end, b.start, b.end)
			}
		}
	}
	if st := e.Status(ids[2]); st.Slot != "docker-"+e.Queue {
		t.Fatalf("the job's state does not name the slot it held: %q", st.Slot)
	}
}
