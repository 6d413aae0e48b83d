package broker

// Permissions are the subjects a NATS user may publish and subscribe to. They
// are the one description of who may do what in winch: nats.conf's users,
// the decentralized (JWT) setup of ops/auth and the tests that prove both
// against the real server are written from them.
type Permissions struct {
	Publish   []string
	Subscribe []string
	// PublishDeny are subjects refused although Publish allows them.
	PublishDeny []string
}

// SinkConsumer is the durable consumer of EventsStream that audit sinks
// share.
const SinkConsumer = "audit-sink"

// sharedDurables are the durable consumers winch's services share on the
// streams where clients create (and delete) ordered consumers of their own:
// a client that deleted one would make the sink or the notifiers start
// again from new events, and one that pulled from it would hold back their
// work, so clients may touch none of them.
var sharedDurables = []struct{ stream, name string }{
	{EventsStream, SinkConsumer},
	{EventsStream, NotifierConsumer},
	{SchedulesStream, FiresConsumer},
}

// sharedDurablesDenied are the JetStream API calls on sharedDurables that
// clients' wildcards would otherwise allow.
func sharedDurablesDenied() []string {
	var out []string
	for _, d := range sharedDurables {
		for _, call := range []string{"CREATE", "DELETE", "MSG.NEXT"} {
			out = append(out, "$JS.API.CONSUMER."+call+"."+d.stream+"."+d.name)
		}
		out = append(out, "$JS.API.CONSUMER.CREATE."+d.stream+"."+d.name+".>") // with a filter subject
	}
	return out
}

// NameTemplate stands for the user's own name in a JWT account's scoped
// signing key: the server puts each user's name in its place, so one key
// signs every client and each of them may publish only as itself.
const NameTemplate = "{{name()}}"

// ClientPermissions are those of a person or service that runs commands as
// principal: publishing requests and control requests only as itself, and
// what every client needs of the JetStream API to publish, follow events,
// read job states, the queue (for queued jobs) and the module registry.
// Nothing here writes a state, an event, a session or a doorbell.
// principal may be NameTemplate.
func ClientPermissions(principal string) Permissions {
	return Permissions{
		Publish: []string{
			JobSubject("*", "*", principal),
			// High and low (PriorityJobSubject) only: any other second
			// token would be stored but match no queue's consumer.
			PriorityJobSubject("*", PriorityHigh, "*", principal),
			PriorityJobSubject("*", PriorityLow, "*", principal),
			ControlSubject("*", "*", principal),
			ScheduleSubject("*", principal),
			"$JS.API.INFO",
			"$JS.API.STREAM.INFO.>",
			"$JS.API.STREAM.MSG.GET.>",
			"$JS.API.DIRECT.GET.>",
			"$JS.API.CONSUMER.CREATE." + EventsStream + ".>",
			"$JS.API.CONSUMER.CREATE.KV_" + StateBucket + ".>",
			"$JS.API.CONSUMER.CREATE.KV_" + ModulesBucket + ".>",
			"$JS.API.CONSUMER.CREATE." + SchedulesStream + ".>",
			"$JS.API.CONSUMER.DELETE." + EventsStream + ".>",
			"$JS.API.CONSUMER.DELETE.KV_" + StateBucket + ".>",
			"$JS.API.CONSUMER.DELETE.KV_" + ModulesBucket + ".>",
			"$JS.API.CONSUMER.DELETE." + SchedulesStream + ".>",
			"$JS.API.CONSUMER.MSG.NEXT." + EventsStream + ".>",
			"$JS.API.CONSUMER.MSG.NEXT." + SchedulesStream + ".>",
			"$JS.API.CONSUMER.INFO.>",
		},
		Subscribe: []string{"_INBOX.>"},
		// Clients delete the ordered consumers they made (a follow's, at
		// its end), whose names the library picks, so the deletes above
		// are by wildcard; the services' shared ones are kept out here.
		PublishDeny: sharedDurablesDenied(),
	}
}

// GatewayPermissions are the HTTP gateway's: a client's, for every
// principal. The gateway authenticates each caller itself and publishes
// only as that caller (nats.conf says why it is trusted); like a client, it
// writes no state, no event and no module.
func GatewayPermissions() Permissions { return ClientPermissions("*") }

// NotifierPermissions are a notifier's, narrower than a service's: its
// own consumer of the final events and nothing else; it publishes no
// request, state or event.
func NotifierPermissions() Permissions { return durablePermissions(EventsStream, NotifierConsumer) }

// SinkPermissions are an audit sink's, narrower than a service's: its own
// consumer of the events and nothing else (ClickHouse is where it writes);
// it publishes no request, state or event.
func SinkPermissions() Permissions { return durablePermissions(EventsStream, SinkConsumer) }

// durablePermissions are what a service that only consumes needs of its
// durable consumer on stream: read, create or update it, pull and
// acknowledge.
func durablePermissions(stream, name string) Permissions {
	consumer := stream + "." + name
	return Permissions{
		Publish: []string{
			"$JS.API.INFO",
			"$JS.API.STREAM.INFO." + stream,
			"$JS.API.CONSUMER.INFO." + consumer,
			"$JS.API.CONSUMER.CREATE." + consumer,
			"$JS.API.CONSUMER.CREATE." + consumer + ".>",
			"$JS.API.CONSUMER.MSG.NEXT." + consumer,
			"$JS.ACK." + consumer + ".>",
		},
		Subscribe: []string{"_INBOX.>"},
	}
}

// ServicePermissions are those of winch's own processes (workers; sinks
// and notifiers may have SinkPermissions and NotifierPermissions instead):
// everything under winch and the JetStream API.
// They are the only users that write states and events.
func ServicePermissions() Permissions {
	return Permissions{
		Publish:   []string{"winch.>", "$JS.>", "$KV.>", "_INBOX.>"},
		Subscribe: []string{">"},
	}
}
