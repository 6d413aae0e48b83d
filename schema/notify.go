package schema

import (
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// NotifyTarget asks for a webhook when a job ends: a request carries them
// (`winch run --notify URL`, a schedule's), and so does a command's manifest
// (`notify: {on: [failed, timed_out], url: ...}`). The worker puts them on
// the job's state and its final event, where the notifier finds them.
type NotifyTarget struct {
	// URL is where the notification is POSTed: http or https, printable
	// ASCII without spaces (percent-encode the rest).
	URL string `json:"url"`
	// On are the terminal states to notify of; none means every end.
	On []State `json:"on,omitempty"`
	// Format is NotifyJSON (winch's document, the default) or NotifySlack
	// (a body Slack's incoming webhooks, and compatible chat tools, take).
	Format string `json:"format,omitempty"`
}

// Notification body formats.
const (
	NotifyJSON  = "json"
	NotifySlack = "slack"
)

// Bounds of notify targets, as request.schema.json has them.
const (
	MaxNotifyTargets = 8
	MaxNotifyURL     = 2048
)

// notifyURLPattern is the url pattern of request.schema.json. It is
// deliberately plain (printable ASCII, no spaces) so that the decoder and
// every JSON Schema validator agree on it; the notifier parses the URL.
var notifyURLPattern = regexp.MustCompile(`^https?://[!-~]+$`)

// TerminalStates are the states a job ends in.
var TerminalStates = []State{StateSucceeded, StateFailed, StateCancelled, StateTimedOut, StateRejected, StateDead}

// Wants reports whether the target asks to be told that a job ended in s.
func (n NotifyTarget) Wants(s State) bool { return len(n.On) == 0 || slices.Contains(n.On, s) }

// Check says what is wrong with a target, if anything.
func (n NotifyTarget) Check() error {
	switch {
	case len(n.URL) > MaxNotifyURL:
		return fmt.Errorf("notify url is %d characters, more than the %d allowed", len(n.URL), MaxNotifyURL)
	case !notifyURLPattern.MatchString(n.URL):
		return fmt.Errorf("notify url %q is not an http:// or https:// URL (printable ASCII, no spaces)", n.URL)
	}
	if len(n.On) == 0 && n.On != nil {
		return fmt.Errorf("notify on is empty: list terminal states (%s), or leave it out for every end", statesList())
	}
	for _, s := range n.On {
		if !slices.Contains(TerminalStates, s) {
			return fmt.Errorf("notify on: %q is not a state a job ends in (%s)", s, statesList())
		}
	}
	switch n.Format {
	case "", NotifyJSON, NotifySlack:
	default:
		return fmt.Errorf("notify format %q: want json or slack", n.Format)
	}
	return nil
}

// NotifyTargets are the webhooks one run asks for (winch run --notify,
// the gateway's "notify"): one target per URL, each for the states on (nil:
// every end) in format, checked. JSON, the default, is left out of the
// request.
func NotifyTargets(urls []string, on []State, format string) ([]NotifyTarget, error) {
	if format == NotifyJSON {
		format = ""
	}
	var out []NotifyTarget
	for _, u := range urls {
		t := NotifyTarget{URL: u, On: on, Format: format}
		if err := t.Check(); err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, nil
}

func statesList() string {
	names := make([]string, len(TerminalStates))
	for i, s := range TerminalStates {
		names[i] = string(s)
	}
	return strings.Join(names, ", ")
}

// decodeNotify reads a request's notify list as strictly as the rest of the
// request: objects with exactly the names url, on and format, each once, no
// nulls.
func decodeNotify(raw []byte) ([]NotifyTarget, error) {
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return nil, err
	}
	if len(items) > MaxNotifyTargets {
		return nil, &RequestError{Reason: fmt.Sprintf("notify has %d targets, more than the %d allowed", len(items), MaxNotifyTargets)}
	}
	out := make([]NotifyTarget, 0, len(items))
	for i, item := range items {
		if k := jsonKind(item); k != "object" {
			return nil, &RequestError{Reason: fmt.Sprintf("notify item %d must be an object with a url, not %s", i, withArticle(k))}
		}
		var n NotifyTarget
		hasURL := false
		err := eachMember(item, "field", func(name string, raw []byte) error {
			kind := jsonKind(raw)
			want := map[string]string{"url": "string", "on": "array", "format": "string"}[name]
			switch {
			case want == "":
				return &RequestError{Reason: fmt.Sprintf("notify item %d: unknown field %q (the fields are url, on, format)", i, name)}
			case kind != want:
				return &RequestError{Reason: fmt.Sprintf("notify item %d: field %q must be a JSON %s, not %s", i, name, want, withArticle(kind))}
			}
			switch name {
			case "url":
				hasURL = true
				return json.Unmarshal(raw, &n.URL)
			case "format":
				if err := json.Unmarshal(raw, &n.Format); err != nil {
					return err
				}
				if n.Format == "" {
					return &RequestError{Reason: fmt.Sprintf("notify item %d: format is empty: write json or slack, or leave it out", i)}
				}
				return nil
			}
			var states []json.RawMessage
			if err := json.Unmarshal(raw, &states); err != nil {
				return err
			}
			n.On = make([]State, len(states))
			for j, s := range states {
				if k := jsonKind(s); k != "string" {
					return &RequestError{Reason: fmt.Sprintf("notify item %d: on item %d must be a state, not %s", i, j, withArticle(k))}
				}
				if err := json.Unmarshal(s, &n.On[j]); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		if !hasURL {
			return nil, &RequestError{Reason: fmt.Sprintf("notify item %d has no url", i)}
		}
		if err := n.Check(); err != nil {
			return nil, &RequestError{Reason: fmt.Sprintf("notify item %d: %v", i, err)}
		}
		out = append(out, n)
	}
	return out, nil
}
