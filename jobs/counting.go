package jobs

import "github.com/winchhq/winch/schema"

// EventCounter hears of every event handed to the events stream (the
// worker's metrics).
type EventCounter interface {
	EventPublished(kind string)
}

// CountWith makes the publisher tell c of every event it publishes.
func (p *Publisher) CountWith(c EventCounter) { p.counter = c }

func (p *Publisher) count(kind schema.Kind) {
	if p.counter != nil {
		p.counter.EventPublished(string(kind))
	}
}
