// Package broker holds winch's use of NATS: the embedded server, connecting,
// and the topology (streams, consumers and key-value buckets) with the names
// of its subjects. docs/ARCHITECTURE.md lists them with what each is for.
package broker

import (
	"slices"
	"strings"
)

// Stream, bucket and subject names. They are the contract between producers,
// workers and the sink.
const (
	JobsStream   = "WINCH_JOBS"
	EventsStream = "WINCH_EVENTS"
	StateBucket  = "WINCH_JOBS_STATE"
	// ControlStream keeps control requests (cancel) until a worker has
	// decided them; any worker, whatever its queues, takes them.
	ControlStream = "WINCH_CONTROL"
	// WorkersBucket holds one liveness entry per running worker session,
	// refreshed every heartbeat interval; a job whose session's entry is
	// older than the lease has lost its worker.
	WorkersBucket = "WINCH_WORKERS"
	// DeadStream keeps the server's advisories of requests that ran out of
	// deliveries until a worker has recorded their jobs as dead, so that
	// none is lost while no worker is listening.
	DeadStream = "WINCH_DEAD_LETTERS"
	// MaxDeliveriesAdvisories is where the server announces them.
	MaxDeliveriesAdvisories = "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES." + JobsStream + ".>"
	ModulesBucket           = "WINCH_MODULES"
	// SlotsBucket holds, per concurrency key, the jobs holding its slots and
	// those waiting for one, with the waiting jobs' requests; workers only.
	SlotsBucket = "WINCH_SLOTS"

	// ControlConsumer is the durable consumer of ControlStream that every
	// worker shares.
	ControlConsumer = "control"
	// NotifierConsumer is the durable consumer of EventsStream that every
	// notifier shares.
	NotifierConsumer = "notifier"

	// SchedulesStream holds schedules (winch.schedules.<name>.<owner>, one
	// message each, which the server fires: ADR-51 message scheduling), their
	// fires (winch.fires.<name>.<owner>), which a worker turns into requests,
	// and a record of each fire (winch.runs.<name>.<owner>); the last
	// RunsKept of each.
	SchedulesStream = "WINCH_SCHEDULES"
	// FiresConsumer is the durable consumer of fires that every worker shares.
	FiresConsumer = "fires"
	// RunsKept is how many fires and fire records the stream keeps per
	// schedule; it also bounds the fires of one schedule that wait while no
	// worker runs (the oldest go first).
	RunsKept = 20

	// Priorities other than normal. A normal request's subject has no
	// priority token (requests from clients older than priorities are
	// normal); a high or low one's has it before the job token.
	PriorityHigh = "high"
	PriorityLow  = "low"

	jobsPrefix    = "winch.jobs."
	eventsPrefix  = "winch.events."
	controlPrefix = "winch.control."
	workerPrefix  = "winch.worker."

	schedulesPrefix = "winch.schedules."
	firesPrefix     = "winch.fires."
	runsPrefix      = "winch.runs."
)

// JobSubject is where principal publishes a request for job on queue:
// winch.jobs.<queue>.<job>.<principal>. The job token lets anyone find a
// queued request by its job; the last token is the identity the broker
// vouches for when authorization is on.
func JobSubject(queue, job, principal string) string {
	return jobsPrefix + queue + "." + job + "." + principal
}

// PriorityJobSubject is JobSubject for a request of priority high or low:
// winch.jobs.<queue>.<priority>.<job>.<principal>. Any other priority is
// normal, whose subject is JobSubject's. The last token is still the
// principal, the second last the job.
func PriorityJobSubject(queue, priority, job, principal string) string {
	if priority != PriorityHigh && priority != PriorityLow {
		return JobSubject(queue, job, principal)
	}
	return jobsPrefix + queue + "." + priority + "." + job + "." + principal
}

// QueueFilter matches every request for queue, of every priority.
func QueueFilter(queue string) string { return jobsPrefix + queue + ".>" }

// PriorityFilter matches the requests for queue of one priority ("" or
// "normal": the normal ones); each is a queue consumer's filter, and they
// do not overlap, as a work-queue stream requires.
func PriorityFilter(queue, priority string) string {
	if priority != PriorityHigh && priority != PriorityLow {
		return jobsPrefix + queue + ".*.*"
	}
	return jobsPrefix + queue + "." + priority + ".*.*"
}

// JobRequestFilter matches the normal-priority request of job, on any queue
// from anyone; JobRequestFilters matches it at every priority.
func JobRequestFilter(job string) string { return jobsPrefix + "*." + job + ".*" }

// JobRequestFilters are the filters that find job's request, whatever its
// priority.
func JobRequestFilters(job string) []string {
	return []string{JobRequestFilter(job), jobsPrefix + "*." + PriorityHigh + "." + job + ".*", jobsPrefix + "*." + PriorityLow + "." + job + ".*"}
}

// AllRequests matches every request.
const AllRequests = jobsPrefix + ">"

// JobSubjectParts are the tokens of a request's subject. Priority is
// PriorityHigh, PriorityLow or "" (normal).
type JobSubjectParts struct{ Queue, Priority, Job, Principal string }

// ParseJobSubject splits a request's subject into its tokens.
func ParseJobSubject(subject string) (JobSubjectParts, bool) {
	rest, ok := strings.CutPrefix(subject, jobsPrefix)
	if !ok {
		return JobSubjectParts{}, false
	}
	t := strings.Split(rest, ".")
	if slices.Contains(t, "") {
		return JobSubjectParts{}, false
	}
	switch {
	case len(t) == 3:
		return JobSubjectParts{Queue: t[0], Job: t[1], Principal: t[2]}, true
	case len(t) == 4 && (t[1] == PriorityHigh || t[1] == PriorityLow):
		return JobSubjectParts{Queue: t[0], Priority: t[1], Job: t[2], Principal: t[3]}, true
	}
	return JobSubjectParts{}, false
}

// ScheduleSubject is where the schedule name of owner is kept (and what the
// server names as the Nats-Scheduler of its fires). Only its owner may
// publish it: with authorization on, the last token is the publisher's.
func ScheduleSubject(name, owner string) string { return schedulesPrefix + name + "." + owner }

// ScheduleFilter matches the schedule name, whoever owns it.
func ScheduleFilter(name string) string { return schedulesPrefix + name + ".*" }

// FireSubject is where the server puts each fire of schedule name of owner.
func FireSubject(name, owner string) string { return firesPrefix + name + "." + owner }

// RunSubject is where workers record what each fire of the schedule became.
func RunSubject(name, owner string) string { return runsPrefix + name + "." + owner }

// Filters of every schedule, fire and fire record.
const (
	AllSchedules = schedulesPrefix + ">"
	AllFires     = firesPrefix + ">"
	AllRuns      = runsPrefix + ">"
)

// ScheduleParts are the tokens of a schedule's, a fire's or a record's
// subject.
type ScheduleParts struct{ Kind, Name, Owner string }

// ParseScheduleSubject splits the subject of a schedule, fire or record;
// Kind is "schedules", "fires" or "runs".
func ParseScheduleSubject(subject string) (ScheduleParts, bool) {
	t := strings.Split(subject, ".")
	if len(t) != 4 || t[0] != "winch" || t[2] == "" || t[3] == "" {
		return ScheduleParts{}, false
	}
	switch t[1] {
	case "schedules", "fires", "runs":
		return ScheduleParts{Kind: t[1], Name: t[2], Owner: t[3]}, true
	}
	return ScheduleParts{}, false
}

// ControlSubject is where principal publishes a control request (action)
// about job: winch.control.<action>.<job>.<principal>.
func ControlSubject(action, job, principal string) string {
	return controlPrefix + action + "." + job + "." + principal
}

// ControlReplyHeader names the inbox (_INBOX.…) where a client wants the
// decision on its control request.
const ControlReplyHeader = "Winch-Reply"

// ControlSubjectParts are the tokens of a control request's subject.
type ControlSubjectParts struct{ Action, Job, Principal string }

// ParseControlSubject splits a control request's subject into its tokens.
func ParseControlSubject(subject string) (ControlSubjectParts, bool) {
	rest, ok := strings.CutPrefix(subject, controlPrefix)
	if !ok {
		return ControlSubjectParts{}, false
	}
	t := strings.Split(rest, ".")
	if len(t) != 3 || t[0] == "" || t[1] == "" || t[2] == "" {
		return ControlSubjectParts{}, false
	}
	return ControlSubjectParts{Action: t[0], Job: t[1], Principal: t[2]}, true
}

// WorkerSubject is where one worker session hears that a job it runs was
// cancelled (core NATS, not a stream: the job's state is the record, this is
// only the doorbell). Only workers may publish under it.
func WorkerSubject(session string) string { return workerPrefix + session }

// EventSubject is where an event of kind for job is published.
func EventSubject(job, kind string) string { return eventsPrefix + job + "." + kind }

// JobEventsFilter matches every event of job.
func JobEventsFilter(job string) string { return eventsPrefix + job + ".>" }

// ConsumerName is the durable consumer that all workers of queue share,
// for its normal-priority requests.
func ConsumerName(queue string) string { return "queue-" + queue }

// PriorityConsumerName is the consumer of queue's requests of priority (high,
// low; anything else is ConsumerName). Its prefix differs from
// ConsumerName's, as queue names may contain '-'.
func PriorityConsumerName(queue, priority string) string {
	if priority != PriorityHigh && priority != PriorityLow {
		return ConsumerName(queue)
	}
	return "prio-" + priority + "-" + queue
}
