package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// HealthCmd is `winch health URL`: the probe of the winch image's own
// healthchecks (compose), which has no shell or curl, being scratch.
type HealthCmd struct {
	URL     string        `arg:"" help:"What to GET, like http://127.0.0.1:9090/readyz (WINCH_METRICS_ADDR's /healthz and /readyz)."`
	Timeout time.Duration `default:"3s" help:"Give up after this long."`
}

// Run exits 0 on a 2xx answer, printing its body, and 69 otherwise, saying
// what answered.
func (c *HealthCmd) Run(ctx context.Context, g *Globals) error {
	u, err := url.Parse(c.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return usageError("winch health %q: want an http:// or https:// URL, like http://127.0.0.1:9090/readyz", c.URL)
	}
	ctx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return usageError("winch health: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return &ExitError{Code: exitUnavailable, Err: fmt.Errorf("health %s: %w", u.Redacted(), err)}
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 != 2 {
		return &ExitError{Code: exitUnavailable, Err: fmt.Errorf("health %s: %s: %s", u.Redacted(), resp.Status, strings.TrimSpace(string(body)))}
	}
	_, err = g.stdio.Out.Write(body)
	return err
}
