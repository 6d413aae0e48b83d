package schedule_test

import (
	"errors"
	"testing"
	"time"

	"github.com/winchhq/winch/broker"
	"github.com/winchhq/winch/schedule"
	"github.com/winchhq/winch/schema"
)

func TestRelay(t *testing.T) {
	t.Parallel()
	due := time.Date(2026, 11, 30, 2, 0, 0, 0, time.UTC) // 03:00 in Berlin
	cron := def("nightly", "alice", schedule.Spec{Cron: "0 3 * * *", TimeZone: "Europe/Berlin"})
	cron.Request.Priority = schema.PriorityHigh
	every := def("tick", "alice", schedule.Spec{Every: 10 * time.Minute})
	at := def("once", "alice", schedule.Spec{At: due})
	fire := func(d schedule.Definition, stamp time.Time, next string) schedule.Fire {
		return schedule.Fire{Subject: broker.FireSubject(d.Name, d.Owner), Scheduler: broker.ScheduleSubject(d.Name, d.Owner),
			Next: next, Data: d.Encode(), Stamp: stamp}
	}
	for _, tc := range []struct {
		name    string
		fire    schedule.Fire
		nominal time.Time
		late    time.Duration
		subject string
		forged  bool
	}{
		{name: "cron on time", fire: fire(cron, due.Add(120*time.Millisecond), ""), nominal: due, late: 120 * time.Millisecond,
			subject: "winch.jobs.default.high." + schedule.JobID("nightly", "alice", due) + ".alice"},
		{name: "cron late", fire: fire(cron, due.Add(20*time.Minute), ""), nominal: due, late: 20 * time.Minute,
			subject: "winch.jobs.default.high." + schedule.JobID("nightly", "alice", due) + ".alice"},
		{name: "cron stored on time, taken late (no worker ran)", fire: func() schedule.Fire {
			f := fire(cron, due.Add(100*time.Millisecond), "")
			f.Taken = due.Add(5 * time.Minute)
			return f
		}(), nominal: due, late: 5 * time.Minute,
			subject: "winch.jobs.default.high." + schedule.JobID("nightly", "alice", due) + ".alice"},
		{name: "interval stored on time, taken late", fire: func() schedule.Fire {
			f := fire(every, due, due.Add(10*time.Minute).Format(time.RFC3339Nano))
			f.Taken = due.Add(3 * time.Minute)
			return f
		}(), nominal: due, late: 3 * time.Minute,
			subject: "winch.jobs.default." + schedule.JobID("tick", "alice", due) + ".alice"},
		{name: "interval from its next", fire: fire(every, due.Add(300*time.Millisecond), due.Add(10*time.Minute).Format(time.RFC3339Nano)), nominal: due, late: 300 * time.Millisecond,
			subject: "winch.jobs.default." + schedule.JobID("tick", "alice", due) + ".alice"},
		{name: "at", fire: fire(at, due.Add(time.Second), "purge"), nominal: due, late: time.Second,
			subject: "winch.jobs.default." + schedule.JobID("once", "alice", due) + ".alice"},
		{name: "another's target", fire: func() schedule.Fire {
			f := fire(cron, due, "")
			f.Subject = broker.FireSubject("nightly", "bob")
			return f
		}(), forged: true},
		{name: "no scheduler", fire: func() schedule.Fire { f := fire(cron, due, ""); f.Scheduler = ""; return f }(), forged: true},
		{name: "a request as scheduler", fire: func() schedule.Fire {
			f := fire(cron, due, "")
			f.Scheduler = broker.JobSubject("default", "j1", "alice")
			return f
		}(), forged: true},
		{name: "definition of someone else", fire: func() schedule.Fire {
			f := fire(cron, due, "")
			f.Data = def("nightly", "bob", schedule.Spec{Cron: "0 3 * * *"}).Encode()
			return f
		}(), forged: true},
		{name: "not a definition", fire: func() schedule.Fire { f := fire(cron, due, ""); f.Data = []byte("{"); return f }(), forged: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := schedule.Relay(tc.fire)
			if tc.forged {
				if !errors.Is(err, schedule.ErrForged) {
					t.Fatalf("relay: %+v, %v; want ErrForged", got.Request, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Repeated {
				t.Fatalf("%v: a repeated wall-clock time", got.Nominal)
			}
			r := got.Request
			if !got.Nominal.Equal(tc.nominal) || got.Late != tc.late || got.Subject != tc.subject ||
				r.Principal != "alice" || r.Schedule != got.Def.Name || !r.CreatedAt.Equal(tc.nominal) || r.Validate() != nil {
				t.Fatalf("relayed %+v (due %v, late %v, on %s); want due %v, late %v, on %s", r, got.Nominal, got.Late, got.Subject, tc.nominal, tc.late, tc.subject)
			}
		})
	}
}

// In the hour a daylight-saving change repeats, the NATS server fires a
// cron at a fixed hour twice (its cron, robfig's, steps the clock by
// minutes and matches 02:30 in each offset). The first fire is the one
// that runs; the second is marked Repeated, and the worker records it
// skipped.
func TestRelayOfTheRepeatedHour(t *testing.T) {
	t.Parallel()
	d := def("fallback", "alice", schedule.Spec{Cron: "30 2 * * *", TimeZone: "Europe/Berlin"})
	first, second := time.Date(2026, 10, 25, 0, 30, 0, 0, time.UTC), time.Date(2026, 10, 25, 1, 30, 0, 0, time.UTC)
	for _, tc := range []struct {
		due      time.Time
		repeated bool
	}{{first, false}, {second, true}} {
		got, err := schedule.Relay(schedule.Fire{Subject: broker.FireSubject(d.Name, d.Owner), Scheduler: broker.ScheduleSubject(d.Name, d.Owner),
			Data: d.Encode(), Stamp: tc.due.Add(80 * time.Millisecond)})
		if err != nil {
			t.Fatal(err)
		}
		if !got.Nominal.Equal(tc.due) || got.Repeated != tc.repeated || got.Request.ID != schedule.JobID(d.Name, d.Owner, tc.due) {
			t.Fatalf("fire at %v: due %v, repeated %v, job %s", tc.due, got.Nominal, got.Repeated, got.Request.ID)
		}
	}
	// An hourly cron runs through both hours, by the clock.
	hourly := def("hourly", "alice", schedule.Spec{Cron: "30 * * * *", TimeZone: "Europe/Berlin"})
	got, err := schedule.Relay(schedule.Fire{Subject: broker.FireSubject(hourly.Name, hourly.Owner), Scheduler: broker.ScheduleSubject(hourly.Name, hourly.Owner),
		Data: hourly.Encode(), Stamp: second})
	if err != nil || got.Repeated || !got.Nominal.Equal(second) {
		t.Fatalf("hourly in the repeated hour: %+v, %v", got, err)
	}
}
