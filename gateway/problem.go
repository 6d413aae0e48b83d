package gateway

import (
	"encoding/json"
	"net/http"
)

// Problem is an RFC 9457 problem document: what went wrong, said so that a
// person can act on it.
type Problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail"`
	// Errors lists each bad parameter of a submit.
	Errors []ParamProblem `json:"errors,omitempty"`
	// JobID names the job a problem is about, when there is one (a
	// refused command, on the record).
	JobID string `json:"job_id,omitempty"`
	// Allowed lists the query parameters a route takes, when a request
	// gave one it does not.
	Allowed []string `json:"allowed,omitempty"`
}

// ParamProblem is what is wrong with one parameter.
type ParamProblem struct {
	Param   string `json:"param"`
	Message string `json:"message"`
}

// problemTypes are the problem types, by status; each is a page of the
// README's API section.
var problemTypes = map[int]string{
	http.StatusBadRequest:            "bad-request",
	http.StatusUnauthorized:          "unauthorized",
	http.StatusForbidden:             "forbidden",
	http.StatusNotFound:              "not-found",
	http.StatusMethodNotAllowed:      "method-not-allowed",
	http.StatusConflict:              "conflict",
	http.StatusRequestEntityTooLarge: "too-large",
	http.StatusUnsupportedMediaType:  "unsupported-media-type",
	http.StatusUnprocessableEntity:   "invalid",
	http.StatusTooManyRequests:       "too-many-requests",
	http.StatusInternalServerError:   "internal",
	http.StatusServiceUnavailable:    "unavailable",
	http.StatusGatewayTimeout:        "timeout",
}

func writeProblem(w http.ResponseWriter, p Problem) {
	if p.Title == "" {
		p.Title = http.StatusText(p.Status)
	}
	if p.Type == "" {
		p.Type = "https://github.com/winchhq/winch#problem-" + problemTypes[p.Status]
	}
	if p.Status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="winch"`)
	}
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(p.Status)
	_ = json.NewEncoder(w).Encode(p)
}

func problem(w http.ResponseWriter, status int, detail string) {
	writeProblem(w, Problem{Status: status, Detail: detail})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
