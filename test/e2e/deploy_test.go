package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/clusterkit-go/clusterkit/internal/etcdtest"
	"github.com/clusterkit-go/clusterkit/internal/proctest"
	"github.com/clusterkit-go/clusterkit/internal/wiretest"
	"github.com/clusterkit-go/clusterkit/pkg/clusterkit"
)

// repoRoot is the repository root, seen from this package's directory.
const repoRoot = "../.."

// The deployment files run as processes: the environment each container of docker-compose.yml,
// of its external-etcd variant and of the Kubernetes StatefulSets' pods 0..2 gets (read by
// deploy/lint's loader, the one CI checks the files with) is given to a clusterkit-node process
// per container, the containers' host names mapped to 127.0.0.1 with distinct ports. The join
// token the embedded-etcd files take from a secret (compose's env file, a Kubernetes Secret) is
// one that clusterkit-node -new-token prints, as the files' instructions say to make it. The
// nodes must form one cluster (all of them in every node's GET /cluster, one leader, a full map),
// answer the image's health probe, and stop cleanly on SIGTERM; in secure mode they are asked
// over https with the cluster's CA pinned, and the join API must refuse a request without the
// token.
func TestDeploymentFiles(t *testing.T) {
	bin := buildNodeBinary(t)
	files := []string{
		"docker-compose.yml",
		"docker-compose.external-etcd.yml",
		"deploy/k8s/clusterkit.yaml",
		"deploy/k8s/clusterkit-external-etcd.yaml",
	}
	// The files are independent clusters: they run side by side, on ports of their own.
	for _, f := range files {
		t.Run(f, func(t *testing.T) {
			t.Parallel()
			runDeployment(t, bin, f, deploymentUnits(t, f))
		})
	}
}

// deployUnit is one container of a deployment file, as deploy/lint's deployenv prints it.
type deployUnit struct {
	Name      string            `json:"name"`
	Node      bool              `json:"node"`
	Hostnames []string          `json:"hostnames"`
	Ports     []int             `json:"ports"`
	Env       map[string]string `json:"env"`
	Helpers   []string          `json:"helpers"`
	// Secrets are variables the file takes from a secret, with its source; no value.
	Secrets   map[string]string `json:"secrets"`
	DependsOn []string          `json:"depends_on"`
}

// builtDeployEnv is deploy/lint's deployenv. deploy/lint is a module of its own: its parsers
// stay out of the main module's dependencies.
var builtDeployEnv builtTool

// deploymentUnits returns the containers of a deployment file (relative to the repository root)
// with their environments.
func deploymentUnits(t *testing.T, file string) []deployUnit {
	t.Helper()
	deployenv := builtDeployEnv.get(t, filepath.Join(repoRoot, "deploy", "lint"), "./cmd/deployenv", "deployenv")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, deployenv, "-root", repoRoot, filepath.Join(repoRoot, file)).Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("deployenv %s: %v\n%s", file, err, stderr)
	}
	var units []deployUnit
	if err := json.Unmarshal(out, &units); err != nil {
		t.Fatalf("deployenv %s: %v", file, err)
	}
	return units
}

// etcdClientPort is the port etcd serves clients on in the deployment files.
const etcdClientPort = 2379

// hostPort matches host:port words in environment values, URLs included.
var hostPort = regexp.MustCompile(`[A-Za-z0-9][A-Za-z0-9.-]*:[0-9]+`)

// runDeployment runs the node containers of one file as processes and checks the cluster they
// form, then stops them.
func runDeployment(t *testing.T, bin, file string, units []deployUnit) {
	c := newFailoverCluster(t, bin, "")
	// addrs maps every host:port a container is reached at to the 127.0.0.1 address that
	// stands for it here.
	addrs := map[string]string{}
	var nodes []deployUnit
	local := map[string]int{} // node unit -> its HTTP port here
	needEtcd := false
	for _, u := range units {
		if !u.Node {
			continue
		}
		nodes = append(nodes, u)
		port := proctest.FreeNodePort(t)
		local[u.Name] = port
		for _, h := range u.Hostnames {
			for _, p := range u.Ports {
				addrs[net.JoinHostPort(h, strconv.Itoa(p))] = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
			}
		}
		needEtcd = needEtcd || u.Env["ETCD_ENDPOINTS"] != ""
	}
	if len(nodes) != 3 {
		t.Fatalf("%s runs %d nodes, want 3", file, len(nodes))
	}
	if needEtcd {
		// Every etcd container of the file is this one etcd process.
		etcd := startPlainEtcdProcess(t)
		for _, u := range units {
			if !u.Node && slices.Contains(u.Ports, etcdClientPort) {
				for _, h := range u.Hostnames {
					addrs[net.JoinHostPort(h, strconv.Itoa(etcdClientPort))] = strings.TrimPrefix(etcd.URL, "http://")
				}
			}
		}
	}
	known := map[string]bool{}
	for _, u := range units {
		for _, h := range u.Hostnames {
			known[strings.ToLower(h)] = true
		}
	}

	// One value per secret the file names, made as an operator makes it.
	secretValues := map[string]string{}
	for _, u := range nodes {
		for _, src := range u.Secrets {
			if secretValues[src] == "" {
				secretValues[src] = newJoinToken(t, bin)
			}
		}
	}

	partitions, replication := clusterkit.DefaultPartitionCount, clusterkit.DefaultReplicationFactor
	var bootstrap, joiners []*nodeProcess
	// configure sets a node's address and environment from the current addresses: a node moved
	// to new ports (see nodeProcess.move) changes the environment of those started after it.
	configure := map[*nodeProcess]func(*testing.T) map[string]string{}
	for _, u := range nodes {
		n := newNodeProcess(t, bin, u.Env["NODE_ID"], "", nil)
		dataDir := filepath.Join(c.dir, u.Name)
		configure[n] = func(t *testing.T) map[string]string {
			env, err := localEnv(u, local[u.Name], dataDir, addrs, known)
			if err != nil {
				t.Fatalf("%s: %s: %v", file, u.Name, err)
			}
			for k, src := range u.Secrets {
				env[k] = secretValues[src]
			}
			n.addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(local[u.Name]))
			n.Env = nil
			for _, k := range slices.Sorted(maps.Keys(env)) {
				n.Env = append(n.Env, k+"="+env[k])
			}
			return env
		}
		env := configure[n](t)
		n.embedded = env["ETCD_ENDPOINTS"] == ""
		n.move = func(t *testing.T, first bool) {
			port := proctest.FreeNodePort(t)
			local[u.Name] = port
			for _, h := range u.Hostnames {
				for _, p := range u.Ports {
					addrs[net.JoinHostPort(h, strconv.Itoa(p))] = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
				}
			}
			if first {
				dataDir = t.TempDir()
			}
			configure[n](t)
		}
		if v := env["PARTITION_COUNT"]; v != "" {
			partitions, _ = strconv.Atoi(v)
		}
		if v := env["REPLICATION_FACTOR"]; v != "" {
			replication, _ = strconv.Atoi(v)
		}
		c.nodes = append(c.nodes, n)
		if env["JOIN_ADDR"] == "" || env["JOIN_ADDR"] == env["ADVERTISE_ADDR"] {
			bootstrap = append(bootstrap, n)
		} else {
			joiners = append(joiners, n)
		}
	}
	c.partitions, c.replication = partitions, replication

	// As compose's depends_on and the StatefulSet's ordered start do: what the others join
	// first, healthy, then the rest together.
	began := time.Now()
	var readyAfter []time.Duration
	token := envValue(c.nodes[0].Env, "JOIN_TOKEN")
	for _, group := range [][]*nodeProcess{bootstrap, joiners} {
		for _, n := range group {
			configure[n](t)
			if token != "" {
				t.Logf("%s as %s: %s", n.id, n.addr, strings.ReplaceAll(strings.Join(n.Env, " "), token, "<token>"))
			} else {
				t.Logf("%s as %s: %s", n.id, n.addr, strings.Join(n.Env, " "))
			}
			n.Start(t)
		}
		for _, n := range group {
			n.waitReady(t)
		}
		if len(group) > 0 {
			readyAfter = append(readyAfter, time.Since(began).Round(time.Millisecond))
		}
	}
	scheme := "http"
	if token != "" {
		// Secure mode: the API is https only, its certificates signed by the CA the bootstrap
		// node created in its DATA_DIR.
		if len(bootstrap) != 1 {
			t.Fatalf("%s: %d nodes bootstrap in secure mode, want 1", file, len(bootstrap))
		}
		scheme = "https"
		c.httpc.Transport = pinnedHTTPS(t, filepath.Join(envValue(bootstrap[0].Env, "DATA_DIR"), "pki", "ca.crt"))
	}
	// The embedded etcd members are where the image's EXPOSE and the Services put them: each
	// at its node's HTTP port + 10000, the bootstrap node's among them; over TLS in secure mode.
	memberURL := func(n *nodeProcess) string {
		_, port, _ := net.SplitHostPort(n.addr)
		p, _ := strconv.Atoi(port)
		return fmt.Sprintf("%s://127.0.0.1:%d", scheme, p+10000)
	}
	for _, n := range bootstrap {
		if envValue(n.Env, "ETCD_ENDPOINTS") != "" {
			continue
		}
		if token != "" {
			if code := joinStatus(t, c.httpc, n.addr, ""); code != http.StatusUnauthorized {
				t.Errorf("%s: GET /cluster/join without the token: %d, want 401", n.id, code)
			}
		}
		var join wiretest.Join
		if err := fetchJoin(c.httpc, n.addr, token, &join); err != nil {
			t.Fatal(err)
		}
		if want := memberURL(n); !slices.Contains(join.EtcdEndpoints, want) {
			t.Errorf("%s: embedded etcd at %v, want %s (HTTP port + 10000) among them", n.id, join.EtcdEndpoints, want)
		}
		for _, ep := range join.EtcdEndpoints {
			if !slices.ContainsFunc(c.nodes, func(m *nodeProcess) bool { return memberURL(m) == ep }) {
				t.Errorf("%s: etcd member %s is at no node's HTTP port + 10000", n.id, ep)
			}
		}
	}
	view := c.waitStable(t, 30*time.Second)
	leader := view.Cluster.Leader
	if c.byID(leader) == nil {
		t.Fatalf("leader %q is none of the nodes", leader)
	}
	for _, n := range c.nodes {
		var h wiretest.Health
		if err := fetchJSON(c.httpc, n.addr, "/health", &h); err != nil {
			t.Fatal(err)
		}
		if h.Leader != leader || h.IsLeader != (n.id == leader) {
			t.Errorf("%s: /health says leader %q (is_leader %v); the map says %s", n.id, h.Leader, h.IsLeader, leader)
		}
	}
	t.Logf("%s: 3 nodes, leader %s, %d partitions on %d holders each at epoch %d; ready (bootstrap, joiners) %v and agreeing %v after the first start",
		file, leader, c.partitions, min(3, c.replication), view.Cluster.Epoch, readyAfter, time.Since(began).Round(time.Millisecond))
	// The image's HEALTHCHECK (and compose's): the binary probes its own node with the
	// container's environment, over https in secure mode.
	for _, n := range c.nodes {
		probe := exec.Command(bin, "-healthcheck")
		probe.Env = append(slices.Clone(n.Env), noRaceExitSleep)
		if out, err := probe.CombinedOutput(); err != nil {
			t.Errorf("%s: clusterkit-node -healthcheck: %v\n%s", n.id, err, out)
		}
	}

	// On embedded etcd the first two joiners run etcd members too, as /health says.
	embedded := envValue(c.nodes[0].Env, "ETCD_ENDPOINTS") == ""
	if embedded {
		etcdtest.WaitFor(t, 60*time.Second, "every node reports its etcd member place taken", func() error {
			members := 0
			for _, n := range c.nodes {
				var h wiretest.Health
				if err := fetchJSON(c.httpc, n.addr, "/health", &h); err != nil {
					return err
				}
				switch h.EtcdMember {
				case "member":
					members++
				case "client":
				default:
					return fmt.Errorf("%s: etcd_member %q", n.id, h.EtcdMember)
				}
			}
			if members != 3 {
				return fmt.Errorf("%d etcd members", members)
			}
			return nil
		})
		t.Logf("%s: 3 etcd members %v after the first start", file, time.Since(began).Round(time.Millisecond))
	}

	// As `docker compose down` and a scale-down do: the joiners first (newest first), the
	// node with the embedded etcd last.
	stopped := time.Now()
	order := slices.Concat(joiners, bootstrap)
	slices.Reverse(order[:len(joiners)])
	for i, n := range order {
		if code := n.Terminate(t, drainTimeoutBound); code != 0 {
			t.Errorf("%s exited with status %d on SIGTERM, want 0", n.id, code)
		}
		log := n.Log()
		if last := proctest.Tail(log, 1); !strings.Contains(last, `"msg":"node stopped"`) {
			t.Errorf("%s did not end its log with a clean stop; log ends:\n%s", n.id, proctest.Tail(log, 10))
		}
		if envValue(n.Env, "DRAIN_ON_SIGTERM") == "true" {
			want := `"msg":"draining"`
			if i == len(order)-1 {
				want = "leaves without draining"
			}
			if !strings.Contains(log, want) {
				t.Errorf("%s (DRAIN_ON_SIGTERM=true, %d nodes left) did not log %q", n.id, len(order)-i, want)
			}
		}
	}
	t.Logf("%s: stopped in %v", file, time.Since(stopped).Round(time.Millisecond))
}

// localEnv turns a container's environment into the one of a process on 127.0.0.1: the HTTP
// API on the given port of 127.0.0.1, DATA_DIR in dataDir, and every host:port of a container
// replaced by the address that stands for it. A host name of the file left unmapped is an error.
func localEnv(u deployUnit, port int, dataDir string, addrs map[string]string, known map[string]bool) (map[string]string, error) {
	env := map[string]string{}
	for k, v := range u.Env {
		env[k] = v
	}
	if _, ok := env["DATA_DIR"]; !ok {
		return nil, fmt.Errorf("no DATA_DIR")
	}
	env["DATA_DIR"] = dataDir
	// HTTP_PORT listens on every interface: the tests listen on 127.0.0.1 only.
	delete(env, "HTTP_PORT")
	env["HTTP_ADDR"] = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	for k, v := range env {
		if k == "HTTP_ADDR" || k == "DATA_DIR" {
			continue
		}
		var unmapped []string
		env[k] = hostPort.ReplaceAllStringFunc(v, func(hp string) string {
			if a, ok := addrs[strings.ToLower(hp)]; ok {
				return a
			}
			host, _, _ := net.SplitHostPort(hp)
			if known[strings.ToLower(host)] {
				unmapped = append(unmapped, hp)
			}
			return hp
		})
		if len(unmapped) > 0 {
			return nil, fmt.Errorf("%s=%s: %v name containers of the file at ports they do not serve", k, v, unmapped)
		}
	}
	return env, nil
}

// noRaceExitSleep spares the short commands run here the second a race-built binary sleeps
// before it exits with status 0; other binaries ignore it.
const noRaceExitSleep = "GORACE=atexit_sleep_ms=0"

// newJoinToken returns a token printed by clusterkit-node -new-token.
func newJoinToken(t *testing.T, bin string) string {
	t.Helper()
	cmd := exec.Command(bin, "-new-token")
	cmd.Env = []string{noRaceExitSleep}
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("clusterkit-node -new-token: %v", err)
	}
	return strings.TrimSpace(string(out))
}

// pinnedHTTPS returns a transport that trusts only the CA in caFile and sends every request over
// https: the shared helpers (fetchJSON, waitStable) write http:// URLs.
func pinnedHTTPS(t *testing.T, caFile string) http.RoundTripper {
	t.Helper()
	pem, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatalf("%s holds no certificate", caFile)
	}
	return httpsTransport{&http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
}

// httpsTransport is an http.Transport that turns http:// requests into https:// ones.
type httpsTransport struct{ *http.Transport }

func (h httpsTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	req = req.Clone(req.Context())
	req.URL.Scheme = "https"
	return h.Transport.RoundTrip(req)
}

// joinRequest is GET /cluster/join of the node at addr, with the join token when there is one
// (over https in secure mode: see httpsTransport).
func joinRequest(addr, token string) *http.Request {
	req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/cluster/join", nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return req
}

// fetchJoin decodes the node's 200 answer to GET /cluster/join into v.
func fetchJoin(httpc *http.Client, addr, token string, v any) error {
	resp, err := httpc.Do(joinRequest(addr, token))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET /cluster/join: %s", resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// joinStatus is the status of the node's answer to GET /cluster/join.
func joinStatus(t *testing.T, httpc *http.Client, addr, token string) int {
	t.Helper()
	resp, err := httpc.Do(joinRequest(addr, token))
	if err != nil {
		t.Fatalf("GET /cluster/join: %v", err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func envValue(env []string, name string) string {
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, name+"="); ok {
			return v
		}
	}
	return ""
}
