package schedule

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"time"

	"github.com/winchhq/winch/schema"
)

// CatchUp says what becomes of a fire that comes late: the broker was down
// at its time, or no worker ran to take it.
type CatchUp string

// Catch-up choices.
const (
	// CatchUpRunOnce runs a missed fire once when it can (several missed
	// fires of one schedule: the latest of them). The default.
	CatchUpRunOnce CatchUp = "run-once"
	// CatchUpSkip skips a missed fire; the schedule's record says so.
	CatchUpSkip CatchUp = "skip"
)

// ParseCatchUp reads a catch-up choice; "" is run-once.
func ParseCatchUp(s string) (CatchUp, error) {
	switch c := CatchUp(s); c {
	case "":
		return CatchUpRunOnce, nil
	case CatchUpRunOnce, CatchUpSkip:
		return c, nil
	}
	return "", fmt.Errorf("%w: --catch-up %q is not run-once or skip", ErrSpec, s)
}

// Version of the Definition document.
const Version = 1

// Definition is a schedule: the message kept on
// winch.schedules.<name>.<owner>, and copied by the server into each fire.
type Definition struct {
	Version int    `json:"version"`
	Name    string `json:"name"`
	// Owner is who added it, and whom its fires run as. It is the last token
	// of the subject the schedule was published on, which the broker vouches
	// for; a worker checks that they agree.
	Owner    string          `json:"owner"`
	Cron     string          `json:"cron,omitempty"`
	TimeZone string          `json:"time_zone,omitempty"`
	Every    schema.Duration `json:"every,omitempty"`
	At       time.Time       `json:"at,omitzero"`
	CatchUp  CatchUp         `json:"catch_up"`
	Paused   bool            `json:"paused,omitempty"`
	// Request is what each fire asks for: command, params (validated
	// against the command at ModuleCommit when the schedule was added),
	// queue, priority, timeout. Its id, principal and time are the fire's.
	Request   schema.Request `json:"request"`
	CreatedAt time.Time      `json:"created_at"`
}

// Spec is when the schedule fires.
func (d Definition) Spec() Spec {
	return Spec{Cron: d.Cron, TimeZone: d.TimeZone, Every: time.Duration(d.Every), At: d.At}
}

// Encode is the JSON of d.
func (d Definition) Encode() []byte {
	b, _ := json.Marshal(d) // nothing in it fails to encode
	return b
}

// Decode reads a schedule's message.
func Decode(data []byte) (Definition, error) {
	var d Definition
	if err := json.Unmarshal(data, &d); err != nil {
		return Definition{}, fmt.Errorf("decode schedule: %w", err)
	}
	if d.Version != Version || !ValidName(d.Name) || !schema.ValidPrincipal(d.Owner) {
		return Definition{}, fmt.Errorf("decode schedule: version %d, name %q or owner %q is not valid", d.Version, d.Name, d.Owner)
	}
	return d, nil
}

// JobID is the id of the job that the fire of schedule name of owner at
// fire makes: the name, the fire time in UTC to the second, and a tag of
// the owner (two owners may have schedules of the same name). Whoever
// relays a fire, and however often, the job is the same, and runs once.
func JobID(name, owner string, fire time.Time) string {
	sum := sha256.Sum256([]byte(owner))
	return fmt.Sprintf("%s-%s-%x", name, fire.UTC().Format("20060102t150405"), sum[:2])
}
