package kubernetes

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/conf"
	"go.uber.org/goleak"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"

	"github.com/winchhq/winch/broker"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// kustomization is the part of kustomize's Kustomization this base uses,
// decoded strictly: a field kustomize would read that is not here fails
// the test rather than being ignored (kustomize's own API module would
// bring its whole dependency tree for five fields).
type kustomization struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Namespace  string   `json:"namespace"`
	Resources  []string `json:"resources"`
	Labels     []struct {
		Pairs            map[string]string `json:"pairs"`
		IncludeSelectors bool              `json:"includeSelectors,omitempty"`
	} `json:"labels"`
	Images []struct {
		Name    string `json:"name"`
		NewName string `json:"newName,omitempty"`
		NewTag  string `json:"newTag,omitempty"`
	} `json:"images"`
}

// scaledObject is KEDA's keda.sh/v1alpha1 ScaledObject, the fields this
// base uses. KEDA's own API package (github.com/kedacore/keda/v2) is one
// module with every scaler's SDK (AWS, Azure, GCP, Kafka, ...) and pins
// k8s.io to an older release, so it is not imported for one type.
type scaledObject struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		ScaleTargetRef struct {
			APIVersion string `json:"apiVersion,omitempty"`
			Kind       string `json:"kind,omitempty"`
			Name       string `json:"name"`
		} `json:"scaleTargetRef"`
		PollingInterval *int32 `json:"pollingInterval,omitempty"`
		CooldownPeriod  *int32 `json:"cooldownPeriod,omitempty"`
		MinReplicaCount *int32 `json:"minReplicaCount,omitempty"`
		MaxReplicaCount *int32 `json:"maxReplicaCount,omitempty"`
		Triggers        []struct {
			Type     string            `json:"type"`
			Name     string            `json:"name,omitempty"`
			Metadata map[string]string `json:"metadata"`
		} `json:"triggers"`
	} `json:"spec"`
}

// The parameters of KEDA's nats-jetstream scaler (keda.sh/docs, scalers).
var jetstreamScalerParams = []string{"natsServerMonitoringEndpoint", "account", "stream", "consumer", "lagThreshold", "activationLagThreshold", "useHttps"}

// manifests are the decoded objects of the base, by kind.
type manifests struct {
	deployments map[string]*appsv1.Deployment
	pdbs        []*policyv1.PodDisruptionBudget
	services    []*corev1.Service
	configMaps  map[string]*corev1.ConfigMap
	jobs        []*batchv1.Job
	scaled      []*scaledObject
	namespaces  []*corev1.Namespace
}

// decodeStrict decodes one YAML document into obj, refusing unknown and
// duplicate fields (sigs.k8s.io/yaml: JSON with DisallowUnknownFields).
func decodeStrict(doc []byte, obj any) error {
	return yaml.UnmarshalStrict(doc, obj)
}

// load decodes every document of every file the kustomization lists into
// the API type its apiVersion and kind name; any other kind fails.
func load(t *testing.T) (kustomization, manifests) {
	t.Helper()
	var k kustomization
	data, err := os.ReadFile("kustomization.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := decodeStrict(data, &k); err != nil {
		t.Fatalf("kustomization.yaml: %v", err)
	}
	m := manifests{deployments: map[string]*appsv1.Deployment{}, configMaps: map[string]*corev1.ConfigMap{}}
	for _, file := range k.Resources {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatalf("kustomization.yaml lists %s: %v", file, err)
		}
		for i, doc := range bytes.Split(data, []byte("\n---\n")) {
			var tm metav1.TypeMeta
			if err := yaml.Unmarshal(doc, &tm); err != nil {
				t.Fatalf("%s, document %d: %v", file, i+1, err)
			}
			var obj any
			switch tm.APIVersion + " " + tm.Kind {
			case "apps/v1 Deployment":
				obj = &appsv1.Deployment{}
			case "policy/v1 PodDisruptionBudget":
				p := &policyv1.PodDisruptionBudget{}
				obj, m.pdbs = p, append(m.pdbs, p)
			case "v1 Service":
				s := &corev1.Service{}
				obj, m.services = s, append(m.services, s)
			case "v1 ConfigMap":
				obj = &corev1.ConfigMap{}
			case "v1 Namespace":
				n := &corev1.Namespace{}
				obj, m.namespaces = n, append(m.namespaces, n)
			case "batch/v1 Job":
				j := &batchv1.Job{}
				obj, m.jobs = j, append(m.jobs, j)
			case "keda.sh/v1alpha1 ScaledObject":
				s := &scaledObject{}
				obj, m.scaled = s, append(m.scaled, s)
			default:
				t.Fatalf("%s, document %d: no decoder for %q %q: add the kind to this test", file, i+1, tm.APIVersion, tm.Kind)
			}
			if err := decodeStrict(doc, obj); err != nil {
				t.Fatalf("%s, document %d (%s): %v", file, i+1, tm.Kind, err)
			}
			switch o := obj.(type) {
			case *appsv1.Deployment:
				m.deployments[o.Name] = o
			case *corev1.ConfigMap:
				m.configMaps[o.Name] = o
			}
		}
	}
	return k, m
}

// TestKustomizationListsEveryManifest: a file added beside the others but
// not listed would never be applied, and a listed one must exist.
func TestKustomizationListsEveryManifest(t *testing.T) {
	t.Parallel()
	k, _ := load(t)
	files, err := filepath.Glob("*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	files = slices.DeleteFunc(files, func(f string) bool { return f == "kustomization.yaml" })
	listed := slices.Sorted(slices.Values(k.Resources))
	sort.Strings(files)
	if !slices.Equal(files, listed) {
		t.Errorf("kustomization.yaml lists %v; the directory has %v", listed, files)
	}
	if k.APIVersion != "kustomize.config.k8s.io/v1beta1" || k.Kind != "Kustomization" {
		t.Errorf("kustomization.yaml is %s %s", k.APIVersion, k.Kind)
	}
	if len(k.Images) != 1 || k.Images[0].Name != "winch" {
		t.Errorf("kustomization.yaml images %+v: want the one image, winch", k.Images)
	}
}

// TestWorkloads: each Deployment's selector selects its pods, exactly one
// PodDisruptionBudget covers it, its probes reach the port the process
// serves them on, it asks for resources, and runs the winch image without
// a service account token.
func TestWorkloads(t *testing.T) {
	t.Parallel()
	_, m := load(t)
	for _, name := range []string{"winch-worker", "winch-sink", "winch-notifier", "winch-gateway"} {
		if m.deployments[name] == nil {
			t.Errorf("no Deployment %s", name)
		}
	}
	for name, d := range m.deployments {
		t.Run(name, func(t *testing.T) {
			sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
			if err != nil {
				t.Fatal(err)
			}
			podLabels := labels.Set(d.Spec.Template.Labels)
			if sel.Empty() || !sel.Matches(podLabels) {
				t.Errorf("selector %v does not select the pod labels %v", sel, podLabels)
			}
			var covering []string
			for _, p := range m.pdbs {
				ps, err := metav1.LabelSelectorAsSelector(p.Spec.Selector)
				if err != nil {
					t.Fatal(err)
				}
				if ps.Matches(podLabels) {
					covering = append(covering, p.Name)
				}
			}
			if len(covering) != 1 {
				t.Errorf("PodDisruptionBudgets covering it: %v, want one", covering)
			}
			spec := d.Spec.Template.Spec
			if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
				t.Error("automountServiceAccountToken is not false: winch calls no Kubernetes API")
			}
			if len(spec.Containers) != 1 {
				t.Fatalf("%d containers, want 1", len(spec.Containers))
			}
			c := spec.Containers[0]
			if c.Image != "winch" {
				t.Errorf("image %q, want winch (kustomization.yaml sets its tag)", c.Image)
			}
			for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
				if _, ok := c.Resources.Requests[r]; !ok {
					t.Errorf("no %s request", r)
				}
			}
			if _, ok := c.Resources.Limits[corev1.ResourceMemory]; !ok {
				t.Error("no memory limit")
			}
			if sc := c.SecurityContext; sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
				sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
				t.Error("the container may escalate privileges or keeps capabilities")
			}
			// The probes' port: where the process serves them.
			env := plainEnv(c)
			addrVar, live, ready := "WINCH_METRICS_ADDR", "/healthz", "/readyz"
			_, port, err := net.SplitHostPort(env[addrVar])
			if err != nil {
				t.Fatalf("%s=%q: %v", addrVar, env[addrVar], err)
			}
			for _, p := range []struct {
				name  string
				probe *corev1.Probe
				path  string
			}{{"liveness", c.LivenessProbe, live}, {"readiness", c.ReadinessProbe, ready}} {
				if p.probe == nil || p.probe.HTTPGet == nil {
					t.Errorf("no %s probe over HTTP", p.name)
					continue
				}
				if got := containerPort(t, c, p.probe.HTTPGet.Port.String()); fmt.Sprint(got) != port {
					t.Errorf("%s probe on port %d; %s serves on %s", p.name, got, addrVar, port)
				}
				if p.probe.HTTPGet.Path != p.path {
					t.Errorf("%s probe path %s, want %s", p.name, p.probe.HTTPGet.Path, p.path)
				}
			}
		})
	}
}

// TestWorkerDrainsBeforeItIsKilled: Kubernetes SIGKILLs a pod
// terminationGracePeriodSeconds after SIGTERM; the worker needs its drain
// timeout and a little more to hand back what did not finish.
func TestWorkerDrainsBeforeItIsKilled(t *testing.T) {
	t.Parallel()
	_, m := load(t)
	d := m.deployments["winch-worker"]
	if d == nil {
		t.Fatal("no Deployment winch-worker")
	}
	drain, err := time.ParseDuration(plainEnv(d.Spec.Template.Spec.Containers[0])["WINCH_DRAIN_TIMEOUT"])
	if err != nil {
		t.Fatalf("WINCH_DRAIN_TIMEOUT: %v (set it: the grace period is counted from it)", err)
	}
	grace := time.Duration(*d.Spec.Template.Spec.TerminationGracePeriodSeconds) * time.Second
	if grace < drain+5*time.Second || grace > drain+30*time.Second {
		t.Errorf("terminationGracePeriodSeconds %s for a drain timeout of %s: want the drain and 5-30 s more", grace, drain)
	}
}

// TestServicesSelectPods: each Service selects a Deployment's pods, on a
// port its container declares.
func TestServicesSelectPods(t *testing.T) {
	t.Parallel()
	_, m := load(t)
	for _, s := range m.services {
		var found bool
		for _, d := range m.deployments {
			if labels.SelectorFromSet(s.Spec.Selector).Matches(labels.Set(d.Spec.Template.Labels)) {
				found = true
				for _, p := range s.Spec.Ports {
					containerPort(t, d.Spec.Template.Spec.Containers[0], p.TargetPort.String())
				}
			}
		}
		if !found {
			t.Errorf("Service %s selects no Deployment's pods", s.Name)
		}
	}
}

// TestEnvironment: every variable a container gets is one winch reads for
// its command (its --help lists it, or cmd/winch reads it), or one that
// another variable of the container refers to as $(NAME) before it; every
// ConfigMap key referred to exists, and every Secret key is documented.
func TestEnvironment(t *testing.T) {
	t.Parallel()
	_, m := load(t)
	winch := buildWinch(t)
	getenv := osGetenvNames(t)
	// The Docker client library reads DOCKER_HOST.
	outside := []string{"DOCKER_HOST"}
	// The Secret the README tells users to create, and its keys.
	secretKeys := []string{"nats-worker-password", "nats-gateway-password", "nats-alice-password", "gateway-tokens", "notify-secret"}
	var containers []corev1.Container
	for _, d := range m.deployments {
		containers = append(containers, d.Spec.Template.Spec.Containers...)
	}
	for _, j := range m.jobs {
		containers = append(containers, j.Spec.Template.Spec.Containers...)
	}
	ref := regexp.MustCompile(`\$\(([A-Z0-9_]+)\)`)
	for _, c := range containers {
		read := helpEnv(t, winch, c.Args[0])
		var defined []string
		referred := map[string]bool{}
		for _, e := range c.Env {
			for _, r := range ref.FindAllStringSubmatch(e.Value, -1) {
				if !slices.Contains(defined, r[1]) {
					t.Errorf("%s: %s refers to $(%s), not defined before it", c.Name, e.Name, r[1])
				}
				referred[r[1]] = true
			}
			defined = append(defined, e.Name)
		}
		for _, e := range c.Env {
			if !read[e.Name] && !slices.Contains(getenv, e.Name) && !slices.Contains(outside, e.Name) && !referred[e.Name] {
				t.Errorf("%s (winch %s): winch does not read %s", c.Name, c.Args[0], e.Name)
			}
			if e.ValueFrom == nil {
				continue
			}
			if r := e.ValueFrom.ConfigMapKeyRef; r != nil {
				if cm := m.configMaps[r.Name]; cm == nil {
					t.Errorf("%s: %s from ConfigMap %s, which is not in the base", c.Name, e.Name, r.Name)
				} else if _, ok := cm.Data[r.Key]; !ok {
					t.Errorf("%s: %s from key %s, not in ConfigMap %s", c.Name, e.Name, r.Key, r.Name)
				}
			}
			if r := e.ValueFrom.SecretKeyRef; r != nil && (r.Name != "winch-secrets" || !slices.Contains(secretKeys, r.Key)) {
				t.Errorf("%s: %s from Secret %s key %s: want winch-secrets, one of %v", c.Name, e.Name, r.Name, r.Key, secretKeys)
			}
		}
	}
	// The ConfigMap's keys are variables winch reads.
	for _, cm := range m.configMaps {
		for k := range cm.Data {
			if !strings.HasPrefix(k, "WINCH_") {
				t.Errorf("ConfigMap %s: key %s is not a winch variable", cm.Name, k)
			}
		}
	}
}

// TestScaledObjectScalesWorkersOnTheirConsumers: KEDA's object names the
// worker Deployment and, for each queue the workers serve, each priority's
// consumer of the requests stream, as the broker names them.
func TestScaledObjectScalesWorkersOnTheirConsumers(t *testing.T) {
	t.Parallel()
	_, m := load(t)
	if len(m.scaled) != 1 {
		t.Fatalf("%d ScaledObjects, want 1", len(m.scaled))
	}
	so := m.scaled[0]
	d := m.deployments[so.Spec.ScaleTargetRef.Name]
	if d == nil || d.Name != "winch-worker" {
		t.Fatalf("scaleTargetRef %q, want the Deployment winch-worker", so.Spec.ScaleTargetRef.Name)
	}
	if lo, hi := so.Spec.MinReplicaCount, so.Spec.MaxReplicaCount; lo == nil || *lo < 1 || hi == nil || *hi < *lo {
		t.Errorf("replicas %v..%v: want at least one worker (a schedule's fire needs one) and a maximum", lo, hi)
	}
	var want []string
	for _, q := range strings.Split(plainEnv(d.Spec.Template.Spec.Containers[0])["WINCH_QUEUES"], ",") {
		for _, p := range broker.Priorities {
			want = append(want, broker.PriorityConsumerName(strings.TrimSpace(q), p))
		}
	}
	var got []string
	for _, tr := range so.Spec.Triggers {
		if tr.Type != "nats-jetstream" {
			t.Errorf("trigger type %q, want nats-jetstream", tr.Type)
		}
		for k := range tr.Metadata {
			if !slices.Contains(jetstreamScalerParams, k) {
				t.Errorf("trigger metadata %q: not a parameter of the nats-jetstream scaler (%v)", k, jetstreamScalerParams)
			}
		}
		md := tr.Metadata
		if md["stream"] != broker.JobsStream || md["account"] != "$G" || md["lagThreshold"] == "" {
			t.Errorf("trigger %v: want stream %s, account $G (users without accounts), a lagThreshold", md, broker.JobsStream)
		}
		if md["natsServerMonitoringEndpoint"] != "nats.winch.svc.cluster.local:8222" {
			t.Errorf("monitoring endpoint %q: want the NATS chart's service, port 8222", md["natsServerMonitoringEndpoint"])
		}
		got = append(got, md["consumer"])
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("triggers on consumers %v, want %v", got, want)
	}
}

// natsValues is the part of the official NATS Helm chart's values that
// ../nats-values.yaml sets, decoded strictly.
type natsValues struct {
	Config struct {
		Cluster struct {
			Enabled  bool `json:"enabled"`
			Replicas int  `json:"replicas"`
		} `json:"cluster"`
		JetStream struct {
			Enabled   bool `json:"enabled"`
			FileStore struct {
				PVC struct {
					Size string `json:"size"`
				} `json:"pvc"`
			} `json:"fileStore"`
		} `json:"jetstream"`
		Monitor struct {
			Enabled bool `json:"enabled"`
		} `json:"monitor"`
		Merge struct {
			MaxPayload    string `json:"max_payload"`
			Authorization struct {
				Users []natsUser `json:"users"`
			} `json:"authorization"`
		} `json:"merge"`
	} `json:"config"`
	Container struct {
		Env map[string]struct {
			ValueFrom corev1.EnvVarSource `json:"valueFrom"`
		} `json:"env"`
	} `json:"container"`
	Service struct {
		Ports struct {
			Monitor struct {
				Enabled bool `json:"enabled"`
			} `json:"monitor"`
		} `json:"ports"`
	} `json:"service"`
}

type natsUser struct {
	User        string `json:"user"`
	Password    string `json:"password"`
	Permissions struct {
		Publish   any `json:"publish"`
		Subscribe any `json:"subscribe"`
	} `json:"permissions"`
}

// TestNATSValues: the chart runs three clustered servers with JetStream,
// the monitoring port KEDA reads is on the service, and the users and
// permissions are nats.conf's, their passwords from winch-secrets.
func TestNATSValues(t *testing.T) {
	data, err := os.ReadFile("../nats-values.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var v natsValues
	if err := decodeStrict(data, &v); err != nil {
		t.Fatalf("nats-values.yaml: %v", err)
	}
	c := v.Config
	if !c.Cluster.Enabled || c.Cluster.Replicas != 3 || !c.JetStream.Enabled || !c.Monitor.Enabled || !v.Service.Ports.Monitor.Enabled {
		t.Errorf("want 3 clustered servers, JetStream, and monitoring on the service: %+v, service %+v", c, v.Service)
	}

	// nats.conf, as the server reads it. Its passwords are variables,
	// each set here to its own name in lower case, to be told apart.
	for _, name := range []string{"WINCH_NATS_WORKER_PASSWORD", "WINCH_NATS_ALICE_PASSWORD", "WINCH_NATS_GATEWAY_PASSWORD"} {
		t.Setenv(name, strings.ToLower(name))
	}
	ref, err := conf.ParseFile("../../nats.conf")
	if err != nil {
		t.Fatal(err)
	}
	refUsers := ref["authorization"].(map[string]any)["users"].([]any)
	byName := map[string]natsUser{}
	for _, u := range c.Merge.Authorization.Users {
		byName[u.User] = u
	}
	if len(byName) != len(refUsers) {
		t.Errorf("%d users, nats.conf has %d", len(byName), len(refUsers))
	}
	for _, r := range refUsers {
		r := r.(map[string]any)
		name := r["user"].(string)
		u, ok := byName[name]
		if !ok {
			t.Errorf("user %s of nats.conf is missing", name)
			continue
		}
		variable := strings.ToUpper(r["password"].(string))
		if want := "<< $" + variable + " >>"; u.Password != want {
			t.Errorf("user %s: password %q, want %q (the same variable as nats.conf)", name, u.Password, want)
		}
		perms := r["permissions"].(map[string]any)
		for _, dir := range []struct {
			name string
			got  any
		}{{"publish", u.Permissions.Publish}, {"subscribe", u.Permissions.Subscribe}} {
			if fmt.Sprint(normalize(dir.got)) != fmt.Sprint(normalize(perms[dir.name])) {
				t.Errorf("user %s %s: %v; nats.conf: %v", name, dir.name, normalize(dir.got), normalize(perms[dir.name]))
			}
		}
		// The variable comes from winch-secrets.
		e, ok := v.Container.Env[variable]
		if !ok || e.ValueFrom.SecretKeyRef == nil || e.ValueFrom.SecretKeyRef.Name != "winch-secrets" {
			t.Errorf("container env %s: want it from the Secret winch-secrets", variable)
		}
	}
}

// normalize makes a permission of nats.conf (parsed) and one of the values
// (JSON) comparable: lists of strings, maps of lists.
func normalize(v any) any {
	switch v := v.(type) {
	case []any:
		out := make([]string, len(v))
		for i, s := range v {
			out[i] = fmt.Sprint(s)
		}
		return out
	case map[string]any:
		out := map[string]any{}
		for k, x := range v {
			out[k] = normalize(x)
		}
		return out
	}
	return v
}

// plainEnv is a container's variables that have a value in the manifest.
func plainEnv(c corev1.Container) map[string]string {
	out := map[string]string{}
	for _, e := range c.Env {
		if e.ValueFrom == nil {
			out[e.Name] = e.Value
		}
	}
	return out
}

// containerPort resolves a probe's or service's port (a name or a number)
// to one the container declares.
func containerPort(t *testing.T, c corev1.Container, port string) int32 {
	t.Helper()
	for _, p := range c.Ports {
		if p.Name == port || fmt.Sprint(p.ContainerPort) == port {
			return p.ContainerPort
		}
	}
	t.Errorf("%s: port %s is not one the container declares", c.Name, port)
	return 0
}

// buildWinch builds cmd/winch for its --help.
func buildWinch(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "winch")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/winchhq/winch/cmd/winch").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// helpEnv is the variables `winch COMMAND --help` lists ($WINCH_...).
func helpEnv(t *testing.T, winch, command string) map[string]bool {
	t.Helper()
	out, err := exec.Command(winch, command, "--help").Output()
	if err != nil {
		t.Fatalf("winch %s --help: %v", command, err)
	}
	vars := map[string]bool{}
	for _, m := range regexp.MustCompile(`\(\$([A-Z0-9_]+)\)`).FindAllStringSubmatch(string(out), -1) {
		vars[m[1]] = true
	}
	if !vars["WINCH_NATS_URL"] {
		t.Fatalf("winch %s --help lists no $WINCH_NATS_URL: has the help's format changed?\n%s", command, out)
	}
	return vars
}

// osGetenvNames is the variables cmd/winch reads with os.Getenv.
func osGetenvNames(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob("../../cmd/winch/*.go")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	re := regexp.MustCompile(`os\.(?:Getenv|LookupEnv)\("([A-Z0-9_]+)"\)`)
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range re.FindAllStringSubmatch(string(data), -1) {
			names = append(names, m[1])
		}
	}
	return names
}
