package audit

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// PointInTime reads "24h", "7d" (that long before now) or an RFC 3339 time;
// empty is the zero time. It is how
// `winch audit` and the gateway read --since and --until.
func PointInTime(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil || n < 0 {
			return time.Time{}, fmt.Errorf("%q: want a number of days like 7d", s)
		}
		return now.Add(-time.Duration(n) * 24 * time.Hour), nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return time.Time{}, fmt.Errorf("%q: want a duration like 24h or 7d, or a time like 2026-11-28T12:00:00Z", s)
	}
	return now.Add(-d), nil
}
