package worker

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/winchhq/winch/schema"
)

type sink struct {
	mu      sync.Mutex
	batches []string
}

func (s *sink) emit(_ schema.Stream, text string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.batches = append(s.batches, text)
}

func (s *sink) all() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.batches...)
}

func TestOutputBatchesAtLineEndsAndMasks(t *testing.T) {
	t.Parallel()
	var s sink
	o := newOutput(schema.Stdout, s.emit, []string{"hunter2"}, 16, time.Hour)
	// A secret written in two pieces is masked all the same.
	for _, p := range []string{"pass=hun", "ter2\nline two\n", "x"} {
		if _, err := o.Write([]byte(p)); err != nil {
			t.Fatal(err)
		}
	}
	o.Close()
	got := s.all()
	if strings.Join(got, "") != "pass=***\nline two\nx" {
		t.Fatalf("batches %q", got)
	}
	for _, b := range got[:len(got)-1] {
		if !strings.HasSuffix(b, "\n") {
			t.Fatalf("batch %q ends mid-line", b)
		}
	}
	if _, err := o.Write([]byte("late")); err != nil || len(s.all()) != len(got) {
		t.Fatal("a write after Close was sent")
	}
}

func TestOutputFlushesCompleteLinesOnTime(t *testing.T) {
	t.Parallel()
	var s sink
	o := newOutput(schema.Stderr, s.emit, nil, 1<<20, 5*time.Millisecond)
	_, _ = o.Write([]byte("ready\npartial"))
	deadline := time.Now().Add(5 * time.Second)
	for len(s.all()) == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if got := s.all(); len(got) != 1 || got[0] != "ready\n" {
		t.Fatalf("timed flush sent %q", got)
	}
	o.Close()
	if got := s.all(); len(got) != 2 || got[1] != "partial" {
		t.Fatalf("close sent %q", got)
	}
}

func TestOutputSplitsAnOverlongLine(t *testing.T) {
	t.Parallel()
	var s sink
	o := newOutput(schema.Stdout, s.emit, nil, 8, time.Hour)
	_, _ = o.Write([]byte(strings.Repeat("a", 20)))
	o.Close()
	if got := s.all(); strings.Join(got, "") != strings.Repeat("a", 20) || len(got) != 3 || len(got[0]) != 8 {
		t.Fatalf("batches %q", got)
	}
}
