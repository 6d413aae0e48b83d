package worker

import (
	"bytes"
	"strings"
	"sync"
	"time"

	"github.com/winchhq/winch/schema"
)

// output batches a stream of a command's output into log events: a batch is
// sent when it holds maxBytes, or flushEvery after its first byte, so that a
// chatty command is not one message per line and a quiet one is still seen
// at once. Batches end at a line break where one exists, so that a secret is
// never split across two events before it is masked.
type output struct {
	stream     schema.Stream
	emit       func(schema.Stream, string)
	secrets    []string
	maxBytes   int
	flushEvery time.Duration

	mu    sync.Mutex
	buf   []byte
	timer *time.Timer
	done  bool
}

func newOutput(stream schema.Stream, emit func(schema.Stream, string), secrets []string, maxBytes int, flushEvery time.Duration) *output {
	return &output{stream: stream, emit: emit, secrets: secrets, maxBytes: maxBytes, flushEvery: flushEvery}
}

// Write buffers p; it blocks while a full batch is sent, which holds back a
// command that writes faster than events can be published.
func (o *output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.done {
		return len(p), nil // the run is over; a straggler writes into the void
	}
	o.buf = append(o.buf, p...)
	for len(o.buf) >= o.maxBytes {
		cut := bytes.LastIndexByte(o.buf[:o.maxBytes], '\n') + 1
		if cut == 0 {
			cut = o.maxBytes // one line longer than a batch: split it
		}
		o.send(cut)
	}
	if len(o.buf) > 0 && o.timer == nil {
		o.timer = time.AfterFunc(o.flushEvery, o.flushLines)
	}
	return len(p), nil
}

// flushLines sends the complete lines buffered; a partial line waits for its
// end, for a full batch, or for Close.
func (o *output) flushLines() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.timer = nil
	if cut := bytes.LastIndexByte(o.buf, '\n') + 1; cut > 0 {
		o.send(cut)
	}
	if len(o.buf) > 0 && !o.done {
		o.timer = time.AfterFunc(o.flushEvery, o.flushLines)
	}
}

// Close sends everything left and ignores later writes.
func (o *output) Close() {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.timer != nil {
		o.timer.Stop()
		o.timer = nil
	}
	if len(o.buf) > 0 {
		o.send(len(o.buf))
	}
	o.done = true
}

func (o *output) send(n int) {
	text := string(o.buf[:n])
	o.buf = append(o.buf[:0], o.buf[n:]...)
	o.emit(o.stream, mask(text, o.secrets))
}

// mask replaces every secret value in text.
func mask(text string, secrets []string) string {
	for _, s := range secrets {
		text = strings.ReplaceAll(text, s, schema.Masked)
	}
	return text
}
