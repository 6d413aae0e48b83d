package schedule

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// cron is a parsed cron expression of five fields (minute hour day-of-month
// month day-of-week) or six (seconds first, as the NATS server takes), with the semantics of the NATS server's scheduler
// (which is robfig/cron's): lists, ranges, steps, month and weekday names,
// and the classic rule that when both day fields are restricted a day
// matching either one matches. The server is given the same fields with a
// leading "0" for seconds; winch parses them itself to say exactly what is
// wrong, and to compute fire times (next fire, the fire a late message
// belongs to).
type cron struct {
	second, minute, hour, dom, month, dow uint64
	loc                                   *time.Location
}

// starBit marks a field given as * or ?, for the day-matching rule.
const starBit = 1 << 63

type cronField struct {
	name     string
	min, max uint
	names    map[string]uint
}

var cronFields = [6]cronField{
	{name: "second", min: 0, max: 59},
	{name: "minute", min: 0, max: 59},
	{name: "hour", min: 0, max: 23},
	{name: "day of month", min: 1, max: 31},
	{name: "month", min: 1, max: 12, names: map[string]uint{
		"jan": 1, "feb": 2, "mar": 3, "apr": 4, "may": 5, "jun": 6,
		"jul": 7, "aug": 8, "sep": 9, "oct": 10, "nov": 11, "dec": 12}},
	{name: "day of week", min: 0, max: 6, names: map[string]uint{
		"sun": 0, "mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6}},
}

// parseCron parses five fields in loc (UTC when nil).
func parseCron(expr string, loc *time.Location) (*cron, error) {
	fields := strings.Fields(expr)
	if len(fields) != 5 && len(fields) != 6 {
		return nil, fmt.Errorf("cron %q has %d fields; write five: minute hour day-of-month month day-of-week, like \"0 3 * * *\" (03:00 every day), or six with seconds first", expr, len(fields))
	}
	kinds := cronFields[:]
	bits := []uint64{1} // second 0, for five fields
	if len(fields) == 5 {
		kinds = kinds[1:]
	} else {
		bits = nil
	}
	for i, f := range fields {
		b, err := parseCronField(f, kinds[i])
		if err != nil {
			return nil, fmt.Errorf("cron %q, field %d (%s): %w", expr, i+1, kinds[i].name, err)
		}
		bits = append(bits, b)
	}
	if loc == nil {
		loc = time.UTC
	}
	c := &cron{second: bits[0], minute: bits[1], hour: bits[2], dom: bits[3], month: bits[4], dow: bits[5], loc: loc}
	// A day that never comes ("0 0 30 2 *") is refused rather than stored
	// as a schedule that never fires.
	if c.next(time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)).IsZero() {
		return nil, fmt.Errorf("cron %q never fires: no month has that day", expr)
	}
	return c, nil
}

func parseCronField(field string, f cronField) (uint64, error) {
	var bits uint64
	for expr := range strings.SplitSeq(field, ",") {
		b, err := parseCronRange(expr, f)
		if err != nil {
			return 0, err
		}
		bits |= b
	}
	return bits, nil
}

func parseCronRange(expr string, f cronField) (uint64, error) {
	rangePart, stepPart, hasStep := strings.Cut(expr, "/")
	var start, end uint
	var extra uint64
	single := false
	switch {
	case rangePart == "*" || rangePart == "?":
		start, end, extra = f.min, f.max, starBit
	default:
		lo, hi, isRange := strings.Cut(rangePart, "-")
		var err error
		if start, err = cronValue(lo, f); err != nil {
			return 0, err
		}
		end = start
		single = !isRange
		if isRange {
			if end, err = cronValue(hi, f); err != nil {
				return 0, err
			}
		}
	}
	step := uint(1)
	if hasStep {
		n, err := strconv.ParseUint(stepPart, 10, 8)
		if err != nil || n == 0 {
			return 0, fmt.Errorf("step %q is not a whole number above 0", stepPart)
		}
		step = uint(n)
		if single {
			end = f.max // "N/step" means "N-max/step"
		}
		if step > 1 {
			extra = 0
		}
	}
	if start > end {
		return 0, fmt.Errorf("range %q starts after it ends", expr)
	}
	var bits uint64
	for v := start; v <= end; v += step {
		bits |= 1 << v
	}
	return bits | extra, nil
}

func cronValue(s string, f cronField) (uint, error) {
	if v, ok := f.names[strings.ToLower(s)]; ok {
		return v, nil
	}
	n, err := strconv.ParseUint(s, 10, 8)
	if err != nil {
		if f.names != nil {
			return 0, fmt.Errorf("%q is neither a number from %d to %d nor a name (%s)", s, f.min, f.max, nameList(f))
		}
		return 0, fmt.Errorf("%q is not a number from %d to %d", s, f.min, f.max)
	}
	if uint(n) < f.min || uint(n) > f.max {
		return 0, fmt.Errorf("%d is outside %d–%d", n, f.min, f.max)
	}
	return uint(n), nil
}

func nameList(f cronField) string {
	if f.max == 12 {
		return "jan…dec"
	}
	return "sun…sat"
}

func (c *cron) dayMatches(t time.Time) bool {
	domMatch := 1<<uint(t.Day())&c.dom > 0
	dowMatch := 1<<uint(t.Weekday())&c.dow > 0
	if c.dom&starBit > 0 || c.dow&starBit > 0 {
		return domMatch && dowMatch
	}
	return domMatch || dowMatch
}

// maxSteps bounds the searches: years of jumps by month, day, hour,
// minute and second.
const maxSteps = 5 * (12 + 366 + 366*24 + 120)

// next is the first fire strictly after t, or zero if none within years.
func (c *cron) next(t time.Time) time.Time {
	t = t.In(c.loc).Truncate(time.Second).Add(time.Second)
	for range maxSteps * 10 {
		var n time.Time
		switch {
		case 1<<uint(t.Month())&c.month == 0:
			n = time.Date(t.Year(), t.Month()+1, 1, 0, 0, 0, 0, c.loc)
		case !c.dayMatches(t):
			n = time.Date(t.Year(), t.Month(), t.Day()+1, 0, 0, 0, 0, c.loc)
		case 1<<uint(t.Hour())&c.hour == 0:
			n = time.Date(t.Year(), t.Month(), t.Day(), t.Hour()+1, 0, 0, 0, c.loc)
		case 1<<uint(t.Minute())&c.minute == 0:
			n = t.Truncate(time.Minute).Add(time.Minute)
		case 1<<uint(t.Second())&c.second == 0:
			n = t.Add(time.Second)
		default:
			if !c.repeated(t) {
				return t
			}
			n = t.Add(time.Second)
		}
		// A wall-clock time that a daylight-saving change skips may
		// normalize backwards; move on by the hour instead.
		if !n.After(t) {
			n = t.Truncate(time.Hour).Add(time.Hour)
		}
		t = n
	}
	return time.Time{}
}

// prev is the last fire at or before t, or zero if none within years.
func (c *cron) prev(t time.Time) time.Time {
	t = t.In(c.loc).Truncate(time.Second)
	for range maxSteps * 10 {
		var n time.Time
		switch {
		case 1<<uint(t.Month())&c.month == 0:
			n = time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, c.loc).Add(-time.Second)
		case !c.dayMatches(t):
			n = time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, c.loc).Add(-time.Second)
		case 1<<uint(t.Hour())&c.hour == 0:
			n = time.Date(t.Year(), t.Month(), t.Day(), t.Hour(), 0, 0, 0, c.loc).Add(-time.Second)
		case 1<<uint(t.Minute())&c.minute == 0:
			n = t.Truncate(time.Minute).Add(-time.Second)
		case 1<<uint(t.Second())&c.second == 0:
			n = t.Add(-time.Second)
		default:
			return t
		}
		if !n.Before(t) {
			n = t.Truncate(time.Hour).Add(-time.Second)
		}
		t = n
	}
	return time.Time{}
}

// repeated says whether t is the second time its wall-clock time comes in
// the cron's zone (the hour a daylight-saving change repeats: 02:30 in
// Berlin on the last Sunday of October comes at 00:30 and 01:30 UTC), for a
// cron whose hour field is restricted. Such a cron runs once in that hour,
// at the first of the two, as classic cron does; one whose hour is * runs
// through both, by the clock.
func (c *cron) repeated(t time.Time) bool {
	if c.hour&starBit != 0 {
		return false
	}
	w := t.In(c.loc)
	for _, shift := range []time.Duration{30 * time.Minute, time.Hour, 2 * time.Hour} {
		e := t.Add(-shift).In(c.loc)
		if e.YearDay() == w.YearDay() && e.Hour() == w.Hour() && e.Minute() == w.Minute() && e.Second() == w.Second() {
			return true
		}
	}
	return false
}
