package compose

import (
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The secrets compose.yaml takes from the environment.
var secrets = []string{"WINCH_NATS_WORKER_PASSWORD", "WINCH_NATS_ALICE_PASSWORD", "WINCH_NATS_GATEWAY_PASSWORD", "WINCH_TOKENS"}

// load loads compose.yaml as `docker compose` does (compose-go, the
// Compose specification's schema), with env as the whole environment.
func load(t *testing.T, env map[string]string) (*types.Project, error) {
	t.Helper()
	var list []string
	for k, v := range env {
		list = append(list, k+"="+v)
	}
	opts, err := cli.NewProjectOptions([]string{"../../compose.yaml"},
		cli.WithName("winchtest"), cli.WithWorkingDirectory("../.."), cli.WithDiscardEnvFile, cli.WithEnv(list))
	if err != nil {
		t.Fatal(err)
	}
	return opts.LoadProject(t.Context())
}

func withSecrets() map[string]string {
	env := map[string]string{}
	for _, s := range secrets {
		env[s] = "x" + strings.ToLower(s)
	}
	return env
}

// TestComposeFileIsValidForCurrentCompose: the file Debian's docker-compose
// 1.29 runs in make compose-test is also one current Compose accepts,
// with the services, healthchecks and start order it promises.
func TestComposeFileIsValidForCurrentCompose(t *testing.T) {
	t.Parallel()
	p, err := load(t, withSecrets())
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"clickhouse", "gateway", "init", "nats-1", "nats-2", "nats-3", "notifier", "sink", "worker"}
	if got := p.ServiceNames(); !slices.Equal(slices.Sorted(slices.Values(got)), want) {
		t.Fatalf("services %v, want %v", got, want)
	}
	dependsOn := map[string]map[string]string{
		"init":     {"nats-1": types.ServiceConditionHealthy, "nats-2": types.ServiceConditionHealthy, "nats-3": types.ServiceConditionHealthy},
		"worker":   {"init": types.ServiceConditionCompletedSuccessfully},
		"notifier": {"init": types.ServiceConditionCompletedSuccessfully},
		"sink":     {"init": types.ServiceConditionCompletedSuccessfully, "clickhouse": types.ServiceConditionHealthy},
		"gateway":  {"init": types.ServiceConditionCompletedSuccessfully, "clickhouse": types.ServiceConditionHealthy},
	}
	for _, name := range want {
		s, err := p.GetService(name)
		if err != nil {
			t.Fatal(err)
		}
		t.Run(name, func(t *testing.T) {
			// Local images only: nothing is pulled or built by compose.
			if s.Build != nil || !slices.Contains([]string{"winch:latest", "winch-clickhouse:latest"}, s.Image) {
				t.Errorf("image %q (build %v): want winch:latest or winch-clickhouse:latest, built by make", s.Image, s.Build)
			}
			got := map[string]string{}
			for dep, d := range s.DependsOn {
				got[dep] = d.Condition
			}
			if want := dependsOn[name]; !maps.Equal(got, want) {
				t.Errorf("depends_on %v, want %v", got, want)
			}
			// Everything that keeps running says when it is healthy;
			// the winch image's check is winch health (no shell in it).
			if name != "init" {
				hc := s.HealthCheck
				if hc == nil || len(hc.Test) < 2 || hc.Test[0] != "CMD" {
					t.Fatalf("healthcheck %v: want an exec-form test", hc)
				}
				if s.Image == "winch:latest" && (hc.Test[1] != "/winch" || hc.Test[2] != "health") {
					t.Errorf("healthcheck %v: want /winch health URL", hc.Test)
				}
			}
			for _, port := range s.Ports {
				if port.HostIP != "127.0.0.1" {
					t.Errorf("port %d published on %q: want the host's loopback only", port.Target, port.HostIP)
				}
			}
			if name == "worker" && len(s.Ports) > 0 {
				t.Error("the worker publishes a port: it could not be scaled")
			}
			for _, v := range s.Volumes {
				if v.Type != types.VolumeTypeBind || v.Source == "/var/run/docker.sock" {
					continue
				}
				if _, err := os.Stat(v.Source); err != nil {
					t.Errorf("bind mount of %s: %v", v.Source, err)
				}
			}
			if s.User == "0" && name != "worker" && !strings.HasPrefix(name, "nats-") {
				t.Errorf("runs as root: only the worker (the socket) and NATS (its volume) do")
			}
			if hasSocket(s) && name != "worker" {
				t.Error("mounts the Docker socket: only the worker may")
			}
		})
	}
}

// TestComposeFileNeedsItsSecrets: without a password or the gateway's
// tokens, compose refuses to start and names what is missing, rather than
// starting servers with empty passwords.
func TestComposeFileNeedsItsSecrets(t *testing.T) {
	t.Parallel()
	for _, missing := range secrets {
		t.Run(missing, func(t *testing.T) {
			t.Parallel()
			env := withSecrets()
			delete(env, missing)
			_, err := load(t, env)
			if err == nil || !strings.Contains(err.Error(), "set "+missing) {
				t.Errorf("without %s: %v, want an error that says to set it", missing, err)
			}
		})
	}
}

func hasSocket(s types.ServiceConfig) bool {
	for _, v := range s.Volumes {
		if filepath.Base(v.Source) == "docker.sock" {
			return true
		}
	}
	return false
}
