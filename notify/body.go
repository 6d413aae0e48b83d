package notify

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/winchhq/winch/schema"
)

// Notification is the JSON document POSTed for a job's end (format json).
// Parameters are as the job's events have them: values of parameters
// marked secret are already *** there, so no secret reaches a receiver.
type Notification struct {
	DeliveryID string         `json:"delivery_id"`
	Job        string         `json:"job"`
	Command    string         `json:"command"`
	Principal  string         `json:"principal"`
	Queue      string         `json:"queue,omitempty"`
	State      schema.State   `json:"state"`
	ExitCode   *int           `json:"exit_code,omitempty"`
	Error      string         `json:"error,omitempty"`
	Reason     string         `json:"reason,omitempty"`
	Duration   string         `json:"duration"`
	DurationMS int64          `json:"duration_ms"`
	CreatedAt  time.Time      `json:"created_at,omitzero"`
	StartedAt  time.Time      `json:"started_at,omitzero"`
	FinishedAt time.Time      `json:"finished_at"`
	Params     map[string]any `json:"params,omitempty"`
	// Link is the job in the console, when one is configured; Logs the
	// command that shows it otherwise.
	Link string `json:"link,omitempty"`
	Logs string `json:"logs"`
}

// duration is how long the job ran: from its start, or, if it never
// started, from its request.
func duration(ev schema.Event) time.Duration {
	from := ev.StartedAt
	if from.IsZero() {
		from = ev.CreatedAt
	}
	if from.IsZero() || ev.Time.Before(from) {
		return 0
	}
	return ev.Time.Sub(from)
}

func notification(ev schema.Event, deliveryID, consoleURL string) Notification {
	d := duration(ev).Round(time.Millisecond) // duration and duration_ms agree
	n := Notification{
		DeliveryID: deliveryID, Job: ev.JobID, Command: ev.Command, Principal: ev.Principal, Queue: ev.Queue,
		State: ev.State, ExitCode: ev.ExitCode, Error: ev.Error, Reason: ev.Reason,
		Duration: d.String(), DurationMS: d.Milliseconds(),
		CreatedAt: ev.CreatedAt, StartedAt: ev.StartedAt, FinishedAt: ev.Time, Params: ev.Params,
		Logs: "winch logs " + ev.JobID,
	}
	if consoleURL != "" {
		n.Link = strings.TrimRight(consoleURL, "/") + "/jobs/" + ev.JobID
	}
	return n
}

// body encodes the notification in the target's format.
func body(n Notification, format string) ([]byte, error) {
	if format != schema.NotifySlack {
		return marshal(n)
	}
	// Slack's incoming webhooks (and Mattermost's, Rocket.Chat's) take a
	// text with mrkdwn links.
	icon := map[schema.State]string{schema.StateSucceeded: ":white_check_mark:", schema.StateCancelled: ":no_entry_sign:"}[n.State]
	if icon == "" {
		icon = ":x:"
	}
	what := string(n.State)
	if n.ExitCode != nil && n.State != schema.StateSucceeded {
		what += fmt.Sprintf(" (exit %d)", *n.ExitCode)
	}
	job := "`" + n.Job + "`"
	if n.Link != "" {
		job = "<" + n.Link + "|" + n.Job + ">"
	}
	text := fmt.Sprintf("%s winch: *%s* by %s %s after %s, job %s", icon, n.Command, n.Principal, what, n.Duration, job)
	if n.Error != "" && n.State != schema.StateSucceeded {
		text += "\n> " + n.Error
	}
	return marshal(map[string]string{"text": text})
}

// marshal encodes v without escaping <, > and &, which Slack's links use.
func marshal(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimRight(b.Bytes(), "\n"), nil
}

// Render is the body POSTed for ev's end to its i-th target, in format
// (indented, for reading; what is sent is compact).
func Render(ev schema.Event, i int, consoleURL, format string) ([]byte, error) {
	data, err := body(notification(ev, DeliveryID(ev, i), consoleURL), format)
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	if err := json.Indent(&out, data, "", "  "); err != nil { // keeps < and > as they are
		return nil, err
	}
	out.WriteByte('\n')
	return out.Bytes(), nil
}
