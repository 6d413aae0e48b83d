// Package schedule is winch's schedules: commands that run at times given by
// a cron expression, an interval or a single time. The NATS server keeps and
// fires them (ADR-51 message scheduling, nats-server 2.14+): a schedule is a
// message on winch.schedules.<name>.<owner> in the WINCH_SCHEDULES stream;
// at each fire the server stores a copy on winch.fires.<name>.<owner>, which
// a worker turns into an ordinary request (Fire). winch parses specs itself
// only to refuse bad ones clearly and to name fires. docs/ARCHITECTURE.md
// ("Schedules") says why it is built this way.
package schedule

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"
	_ "time/tzdata" // time zones resolve on hosts without a zoneinfo database
)

// Spec says when a schedule fires: exactly one of Cron, Every or At.
type Spec struct {
	// Cron is five fields (minute hour day-of-month month day-of-week), or
	// six with seconds first, in TimeZone (UTC when empty).
	Cron     string
	TimeZone string
	// Every is an interval of at least a second; the first fire is one
	// interval after the schedule is added.
	Every time.Duration
	// At is a single time.
	At time.Time
}

// ErrSpec is wrapped by every error about a spec that cannot be used.
var ErrSpec = errors.New("invalid schedule")

func specError(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrSpec, fmt.Sprintf(format, args...))
}

// Check says what is wrong with s, if anything, at time now: a cron it
// cannot parse, an unknown time zone, an interval under a second, a time
// that is not in the future.
func (s Spec) Check(now time.Time) error {
	n := 0
	for _, set := range []bool{s.Cron != "", s.Every != 0, !s.At.IsZero()} {
		if set {
			n++
		}
	}
	if n != 1 {
		return specError("give exactly one of --cron, --every and --at")
	}
	if s.TimeZone != "" && s.Cron == "" {
		return specError("a time zone applies to --cron only (an --every interval and an --at time do not depend on one)")
	}
	switch {
	case s.Cron != "":
		_, err := s.cron()
		return err
	case s.Every != 0:
		if s.Every < time.Second {
			return specError("--every %s is shorter than a second, the least the server schedules", s.Every)
		}
		if s.Every%time.Second != 0 {
			return specError("--every %s is not a whole number of seconds", s.Every)
		}
	default:
		if !s.At.After(now) {
			return specError("--at %s is not in the future (it is %s now)", s.At.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
		}
	}
	return nil
}

func (s Spec) cron() (*cron, error) {
	var loc *time.Location
	if s.TimeZone != "" {
		l, err := time.LoadLocation(s.TimeZone)
		if err != nil || s.TimeZone == "Local" {
			return nil, specError("time zone %q is not known: use an IANA name like Europe/Berlin or America/New_York", s.TimeZone)
		}
		loc = l
	}
	c, err := parseCron(s.Cron, loc)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSpec, err)
	}
	return c, nil
}

// Pattern is the Nats-Schedule header's value: "@at <RFC 3339>", "@every
// <duration>", or the cron's six fields (seconds first, always 0).
func (s Spec) Pattern() string {
	switch {
	case s.Cron != "":
		f := strings.Fields(s.Cron)
		if len(f) == 5 {
			f = append([]string{"0"}, f...)
		}
		return strings.Join(f, " ")
	case s.Every != 0:
		return "@every " + s.Every.String()
	}
	return "@at " + s.At.UTC().Format(time.RFC3339)
}

// String is the spec as a user writes it.
func (s Spec) String() string {
	switch {
	case s.Cron != "":
		if s.TimeZone != "" {
			return "cron " + s.Cron + " " + s.TimeZone
		}
		return "cron " + s.Cron
	case s.Every != 0:
		return "every " + s.Every.String()
	}
	return "at " + s.At.UTC().Format(time.RFC3339)
}

// Next is the first fire after t (zero when there is none: an At that
// passed). For an interval it is only an estimate: the server counts from
// the last fire, which winch does not see.
func (s Spec) Next(t time.Time, lastFire time.Time) time.Time {
	switch {
	case s.Cron != "":
		c, err := s.cron()
		if err != nil {
			return time.Time{}
		}
		return c.next(t)
	case s.Every != 0:
		if lastFire.IsZero() {
			return time.Time{}
		}
		next := lastFire.Add(s.Every)
		for !next.After(t) {
			next = next.Add(s.Every)
		}
		return next
	}
	if s.At.After(t) {
		return s.At
	}
	return time.Time{}
}

var namePattern = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,39}$`)

// ValidName reports whether name can name a schedule: it is a subject token
// and the start of its fires' job ids.
func ValidName(name string) bool { return namePattern.MatchString(name) }
