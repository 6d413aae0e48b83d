// Package broker holds winch's use of NATS: the embedded server, connecting,
// and the topology (streams, consumers and key-value buckets) with the names
// of its subjects. docs/ARCHITECTURE.md lists them with what each is for.
package broker

import "strings"

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

	// ControlConsumer is the durable consumer of ControlStream that every
	// worker shares.
	ControlConsumer = "control"
	// NotifierConsumer is the durable consumer of EventsStream that every
	// notifier shares.
	NotifierConsumer = "notifier"

	jobsPrefix    = "winch.jobs."
	eventsPrefix  = "winch.events."
	controlPrefix = "winch.control."
	workerPrefix  = "winch.worker."
)

// JobSubject is where principal publishes a request for job on queue:
// winch.jobs.<queue>.<job>.<principal>. The job token lets anyone find a
// queued request by its job; the last token is the identity the broker
// vouches for when authorization is on.
func JobSubject(queue, job, principal string) string {
	return jobsPrefix + queue + "." + job + "." + principal
}

// QueueFilter matches every request for queue.
func QueueFilter(queue string) string { return jobsPrefix + queue + ".>" }

// JobRequestFilter matches the request of job, on any queue from anyone.
func JobRequestFilter(job string) string { return jobsPrefix + "*." + job + ".*" }

// AllRequests matches every request.
const AllRequests = jobsPrefix + ">"

// JobSubjectParts are the tokens of a request's subject.
type JobSubjectParts struct{ Queue, Job, Principal string }

// ParseJobSubject splits a request's subject into its tokens.
func ParseJobSubject(subject string) (JobSubjectParts, bool) {
	rest, ok := strings.CutPrefix(subject, jobsPrefix)
	if !ok {
		return JobSubjectParts{}, false
	}
	t := strings.Split(rest, ".")
	if len(t) != 3 || t[0] == "" || t[1] == "" || t[2] == "" {
		return JobSubjectParts{}, false
	}
	return JobSubjectParts{Queue: t[0], Job: t[1], Principal: t[2]}, true
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

// ConsumerName is the durable consumer that all workers of queue share.
func ConsumerName(queue string) string { return "queue-" + queue }
