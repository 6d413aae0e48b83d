package gateway

import (
	"net/http"
	"slices"
	"time"

	"github.com/winchhq/winch/modules"
)

// Command is one command a request may name, with its parameters as JSON
// Schema, for a client to build a form from.
type Command struct {
	Name   string `json:"name"`
	Module string `json:"module"`
	Help   string `json:"help"`
	// Params is a JSON Schema (2020-12) of the params object.
	Params  map[string]any `json:"params"`
	Roles   []string       `json:"roles"`
	Timeout string         `json:"timeout,omitempty"`
	Retry   bool           `json:"retry"`
	Commit  string         `json:"commit,omitempty"`
}

func commandOf(c modules.Command) Command {
	roles := c.Spec.Roles
	if roles == nil {
		roles = []string{}
	}
	out := Command{Name: c.Name, Module: c.Module, Help: c.Spec.Help, Params: c.Spec.ParamsJSONSchema(),
		Roles: roles, Retry: c.Spec.Retry, Commit: c.Commit}
	if c.Spec.Timeout > 0 {
		out.Timeout = time.Duration(c.Spec.Timeout).String()
	}
	return out
}

func (s *Server) listCommands(w http.ResponseWriter, r *http.Request, _ Identity) {
	cat, err := s.cfg.Client.Catalog(r.Context())
	if err != nil {
		s.fail(w, err)
		return
	}
	out := []Command{}
	for _, c := range cat.Commands() {
		out = append(out, commandOf(c))
	}
	writeJSON(w, http.StatusOK, map[string]any{"commands": out})
}

func (s *Server) getCommand(w http.ResponseWriter, r *http.Request, _ Identity) {
	cat, err := s.cfg.Client.Catalog(r.Context())
	if err != nil {
		s.fail(w, err)
		return
	}
	c, err := cat.Lookup(r.PathValue("name"))
	if err != nil {
		problem(w, http.StatusNotFound, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, commandOf(c))
}

// Module is one module in the registry, as `winch modules list` shows it.
type Module struct {
	Name     string    `json:"name"`
	URL      string    `json:"url"`
	Ref      string    `json:"ref"`
	Kind     string    `json:"kind"`
	Commit   string    `json:"commit"`
	SyncedAt time.Time `json:"synced_at"`
	Commands []string  `json:"commands"`
}

func (s *Server) listModules(w http.ResponseWriter, r *http.Request, _ Identity) {
	entries, err := s.cfg.Client.Modules(r.Context())
	if err != nil {
		s.fail(w, err)
		return
	}
	out := []Module{}
	for _, e := range entries {
		m := Module{Name: e.Name, URL: e.URL, Ref: e.Ref, Kind: e.Kind, Commit: e.Commit, SyncedAt: e.SyncedAt, Commands: []string{}}
		if e.Manifest != nil {
			for name := range e.Manifest.Commands {
				m.Commands = append(m.Commands, name)
			}
			slices.Sort(m.Commands)
		}
		out = append(out, m)
	}
	writeJSON(w, http.StatusOK, map[string]any{"modules": out})
}
