package schedule

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// cron is a parsed five-field cron expression (minute hour day-of-month
// month day-of-week), with the semantics of the NATS server's scheduler
// (which is robfig/cron's): lists, ranges, steps, month and weekday names,
// and the classic rule that when both day fields are restricted a day
// matching either one matches. The server is given the same fields with a
// leading "0" for seconds; winch parses them itself to say exactly what is
// wrong, and to compute fire times (next fire, the fire a late message
// belongs to).
type cron struct {
	minute, hour, dom, month, dow uint64
	loc                           *time.Location
}

// starBit marks a field given as * or ?, for the day-matching rule.
const starBit = 1 << 63

type cronField struct {
	name     string
	min, max uint
	names    map[string]uint
}

var cronFields = [5]cronField{
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
	if len(fields) != 5 {
		return nil, fmt.Errorf("cron %q has %d fields; write five: minute hour day-of-month month day-of-week, like \"0 3 * * *\" (03:00 every day)", expr, len(fields))
	}
	var bits [5]uint64
	for i, f := range fields {
		b, err := parseCronField(f, cronFields[i])
		if err != nil {
			return nil, fmt.Errorf("cron %q, field %d (%s): %w", expr, i+1, cronFields[i].name, err)
		}
		bits[i] = b
	}
	if loc == nil {
		loc = time.UTC
	}
	c := &cron{minute: bits[0], hour: bits[1], dom: bits[2], month: bits[3], dow: bits[4], loc: loc}
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

// maxSteps bounds the searches: five years of jumps by month, day, hour.
const maxSteps = 5 * (12 + 366 + 366*24 + 60)

// next is the first fire strictly after t, or zero if none within years.
func (c *cron) next(t time.Time) time.Time {
	t = t.In(c.loc).Truncate(time.Minute).Add(time.Minute)
	for range maxSteps * 10 {
		switch {
		case 1<<uint(t.Month())&c.month == 0:
			t = time.Date(t.Year(), t.Month()+1, 1, 0, 0, 0, 0, c.loc)
		case !c.dayMatches(t):
			t = time.Date(t.Year(), t.Month(), t.Day()+1, 0, 0, 0, 0, c.loc)
		case 1<<uint(t.Hour())&c.hour == 0:
			t = time.Date(t.Year(), t.Month(), t.Day(), t.Hour()+1, 0, 0, 0, c.loc)
		case 1<<uint(t.Minute())&c.minute == 0:
			t = t.Add(time.Minute)
		default:
			return t
		}
	}
	return time.Time{}
}

// prev is the last fire at or before t, or zero if none within years.
func (c *cron) prev(t time.Time) time.Time {
	t = t.In(c.loc).Truncate(time.Minute)
	for range maxSteps * 10 {
		switch {
		case 1<<uint(t.Month())&c.month == 0:
			t = time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, c.loc).Add(-time.Minute)
		case !c.dayMatches(t):
			t = time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, c.loc).Add(-time.Minute)
		case 1<<uint(t.Hour())&c.hour == 0:
			t = time.Date(t.Year(), t.Month(), t.Day(), t.Hour(), 0, 0, 0, c.loc).Add(-time.Minute)
		case 1<<uint(t.Minute())&c.minute == 0:
			t = t.Add(-time.Minute)
		default:
			return t
		}
	}
	return time.Time{}
}
