package schedule_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/winchhq/winch/schedule"
)

var now = time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC) // a Sunday

func TestSpecCheckSaysWhatIsWrong(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		spec schedule.Spec
		want string // in the error; "" for none
	}{
		{"daily", schedule.Spec{Cron: "0 3 * * *"}, ""},
		{"names", schedule.Spec{Cron: "30 2 * jan-mar mon-fri", TimeZone: "Europe/Berlin"}, ""},
		{"steps", schedule.Spec{Cron: "*/15 8-18/2 1,15 * *"}, ""},
		{"seconds", schedule.Spec{Cron: "5 0 3 * * *"}, ""},
		{"four fields", schedule.Spec{Cron: "0 3 * *"}, `cron "0 3 * *" has 4 fields; write five: minute hour day-of-month month day-of-week`},
		{"hour 25", schedule.Spec{Cron: "0 25 * * *"}, `field 2 (hour): 25 is outside 0–23`},
		{"bad month name", schedule.Spec{Cron: "0 3 * foo *"}, `field 4 (month): "foo" is neither a number from 1 to 12 nor a name (jan…dec)`},
		{"backwards range", schedule.Spec{Cron: "0 5-3 * * *"}, `range "5-3" starts after it ends`},
		{"zero step", schedule.Spec{Cron: "*/0 * * * *"}, `step "0" is not a whole number above 0`},
		{"never", schedule.Spec{Cron: "0 0 30 2 *"}, `never fires`},
		{"unknown zone", schedule.Spec{Cron: "0 3 * * *", TimeZone: "Europe/Atlantis"}, `time zone "Europe/Atlantis" is not known`},
		{"zone for every", schedule.Spec{Every: time.Hour, TimeZone: "Europe/Berlin"}, `a time zone applies to --cron only`},
		{"short every", schedule.Spec{Every: 500 * time.Millisecond}, `shorter than a second`},
		{"fractional every", schedule.Spec{Every: 1500 * time.Millisecond}, `not a whole number of seconds`},
		{"past at", schedule.Spec{At: now.Add(-time.Minute)}, `--at 2026-11-29T11:59:00Z is not in the future`},
		{"future at", schedule.Spec{At: now.Add(time.Minute)}, ""},
		{"nothing", schedule.Spec{}, `give exactly one of --cron, --every and --at`},
		{"two", schedule.Spec{Cron: "0 3 * * *", Every: time.Hour}, `give exactly one`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.spec.Check(now)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("error %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, schedule.ErrSpec)):
				t.Fatalf("error %v, want one saying %q", err, tc.want)
			}
		})
	}
}

func TestSpecNextFire(t *testing.T) {
	t.Parallel()
	berlin, _ := time.LoadLocation("Europe/Berlin")
	ny, _ := time.LoadLocation("America/New_York")
	for _, tc := range []struct {
		name string
		spec schedule.Spec
		from time.Time
		want time.Time
	}{
		{"daily UTC", schedule.Spec{Cron: "0 3 * * *"}, now, time.Date(2026, 11, 30, 3, 0, 0, 0, time.UTC)},
		{"daily Berlin", schedule.Spec{Cron: "0 3 * * *", TimeZone: "Europe/Berlin"}, now, time.Date(2026, 11, 30, 3, 0, 0, 0, berlin)},
		{"weekdays", schedule.Spec{Cron: "0 9 * * mon-fri"}, time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC), time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC)},
		{"dom or dow", schedule.Spec{Cron: "0 0 1 * mon"}, now, time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC)},
		{"every 15 minutes", schedule.Spec{Cron: "*/15 * * * *"}, now.Add(time.Second), now.Add(15 * time.Minute)},
		{"leap day", schedule.Spec{Cron: "0 0 29 2 *"}, now, time.Date(2028, 2, 29, 0, 0, 0, 0, time.UTC)},
		// 02:30 does not happen in New York on 2027-03-14: the next one is a day later.
		{"spring forward", schedule.Spec{Cron: "30 2 * * *", TimeZone: "America/New_York"}, time.Date(2027, 3, 13, 12, 0, 0, 0, ny), time.Date(2027, 3, 15, 2, 30, 0, 0, ny)},
		// 02:30 comes twice in Berlin on 2026-10-25 (00:30 and 01:30 UTC):
		// a cron at a fixed hour fires at the first only, one whose hour
		// is * through both.
		{"fall back, first", schedule.Spec{Cron: "30 2 * * *", TimeZone: "Europe/Berlin"}, time.Date(2026, 10, 25, 0, 0, 0, 0, time.UTC), time.Date(2026, 10, 25, 0, 30, 0, 0, time.UTC)},
		{"fall back, not again", schedule.Spec{Cron: "30 2 * * *", TimeZone: "Europe/Berlin"}, time.Date(2026, 10, 25, 0, 30, 0, 0, time.UTC), time.Date(2026, 10, 26, 1, 30, 0, 0, time.UTC)},
		{"fall back, hourly", schedule.Spec{Cron: "30 * * * *", TimeZone: "Europe/Berlin"}, time.Date(2026, 10, 25, 0, 30, 0, 0, time.UTC), time.Date(2026, 10, 25, 1, 30, 0, 0, time.UTC)},
		{"at", schedule.Spec{At: now.Add(time.Hour)}, now, now.Add(time.Hour)},
		{"at passed", schedule.Spec{At: now.Add(-time.Hour)}, now, time.Time{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.spec.Next(tc.from, time.Time{}); !got.Equal(tc.want) {
				t.Fatalf("next after %v: %v, want %v", tc.from, got, tc.want)
			}
		})
	}
}

func TestJobIDsAreValidAndDistinct(t *testing.T) {
	t.Parallel()
	a := schedule.JobID("nightly-backup-of-the-main-database-xxxx", "alice@example", now)
	b := schedule.JobID("nightly-backup-of-the-main-database-xxxx", "bob", now)
	c := schedule.JobID("nightly-backup-of-the-main-database-xxxx", "alice@example", now.Add(time.Second))
	for _, id := range []string{a, b, c} {
		if len(id) > 64 || strings.ToLower(id) != id {
			t.Fatalf("id %q is not a valid job id", id)
		}
	}
	if a == b || a == c {
		t.Fatalf("ids collide: %s %s %s", a, b, c)
	}
}

func FuzzSpecCheck(f *testing.F) {
	for _, s := range []string{"0 3 * * *", "*/5 1-5/2 ? jan,feb sun-sat", "0 0 30 2 *", "1-2-3 * * * *", "*/99999 * * * *", "60 * * * * *"} {
		f.Add(s, "Europe/Berlin")
	}
	f.Fuzz(func(t *testing.T, expr, tz string) {
		spec := schedule.Spec{Cron: expr, TimeZone: tz}
		if spec.Check(now) != nil {
			return
		}
		next := spec.Next(now, time.Time{})
		if next.IsZero() || !next.After(now) {
			t.Fatalf("%q in %q: next %v after %v", expr, tz, next, now)
		}
	})
}
