// Package broker holds winch's use of NATS: the embedded server, connecting,
// and the topology (streams, consumers and key-value buckets) with the names
// of its subjects.
package broker

import "strings"

// Stream, bucket and subject names. They are the contract between producers,
// workers and the sink; see DESIGN.md.
const (
	JobsStream   = "WINCH_JOBS"
	EventsStream = "WINCH_EVENTS"
	StateBucket  = "WINCH_JOBS_STATE"
	// DeadStream keeps the server's advisories of requests that ran out of
	// deliveries until a worker has recorded their jobs as dead, so that
	// none is lost while no worker is listening.
	DeadStream = "WINCH_DEAD_LETTERS"
	// MaxDeliveriesAdvisories is where the server announces them.
	MaxDeliveriesAdvisories = "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES." + JobsStream + ".>"
	ModulesBucket           = "WINCH_MODULES"

	jobsPrefix   = "winch.jobs."
	eventsPrefix = "winch.events."
)

// JobSubject is where a request for queue from principal is published.
func JobSubject(queue, principal string) string {
	return jobsPrefix + queue + "." + principal
}

// QueueFilter matches every request for queue.
func QueueFilter(queue string) string { return jobsPrefix + queue + ".>" }

// PrincipalOf returns the principal token of a job subject, which is the
// identity the broker vouches for when authorization is on.
func PrincipalOf(subject string) (string, bool) {
	rest, ok := strings.CutPrefix(subject, jobsPrefix)
	if !ok {
		return "", false
	}
	_, principal, ok := strings.Cut(rest, ".")
	if !ok || strings.Contains(principal, ".") {
		return "", false
	}
	return principal, true
}

// EventSubject is where an event of kind for job is published.
func EventSubject(job, kind string) string { return eventsPrefix + job + "." + kind }

// JobEventsFilter matches every event of job.
func JobEventsFilter(job string) string { return eventsPrefix + job + ".>" }

// ConsumerName is the durable consumer that all workers of queue share.
func ConsumerName(queue string) string { return "queue-" + queue }
