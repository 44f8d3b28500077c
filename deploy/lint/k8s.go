package lint

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8syaml "k8s.io/apimachinery/pkg/util/yaml"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// NodeImage is the repository name the node image is known by in the manifests.
const NodeImage = "clusterkit-node"

// Manifests are the objects of a Kubernetes manifest file.
type Manifests struct {
	File                 string
	StatefulSets         []*appsv1.StatefulSet
	Services             []*corev1.Service
	PodDisruptionBudgets []*policyv1.PodDisruptionBudget
	NetworkPolicies      []*networkingv1.NetworkPolicy
}

// LoadManifests decodes every document of a manifest file strictly into its API type: an unknown
// or duplicate field (names are case sensitive) is an error, as is a kind this deployment does
// not use. A Secret is refused: the join token is created apart from the file (see
// deploy/README.md), never committed with it.
func LoadManifests(file string) (*Manifests, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	m := &Manifests{File: file}
	r := k8syaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(b)))
	for i := 1; ; i++ {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%s: document %d: %w", file, i, err)
		}
		if len(bytes.TrimSpace(stripComments(doc))) == 0 {
			continue
		}
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal(doc, &tm); err != nil {
			return nil, fmt.Errorf("%s: document %d: %w", file, i, err)
		}
		var obj any
		switch tm.APIVersion + " " + tm.Kind {
		case "apps/v1 StatefulSet":
			s := &appsv1.StatefulSet{}
			m.StatefulSets, obj = append(m.StatefulSets, s), s
		case "v1 Service":
			s := &corev1.Service{}
			m.Services, obj = append(m.Services, s), s
		case "policy/v1 PodDisruptionBudget":
			p := &policyv1.PodDisruptionBudget{}
			m.PodDisruptionBudgets, obj = append(m.PodDisruptionBudgets, p), p
		case "networking.k8s.io/v1 NetworkPolicy":
			p := &networkingv1.NetworkPolicy{}
			m.NetworkPolicies, obj = append(m.NetworkPolicies, p), p
		case "v1 Secret":
			return nil, fmt.Errorf("%s: document %d: a Secret in the file puts its value in the repository, the same for everyone who applies it: create it apart with kubectl create secret (see deploy/README.md)", file, i)
		default:
			return nil, fmt.Errorf("%s: document %d: kind %q of %q is not one this deployment uses", file, i, tm.Kind, tm.APIVersion)
		}
		if err := decodeStrict(doc, obj); err != nil {
			return nil, fmt.Errorf("%s: document %d (%s): %w", file, i, tm.Kind, err)
		}
	}
	if len(m.StatefulSets) == 0 {
		return nil, fmt.Errorf("%s: no StatefulSet", file)
	}
	return m, nil
}

// decodeStrict decodes a YAML document into obj as the API server does: field names match case
// sensitively, and an unknown or duplicate field is an error.
func decodeStrict(doc []byte, obj any) error {
	j, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return err
	}
	strictErrs, err := sigsjson.UnmarshalStrict(j, obj, sigsjson.DisallowDuplicateFields, sigsjson.DisallowUnknownFields)
	if err != nil {
		return err
	}
	return errors.Join(strictErrs...)
}

func stripComments(doc []byte) []byte {
	var out []byte
	for _, line := range bytes.Split(doc, []byte("\n")) {
		if t := bytes.TrimSpace(line); len(t) > 0 && t[0] != '#' {
			out = append(out, line...)
			out = append(out, '\n')
		}
	}
	return out
}

func namespaceOf(o metav1.ObjectMeta) string {
	if o.Namespace != "" {
		return o.Namespace
	}
	return "default"
}

// serviceHostnames are the DNS names of a Service, or of a pod under a headless Service, in a
// namespace: the fully qualified one first.
func serviceHostnames(name, ns string) []string {
	return []string{name + "." + ns + ".svc.cluster.local", name + "." + ns + ".svc", name + "." + ns, name}
}

// isNodeContainer reports whether a container runs the node image.
func isNodeContainer(c corev1.Container) bool {
	repo, _, _ := strings.Cut(c.Image, "@")
	if i := strings.LastIndexByte(repo, ':'); i > strings.LastIndexByte(repo, '/') {
		repo = repo[:i]
	}
	return path.Base(repo) == NodeImage
}

// PodUnits returns the pods of every StatefulSet (0 to replicas-1, one unit per container) and
// the Services as units, with the environment Kubernetes gives each container: fieldRef values
// of the pod, $(VAR) references expanded, and for node containers the image's ENV underneath;
// variables from a Secret are in the unit's Secrets, without a value.
func PodUnits(m *Manifests, img *Image) ([]Unit, error) {
	var units []Unit
	for _, sts := range m.StatefulSets {
		ns := namespaceOf(sts.ObjectMeta)
		replicas := 1
		if sts.Spec.Replicas != nil {
			replicas = int(*sts.Spec.Replicas)
		}
		pvcs := map[string]bool{}
		for _, t := range sts.Spec.VolumeClaimTemplates {
			pvcs[t.Name] = true
		}
		for i := range replicas {
			pod := fmt.Sprintf("%s-%d", sts.Name, i)
			for _, c := range sts.Spec.Template.Spec.Containers {
				u := Unit{Name: pod, Node: isNodeContainer(c), Env: map[string]string{}}
				if len(sts.Spec.Template.Spec.Containers) > 1 {
					u.Name += "/" + c.Name
				}
				u.Hostnames = serviceHostnames(pod+"."+sts.Spec.ServiceName, ns)
				if u.Node {
					for k, v := range img.Env {
						u.Env[k] = v
					}
				}
				env, secrets, helpers, err := containerEnv(c, pod, ns)
				if err != nil {
					return nil, fmt.Errorf("%s: %s: %w", m.File, u.Name, err)
				}
				for k, v := range env {
					u.Env[k] = v
				}
				u.Secrets, u.Helpers = secrets, helpers
				for _, a := range append(slices.Clone(c.Command), c.Args...) {
					u.Command = append(u.Command, expand(a, env))
				}
				for _, vm := range c.VolumeMounts {
					if pvcs[vm.Name] {
						u.Mounts = append(u.Mounts, vm.MountPath)
					}
				}
				if u.Node {
					if p, err := u.httpPort(); err == nil {
						u.Ports = []int{p}
					}
				} else {
					for _, p := range c.Ports {
						u.Ports = append(u.Ports, int(p.ContainerPort))
					}
				}
				units = append(units, u)
			}
		}
	}
	for _, svc := range m.Services {
		if svc.Spec.ClusterIP == corev1.ClusterIPNone {
			continue // its names are the pods'
		}
		u := Unit{Name: "service/" + svc.Name, Hostnames: serviceHostnames(svc.Name, namespaceOf(svc.ObjectMeta)), Env: map[string]string{}}
		for _, p := range svc.Spec.Ports {
			u.Ports = append(u.Ports, int(p.Port))
		}
		units = append(units, u)
	}
	return units, nil
}

// containerEnv returns the environment of a container of pod in namespace ns, as Kubernetes
// builds it, the variables that come from a Secret (with the Secret's name and key), and the
// variables that only feed $(VAR) references of others.
func containerEnv(c corev1.Container, pod, ns string) (env, secrets map[string]string, helpers []string, err error) {
	env = map[string]string{}
	referenced := map[string]bool{}
	for _, e := range c.Env {
		var v string
		switch {
		case e.ValueFrom == nil:
			for _, ref := range references(e.Value) {
				referenced[ref] = true
			}
			v = expand(e.Value, env)
		case e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.name":
			v = pod
		case e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.namespace":
			v = ns
		case e.ValueFrom.SecretKeyRef != nil:
			if secrets == nil {
				secrets = map[string]string{}
			}
			secrets[e.Name] = "secret " + e.ValueFrom.SecretKeyRef.Name + " key " + e.ValueFrom.SecretKeyRef.Key
			continue
		default:
			return nil, nil, nil, fmt.Errorf("env %s: only values, secretKeyRef and fieldRef metadata.name or metadata.namespace are understood here", e.Name)
		}
		env[e.Name] = v
	}
	for _, a := range append(slices.Clone(c.Command), c.Args...) {
		for _, ref := range references(a) {
			referenced[ref] = true
		}
	}
	for name := range referenced {
		if _, ok := env[name]; ok {
			helpers = append(helpers, name)
		}
	}
	slices.Sort(helpers)
	return env, secrets, helpers, nil
}

// references lists the $(VAR) references in s.
func references(s string) []string {
	var out []string
	for {
		i := strings.Index(s, "$(")
		if i < 0 {
			return out
		}
		if i > 0 && s[i-1] == '$' {
			s = s[i+2:]
			continue
		}
		end := strings.IndexByte(s[i:], ')')
		if end < 0 {
			return out
		}
		out = append(out, s[i+2:i+end])
		s = s[i+end+1:]
	}
}

// expand replaces $(VAR) with the value of a variable defined before, as Kubernetes does: a
// reference to an undefined variable stays as it is, and $$ stands for $.
func expand(s string, vars map[string]string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 >= len(s) {
			b.WriteByte(s[i])
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			i++
		case '(':
			end := strings.IndexByte(s[i:], ')')
			if end < 0 {
				b.WriteString(s[i:])
				return b.String()
			}
			name := s[i+2 : i+end]
			if v, ok := vars[name]; ok {
				b.WriteString(v)
			} else {
				b.WriteString(s[i : i+end+1])
			}
			i += end
		default:
			b.WriteByte('$')
		}
	}
	return b.String()
}

// shutdownMargin is what leaving takes after a drain at most: clusterkit's ShutdownTimeout.
const shutdownMargin = 10 * time.Second

// CheckManifests checks Kubernetes manifests: their units form a cluster (CheckUnits), each
// StatefulSet's serviceName is a headless Service selecting its pods, node pods advertise
// <pod>.<headless service>.<namespace>.svc.cluster.local at their HTTP port, keep DATA_DIR on a
// volume claim, probe GET /health over the scheme the node serves, take the join token from a
// Secret that must exist, run as a non-root user and get enough time to drain; on the embedded
// etcd a NetworkPolicy admits only the StatefulSet's pods to the etcd ports.
func CheckManifests(m *Manifests, img *Image, node *Node) []error {
	units, err := PodUnits(m, img)
	if err != nil {
		return []error{err}
	}
	errs := CheckUnits(m.File, units, node)
	fail := func(what, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s: %s", m.File, what, fmt.Sprintf(format, args...)))
	}
	services := map[string]*corev1.Service{}
	for _, s := range m.Services {
		services[s.Name] = s
	}
	clientService := false
	for _, sts := range m.StatefulSets {
		what := "StatefulSet " + sts.Name
		tmpl := sts.Spec.Template
		if sts.Spec.Selector == nil || !selects(sts.Spec.Selector.MatchLabels, tmpl.Labels) {
			fail(what, "selector does not match the pod template's labels %v", tmpl.Labels)
		}
		headless := services[sts.Spec.ServiceName]
		switch {
		case headless == nil:
			fail(what, "serviceName %q names no Service of this file", sts.Spec.ServiceName)
		case headless.Spec.ClusterIP != corev1.ClusterIPNone:
			fail(what, "serviceName %q is not a headless Service (clusterIP: None): pods get no DNS names", sts.Spec.ServiceName)
		case !selects(headless.Spec.Selector, tmpl.Labels):
			fail(what, "the headless Service %s does not select its pods", headless.Name)
		}
		var nodeContainer *corev1.Container
		for i, c := range tmpl.Spec.Containers {
			if msg := unpinned(c.Image); msg != "" {
				fail(what, "container %s: image %s: %s", c.Name, c.Image, msg)
			}
			if isNodeContainer(c) {
				nodeContainer = &tmpl.Spec.Containers[i]
			}
		}
		if nodeContainer == nil {
			continue
		}
		for _, s := range m.Services {
			if s.Spec.ClusterIP != corev1.ClusterIPNone && selects(s.Spec.Selector, tmpl.Labels) {
				clientService = true
			}
		}
		errs = append(errs, checkNodePods(m.File, sts, *nodeContainer, headless, units, img, node)...)
		errs = append(errs, checkNetworkPolicies(m, sts, *nodeContainer, units, node)...)
	}
	if !clientService {
		fail("Services", "no Service (other than the headless one) selects the nodes: clients have no stable address")
	}
	for _, s := range m.Services {
		if s.Spec.Type != corev1.ServiceTypeNodePort && s.Spec.Type != corev1.ServiceTypeLoadBalancer {
			continue
		}
		for _, p := range s.Spec.Ports {
			if p.TargetPort.String() == "etcd-client" || p.TargetPort.String() == "etcd-peer" {
				fail("Service "+s.Name, "exposes the embedded etcd (%s) outside the cluster: only the nodes need it", p.TargetPort.String())
			}
		}
	}
	return errs
}

// checkNodePods checks a StatefulSet of nodes.
func checkNodePods(file string, sts *appsv1.StatefulSet, c corev1.Container, headless *corev1.Service, units []Unit, img *Image, node *Node) []error {
	var errs []error
	what := "StatefulSet " + sts.Name
	fail := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s: %s", file, what, fmt.Sprintf(format, args...)))
	}
	spec := sts.Spec.Template.Spec
	var pods []Unit
	for _, u := range units {
		if u.Node && strings.HasPrefix(u.Name, sts.Name+"-") {
			pods = append(pods, u)
		}
	}
	if len(pods) == 0 {
		fail("no replicas")
		return errs
	}
	nodeIDFromPod := slices.ContainsFunc(c.Env, func(e corev1.EnvVar) bool {
		return e.Name == "NODE_ID" && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.name"
	})
	if !nodeIDFromPod {
		fail("NODE_ID must come from the pod's name (fieldRef metadata.name): every replica needs its own, stable across restarts")
	}
	port, err := pods[0].httpPort()
	if err != nil {
		return errs // reported by CheckUnits
	}
	embedded := false
	for _, u := range pods {
		want := fmt.Sprintf("%s:%d", u.Hostnames[0], port)
		if got := u.Env["ADVERTISE_ADDR"]; got != want {
			fail("pod %s advertises %q, want %q (<pod>.<serviceName>.<namespace>.svc.cluster.local:<HTTP port>)", u.Name, got, want)
		}
		embedded = embedded || u.embedded()
	}
	if embedded && headless != nil && !headless.Spec.PublishNotReadyAddresses {
		fail("the headless Service %s must set publishNotReadyAddresses: the bootstrap pod reaches its own embedded etcd, and the others it, by DNS name before they are ready", headless.Name)
	}
	httpNamed := false
	for _, p := range c.Ports {
		if p.Name == "http" {
			httpNamed = true
			if int(p.ContainerPort) != port {
				fail("container port http is %d, the node's HTTP port %d", p.ContainerPort, port)
			}
		}
	}
	if !httpNamed {
		fail("no container port named http")
	}
	for _, e := range c.Env {
		if ref := e.ValueFrom; e.Name == TokenVar && ref != nil && ref.SecretKeyRef != nil && ref.SecretKeyRef.Optional != nil && *ref.SecretKeyRef.Optional {
			fail("%s: secretKeyRef is optional: without the Secret the pod would start without a token, insecure", TokenVar)
		}
	}
	scheme := corev1.URISchemeHTTP
	if pods[0].servesHTTPS() {
		scheme = corev1.URISchemeHTTPS
	}
	probes := map[string]*corev1.Probe{"readinessProbe": c.ReadinessProbe, "livenessProbe": c.LivenessProbe, "startupProbe": c.StartupProbe}
	for _, name := range slices.Sorted(maps.Keys(probes)) {
		p := probes[name]
		if p == nil {
			if name != "startupProbe" {
				fail("no %s", name)
			}
			continue
		}
		g := p.HTTPGet
		if g == nil || g.Path != "/health" || !(g.Port.String() == "http" || g.Port.IntValue() == port) {
			fail("%s: want httpGet /health on port http", name)
			continue
		}
		got := g.Scheme
		if got == "" {
			got = corev1.URISchemeHTTP
		}
		switch {
		case got != scheme && scheme == corev1.URISchemeHTTPS:
			fail("%s: scheme %s, but the node serves https only (%s): set scheme: HTTPS", name, got, TokenVar)
		case got != scheme:
			fail("%s: scheme %s, but the node serves plain HTTP", name, got)
		}
	}
	grace := 30 * time.Second // Kubernetes' default
	if spec.TerminationGracePeriodSeconds != nil {
		grace = time.Duration(*spec.TerminationGracePeriodSeconds) * time.Second
	}
	var preStop time.Duration
	if c.Lifecycle != nil && c.Lifecycle.PreStop != nil {
		switch h := c.Lifecycle.PreStop; {
		case h.Sleep != nil:
			preStop = time.Duration(h.Sleep.Seconds) * time.Second
		case h.Exec != nil:
			fail("preStop exec: the image has no shell or sleep (use preStop sleep)")
		}
	}
	need := preStop + shutdownMargin
	if pods[0].Env["DRAIN_ON_SIGTERM"] == "true" {
		need += node.DrainTimeout
	}
	if grace < need {
		fail("terminationGracePeriodSeconds %v is less than preStop %v + drain and leave %v: the node would be killed before it is done", grace, preStop, need-preStop)
	}
	uid, _ := strconv.Atoi(strings.Split(img.User, ":")[0])
	sc := spec.SecurityContext
	csc := c.SecurityContext
	nonRoot := sc != nil && sc.RunAsNonRoot != nil && *sc.RunAsNonRoot || csc != nil && csc.RunAsNonRoot != nil && *csc.RunAsNonRoot
	if !nonRoot {
		fail("runAsNonRoot is not set")
	}
	if sc != nil && sc.RunAsUser != nil && int(*sc.RunAsUser) != uid {
		fail("runAsUser %d is not the image's user %d", *sc.RunAsUser, uid)
	}
	if sc == nil || sc.FSGroup == nil {
		fail("no fsGroup: the volume claim would not be writable by the image's user %d", uid)
	}
	return errs
}

// selects reports whether a non-empty selector matches labels.
func selects(selector, labels map[string]string) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}
