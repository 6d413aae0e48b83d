package schedule

import (
	"errors"
	"fmt"
	"time"

	"github.com/winchhq/winch/broker"
	"github.com/winchhq/winch/schema"
)

// Headers of the NATS server's message scheduling (ADR-51) that winch reads
// or writes.
const (
	HeaderSchedule         = "Nats-Schedule"
	HeaderScheduleTimeZone = "Nats-Schedule-Time-Zone"
	HeaderScheduleTarget   = "Nats-Schedule-Target"
	// HeaderScheduler is set by the server on a fire: the subject of the
	// schedule that fired. A client may set it only together with
	// HeaderScheduleNext "purge" (which deletes that schedule), so it is
	// trusted only where it agrees with the fire's own subject.
	HeaderScheduler    = "Nats-Scheduler"
	HeaderScheduleNext = "Nats-Schedule-Next"
	HeaderRollup       = "Nats-Rollup"
	// HeaderRemoved marks the message that replaces a removed schedule.
	HeaderRemoved = "Winch-Schedule-Removed"
)

// Fired is what one fire becomes.
type Fired struct {
	Def Definition
	// Nominal is the time the fire was due: the cron time or the --at time,
	// or for an interval the fire's own time (see Relay).
	Nominal time.Time
	// Late is how long after Nominal the fire reached a worker.
	Late time.Duration
	// Repeated: a cron's fire at the second coming of its wall-clock time,
	// in the hour a daylight-saving change repeats (the NATS server fires
	// at both). It is not run: the first one was.
	Repeated bool
	// Request is the request to publish, on Subject.
	Request schema.Request
	Subject string
}

// ErrForged: the message on a fire subject was not made by the server from
// that owner's schedule. It is rejected, never run.
var ErrForged = errors.New("not a fire of its owner's schedule")

// Fire is one message taken from winch.fires.<name>.<owner>.
type Fire struct {
	Subject   string
	Scheduler string // the Nats-Scheduler header
	Next      string // the Nats-Schedule-Next header
	Data      []byte
	// Stamp is when the server stored the fire.
	Stamp time.Time
	// Taken is when a worker took it (zero: Stamp). A fire is as late as
	// the later of the two: the server stores fires on time while no
	// worker runs, and they wait in the stream.
	Taken time.Time
	// Expected is when the schedule's last fire said this one was due (its
	// Nats-Schedule-Next), if known: how an interval's late fire is told
	// from one on time.
	Expected time.Time
}

// Relay turns a fire into the request it asks for, with the job id derived
// from the schedule and the fire's due time. It refuses (ErrForged) a fire
// whose schedule is not its owner's: the fire's subject names the owner,
// and the server's Nats-Scheduler header names the schedule's subject,
// whose last token is who published the schedule (the broker vouches for
// it); they must agree, and the definition inside must too.
func Relay(f Fire) (Fired, error) {
	fp, ok := broker.ParseScheduleSubject(f.Subject)
	if !ok || fp.Kind != "fires" {
		return Fired{}, fmt.Errorf("%w: subject %s is not a fire subject", ErrForged, f.Subject)
	}
	if f.Scheduler != broker.ScheduleSubject(fp.Name, fp.Owner) {
		return Fired{}, fmt.Errorf("%w: %s was scheduled by %q, not by schedule %s of %s", ErrForged, f.Subject, f.Scheduler, fp.Name, fp.Owner)
	}
	def, err := Decode(f.Data)
	if err != nil {
		return Fired{}, fmt.Errorf("%w: %w", ErrForged, err)
	}
	if def.Name != fp.Name || def.Owner != fp.Owner {
		return Fired{}, fmt.Errorf("%w: schedule %s of %s says it is %s of %s", ErrForged, fp.Name, fp.Owner, def.Name, def.Owner)
	}
	spec := def.Spec()
	var nominal time.Time
	repeated := false
	switch {
	case spec.Cron != "":
		if c, err := spec.cron(); err == nil {
			nominal = c.prev(f.Stamp)
			repeated = !nominal.IsZero() && c.repeated(nominal)
		}
	case spec.Every != 0:
		// The server stamps the next fire as due one interval after this
		// one's due time: the same for every copy of this fire.
		if next, err := time.Parse(time.RFC3339Nano, f.Next); err == nil {
			nominal = next.Add(-spec.Every)
		}
	default:
		nominal = spec.At
	}
	if nominal.IsZero() {
		nominal = f.Stamp.Truncate(time.Second)
	}
	taken := f.Stamp
	if f.Taken.After(taken) {
		taken = f.Taken
	}
	late := max(taken.Sub(nominal), 0)
	if spec.Every != 0 && !f.Expected.IsZero() {
		late = max(late, taken.Sub(f.Expected))
	}
	req := def.Request
	req.Version = schema.Version
	req.ID = JobID(def.Name, def.Owner, nominal)
	req.Principal = def.Owner
	req.Schedule = def.Name
	req.CreatedAt = nominal.UTC()
	return Fired{
		Def: def, Nominal: nominal, Late: late, Repeated: repeated, Request: req,
		Subject: broker.PriorityJobSubject(req.Queue, req.Priority.SubjectToken(), req.ID, req.Principal),
	}, nil
}
