package broker

// Permissions are the subjects a NATS user may publish and subscribe to. They
// are the one description of who may do what in winch: nats.conf's users,
// the decentralized (JWT) setup of ops/auth and the tests that prove both
// against the real server are written from them.
type Permissions struct {
	Publish   []string
	Subscribe []string
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
	}
}

// GatewayPermissions are the HTTP gateway's: a client's, for every
// principal. The gateway authenticates each caller itself and publishes
// only as that caller (nats.conf says why it is trusted); like a client, it
// writes no state, no event and no module.
func GatewayPermissions() Permissions { return ClientPermissions("*") }

// ServicePermissions are those of winch's own processes (workers, sinks,
// notifiers, the gateway): everything under winch and the JetStream API.
// They are the only users that write states and events.
func ServicePermissions() Permissions {
	return Permissions{
		Publish:   []string{"winch.>", "$JS.>", "$KV.>", "_INBOX.>"},
		Subscribe: []string{">"},
	}
}
