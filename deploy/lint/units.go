package lint

import (
	"fmt"
	"maps"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"
)

// Unit is one container a deployment file runs, as the other containers see it: a compose
// service or a StatefulSet pod, or a Service that names other units.
type Unit struct {
	Name string `json:"name"`
	// Node is true for a container of the node image.
	Node bool `json:"node"`
	// Hostnames are the names other containers reach the unit at.
	Hostnames []string `json:"hostnames"`
	// Ports are the ports the unit serves; for a node, its HTTP port.
	Ports []int `json:"ports"`
	// Env is the container's environment: the image's ENV overlaid by the file's settings,
	// with Kubernetes $(VAR) references expanded.
	Env map[string]string `json:"env"`
	// Helpers are variables of Env that only feed $(VAR) references of other variables.
	Helpers []string `json:"helpers,omitempty"`
	// Secrets are variables whose value the file does not hold, each with where the value
	// comes from: "env_file <path>" (compose) or "secret <name> key <key>" (Kubernetes). They
	// are not in Env.
	Secrets map[string]string `json:"secrets,omitempty"`
	// Command is the container's command line when the file sets one, with $(VAR) expanded.
	Command []string `json:"command,omitempty"`
	// Mounts are the container paths that persistent volumes are mounted at.
	Mounts []string `json:"mounts"`
	// DependsOn are the units started before this one (compose's depends_on).
	DependsOn []string `json:"depends_on,omitempty"`
}

// httpPort is the port a node's HTTP API listens on, from HTTP_PORT or HTTP_ADDR.
func (u *Unit) httpPort() (int, error) {
	if a := u.Env["HTTP_ADDR"]; a != "" {
		if u.Env["HTTP_PORT"] != "" {
			return 0, fmt.Errorf("both HTTP_PORT and HTTP_ADDR are set (the node refuses that)")
		}
		_, p, err := splitHostPort(a)
		return p, err
	}
	p, err := strconv.Atoi(u.Env["HTTP_PORT"])
	if err != nil || p <= 0 || p > 65535 {
		return 0, fmt.Errorf("HTTP_PORT %q is not a port number", u.Env["HTTP_PORT"])
	}
	return p, nil
}

// TokenVar is the node's secure-mode setting: the cluster's join token.
const TokenVar = "JOIN_TOKEN"

// apiTLSVars are the settings that serve the API over https with given certificates; the node
// refuses them with a join token, whose mode makes its own.
var apiTLSVars = []string{"TLS_CERT_FILE", "TLS_KEY_FILE", "TLS_CLIENT_CA_FILE", "TLS_CA_FILE"}

// servesHTTPS reports whether a node serves its API over https only: in secure mode, or with a
// certificate of its own.
func (u *Unit) servesHTTPS() bool {
	return u.Secrets[TokenVar] != "" || u.Env[TokenVar] != "" || u.Env["TLS_CERT_FILE"] != ""
}

// embedded reports whether a node starts the embedded etcd: it has no etcd endpoints and joins
// nobody but itself.
func (u *Unit) embedded() bool {
	return u.Env["ETCD_ENDPOINTS"] == "" && (u.Env["JOIN_ADDR"] == "" || sameHostPort(u.Env["JOIN_ADDR"], u.Env["ADVERTISE_ADDR"]))
}

// sameHostPort compares host:port addresses as the node does to recognise itself in JOIN_ADDR:
// hosts without case and trailing dot. (A container's own name is never a loopback address, so
// the node's loopback rule does not matter here.)
func sameHostPort(a, b string) bool {
	ha, pa, errA := splitHostPort(a)
	hb, pb, errB := splitHostPort(b)
	return errA == nil && errB == nil && pa == pb && strings.EqualFold(strings.TrimSuffix(ha, "."), strings.TrimSuffix(hb, "."))
}

// CheckUnits checks that the units of one file form a cluster: every variable is one the node
// reads, node IDs are unique, advertise addresses name the unit itself, JOIN_ADDR names a node
// that starts the embedded etcd, etcd endpoints name a unit serving that port, at most one node
// bootstraps, DATA_DIR is on a persistent volume, and the nodes on the embedded etcd run in
// secure mode with one join token that comes from a secret (see checkToken).
func CheckUnits(file string, units []Unit, node *Node) []error {
	var errs []error
	fail := func(u *Unit, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s: %s", file, u.Name, fmt.Sprintf(format, args...)))
	}
	byHost := map[string]*Unit{}
	for i := range units {
		for _, h := range units[i].Hostnames {
			byHost[strings.ToLower(h)] = &units[i]
		}
	}
	ids := map[string]string{}
	var bootstraps []string
	nodes := 0
	for i := range units {
		u := &units[i]
		if !u.Node {
			continue
		}
		nodes++
		for _, k := range slices.Sorted(maps.Keys(u.Env)) {
			if !node.Settings[k] && !slices.Contains(u.Helpers, k) {
				fail(u, "%s is not a setting of %s (a typo?)", k, NodeCommand)
			}
		}
		for _, k := range slices.Sorted(maps.Keys(u.Secrets)) {
			if !node.Settings[k] {
				fail(u, "%s (from %s) is not a setting of %s (a typo?)", k, u.Secrets[k], NodeCommand)
			}
		}
		errs = append(errs, checkToken(file, u)...)
		id := u.Env["NODE_ID"]
		switch {
		case id == "":
			fail(u, "NODE_ID is not set")
		case ids[id] != "":
			fail(u, "NODE_ID %q is also the ID of %s", id, ids[id])
		default:
			ids[id] = u.Name
		}
		port, err := u.httpPort()
		if err != nil {
			fail(u, "%v", err)
			continue
		}
		adv := u.Env["ADVERTISE_ADDR"]
		if adv == "" {
			fail(u, "ADVERTISE_ADDR is not set: the node would advertise 127.0.0.1, which other containers cannot reach")
		} else if host, p, err := splitHostPort(adv); err != nil {
			fail(u, "ADVERTISE_ADDR: %v", err)
		} else if byHost[strings.ToLower(strings.TrimSuffix(host, "."))] != u || p != port {
			fail(u, "ADVERTISE_ADDR %s does not name this unit (%v) at its HTTP port %d", adv, u.Hostnames, port)
		}
		join, endpoints := u.Env["JOIN_ADDR"], u.Env["ETCD_ENDPOINTS"]
		if join != "" && endpoints != "" {
			fail(u, "both JOIN_ADDR and ETCD_ENDPOINTS are set (the node refuses that)")
		}
		if join != "" {
			errs = append(errs, checkJoin(file, u, join, byHost)...)
		}
		for _, ep := range strings.Split(endpoints, ",") {
			if ep = strings.TrimSpace(ep); ep != "" {
				if err := checkEndpoint(ep, byHost, node); err != nil {
					fail(u, "ETCD_ENDPOINTS: %v", err)
				}
			}
		}
		if u.embedded() {
			bootstraps = append(bootstraps, u.Name)
		}
		if dir := u.Env["DATA_DIR"]; dir == "" {
			fail(u, "DATA_DIR is not set: the node's data would be lost with the container")
		} else if !slices.Contains(u.Mounts, dir) {
			fail(u, "DATA_DIR %s is not on a persistent volume (mounts: %v)", dir, u.Mounts)
		}
	}
	errs = append(errs, checkEtcdUnits(file, units)...)
	tokens := map[string][]string{} // where the join token comes from -> the nodes that take it there
	for _, u := range units {
		if src := u.Secrets[TokenVar]; u.Node && src != "" {
			tokens[src] = append(tokens[src], u.Name)
		}
	}
	if len(tokens) > 1 {
		errs = append(errs, fmt.Errorf("%s: the nodes take %s from different secrets %v: a node is refused by a cluster whose token it does not have", file, TokenVar, tokens))
	}
	if nodes == 0 {
		errs = append(errs, fmt.Errorf("%s: no node of the image runs here", file))
	}
	if len(bootstraps) > 1 {
		errs = append(errs, fmt.Errorf("%s: %v each start an embedded etcd: they would form separate clusters", file, bootstraps))
	}
	return errs
}

// checkToken checks a node's join token. On the embedded etcd the node must run in secure mode
// (without it, its etcd ports and GET /cluster/join are open to anyone who reaches them), with
// the token from a secret: a value written in the file is known to whoever reads the file or the
// repository, and would be the same in every cluster made from it. Beside ETCD_ENDPOINTS or the
// TLS_* settings the node refuses a token.
func checkToken(file string, u *Unit) []error {
	var errs []error
	fail := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s: %s", file, u.Name, fmt.Sprintf(format, args...)))
	}
	_, literal := u.Env[TokenVar]
	if literal {
		fail("%s is set in the file: a token written there is known to whoever reads the file, and the same in every cluster made from it; take it from a secret (compose: the env_file; Kubernetes: valueFrom.secretKeyRef)", TokenVar)
	}
	if !literal && u.Secrets[TokenVar] == "" {
		if u.Env["ETCD_ENDPOINTS"] == "" {
			fail("no %s: on the embedded etcd the node would run insecure, its etcd ports and join API open to anyone who reaches them; take the token from a secret", TokenVar)
		}
		return errs
	}
	if u.Env["ETCD_ENDPOINTS"] != "" {
		fail("%s with ETCD_ENDPOINTS: the node refuses that (secure mode is for the embedded etcd; secure an external etcd with the ETCD_* TLS settings)", TokenVar)
	}
	for _, k := range apiTLSVars {
		if u.Env[k] != "" {
			fail("%s with %s: the node refuses that (secure mode serves the API with the cluster CA's certificates)", TokenVar, k)
		}
	}
	return errs
}

// checkJoin checks that JOIN_ADDR names a node that bootstraps, at its HTTP port.
func checkJoin(file string, u *Unit, join string, byHost map[string]*Unit) []error {
	fail := func(format string, args ...any) []error {
		return []error{fmt.Errorf("%s: %s: JOIN_ADDR %s %s", file, u.Name, join, fmt.Sprintf(format, args...))}
	}
	host, p, err := splitHostPort(join)
	if err != nil {
		return fail("is invalid: %v", err)
	}
	t := byHost[strings.ToLower(strings.TrimSuffix(host, "."))]
	switch {
	case t == nil:
		return fail("names no unit of this file")
	case !t.Node:
		return fail("names %s, which is not a node", t.Name)
	}
	if tp, err := t.httpPort(); err != nil || tp != p {
		return fail("is not the HTTP port of %s", t.Name)
	}
	if t == u {
		if !sameHostPort(join, u.Env["ADVERTISE_ADDR"]) {
			return fail("names this unit under another name than ADVERTISE_ADDR %s: the node would not recognise itself and wait for itself", u.Env["ADVERTISE_ADDR"])
		}
		return nil
	}
	if !t.embedded() {
		return fail("names %s, which joins another node itself: join the node that starts the embedded etcd", t.Name)
	}
	return nil
}

// checkEndpoint checks that an etcd endpoint names a unit that serves its port.
func checkEndpoint(ep string, byHost map[string]*Unit, node *Node) error {
	parsed, err := url.Parse(ep)
	if err != nil || parsed.Scheme != "http" && parsed.Scheme != "https" || parsed.Port() == "" {
		return fmt.Errorf("%q is not an http(s)://host:port URL", ep)
	}
	t := byHost[strings.ToLower(strings.TrimSuffix(parsed.Hostname(), "."))]
	if t == nil {
		return fmt.Errorf("%s names no unit of this file", ep)
	}
	p, _ := strconv.Atoi(parsed.Port())
	ports := t.Ports
	if t.Node {
		hp, _ := t.httpPort()
		client, _ := node.EtcdPorts(hp)
		ports = []int{client}
	}
	if !slices.Contains(ports, p) {
		return fmt.Errorf("%s: %s serves no etcd on port %d (ports %v)", ep, t.Name, p, ports)
	}
	return nil
}

// checkEtcdUnits checks that the units that run etcd advertise the client URLs the nodes use
// and keep their data on a volume.
func checkEtcdUnits(file string, units []Unit) []error {
	var errs []error
	for _, u := range units {
		if u.Node || !slices.ContainsFunc(u.Command, func(a string) bool { return path.Base(a) == "etcd" }) {
			continue
		}
		advertised := map[string]bool{}
		for _, a := range etcdFlagURLs(u.Command, "--advertise-client-urls") {
			advertised[a.String()] = true
		}
		for _, n := range units {
			for _, ep := range strings.Split(n.Env["ETCD_ENDPOINTS"], ",") {
				ep = strings.TrimSpace(ep)
				parsed, err := url.Parse(ep)
				if ep == "" || err != nil || unitByHost(units, parsed.Hostname()) != u.Name {
					continue
				}
				if !advertised[ep] {
					errs = append(errs, fmt.Errorf("%s: %s: ETCD_ENDPOINTS %s is not among %s's --advertise-client-urls", file, n.Name, ep, u.Name))
				}
			}
		}
		var dataDir string
		for i, a := range u.Command {
			if v, ok := strings.CutPrefix(a, "--data-dir="); ok {
				dataDir = v
			} else if a == "--data-dir" && i+1 < len(u.Command) {
				dataDir = u.Command[i+1]
			}
		}
		onVolume := slices.ContainsFunc(u.Mounts, func(m string) bool {
			return dataDir == m || strings.HasPrefix(dataDir, strings.TrimSuffix(m, "/")+"/")
		})
		if dataDir == "" || !onVolume {
			errs = append(errs, fmt.Errorf("%s: %s: etcd --data-dir %q is not on a volume (mounts %v)", file, u.Name, dataDir, u.Mounts))
		}
	}
	return errs
}
