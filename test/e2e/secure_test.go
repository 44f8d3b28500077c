package e2e

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/clusterkit-go/clusterkit/internal/pki"
	"github.com/clusterkit-go/clusterkit/internal/proctest"
	"github.com/clusterkit-go/clusterkit/pkg/client"
	"github.com/clusterkit-go/clusterkit/pkg/wire"
)

const secureToken = "e2e.0123456789abcdef0123456789"

// secureNode is a clusterkit-node process in secure mode.
type secureNode struct {
	*proctest.Process
	id, addr, dir string
}

func startSecureNode(t *testing.T, bin, id, join, token string) *secureNode {
	t.Helper()
	port := proctest.FreeNodePort(t)
	n := &secureNode{id: id, addr: fmt.Sprintf("127.0.0.1:%d", port), dir: t.TempDir()}
	n.Process = proctest.New(t, id, bin)
	n.Env = []string{"NODE_ID=" + id, "HTTP_ADDR=" + n.addr, "DATA_DIR=" + n.dir, "LEASE_TTL=2s",
		"PARTITION_COUNT=16", "JOIN_TOKEN=" + token, "JOIN_ADDR=" + join}
	n.Start(t)
	return n
}

// Three nodes in secure mode form a cluster; a fourth with a wrong token is refused before it
// writes anything; the embedded etcd refuses plaintext and certificate-less clients; the join
// API answers 401 without the token; the Go client follows the map over https with the CA
// pinned.
func TestSecureMode(t *testing.T) {
	began := time.Now()
	bin := buildNodeBinary(t)
	n1 := startSecureNode(t, bin, "node-1", "", secureToken)
	if _, err := n1.AwaitReady(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	nodes := []*secureNode{n1}
	for _, id := range []string{"node-2", "node-3"} {
		n := startSecureNode(t, bin, id, n1.addr, secureToken)
		if _, err := n.AwaitReady(time.Minute); err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, n)
	}
	t.Logf("built and started 3 nodes in secure mode in %v", time.Since(began).Round(time.Millisecond))

	// Every node pinned the bootstrap node's CA and holds a certificate it signed; only the
	// bootstrap node holds the CA key on disk.
	ca := readCA(t, n1.dir, true)
	for _, n := range nodes[1:] {
		if got := readCA(t, n.dir, false); got.Hash() != ca.Hash() {
			t.Fatalf("%s pinned CA %s, the cluster's is %s", n.id, got.Hash(), ca.Hash())
		}
		if _, err := os.Stat(filepath.Join(n.dir, "pki", "ca.key")); err == nil {
			t.Errorf("%s has the CA key on disk", n.id)
		}
	}
	pool := ca.Pool()
	verified := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	defer verified.CloseIdleConnections()

	// The Go client, with the CA pinned, follows the map of all three over https.
	caFile := filepath.Join(n1.dir, "pki", "ca.crt")
	tlsConfig, err := client.PinnedCA(caFile)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := client.New(ctx, client.Config{Seeds: []string{n1.addr}, TLS: tlsConfig})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for len(c.Nodes()) != 3 {
		if ctx.Err() != nil {
			t.Fatalf("the client over https lists %d nodes, want 3", len(c.Nodes()))
		}
		time.Sleep(50 * time.Millisecond)
	}

	// A client that knows only a seed and the token, or the CA's hash, learns the CA and pins
	// it; a wrong token or hash is refused.
	for _, pin := range []string{secureToken, ca.Hash()} {
		discovered, err := client.DiscoverCA(ctx, nodes[2].addr, pin)
		if err != nil {
			t.Fatalf("DiscoverCA with %.12s…: %v", pin, err)
		}
		dc, err := client.New(ctx, client.Config{Seeds: []string{nodes[2].addr}, TLS: discovered})
		if err != nil {
			t.Fatalf("client with the CA discovered by %.12s…: %v", pin, err)
		}
		dc.Close()
	}
	for _, pin := range []string{"wrong-token-of-enough-length", "sha256:" + strings.Repeat("0", 64)} {
		if _, err := client.DiscoverCA(ctx, nodes[2].addr, pin); err == nil || !strings.Contains(err.Error(), "refusing to trust") {
			t.Errorf("DiscoverCA with %.12s…: %v, want a refusal", pin, err)
		}
	}

	// The join API: 401 without the token or with a wrong one, the join info with it.
	for _, tok := range []string{"", "wrong-token-of-enough-length"} {
		code, body := secureGet(t, verified, "https://"+n1.addr+"/cluster/join", tok)
		if code != http.StatusUnauthorized || !strings.Contains(body, "join token") {
			t.Errorf("GET /cluster/join with token %q: %d %s, want 401 naming the join token", tok, code, body)
		}
	}
	// The third node becomes an etcd member in the background, once etcd accepts another
	// membership change (5 s after the second member joined).
	var info wire.JoinInfo
	var code int
	var body string
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(200 * time.Millisecond) {
		code, body = secureGet(t, verified, "https://"+nodes[2].addr+"/cluster/join", secureToken)
		info = wire.JoinInfo{}
		if code == http.StatusOK && json.Unmarshal([]byte(body), &info) == nil && len(info.EtcdEndpoints) == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET /cluster/join with the token, a minute after the third node started: %d %s", code, body)
		}
	}
	for _, ep := range info.EtcdEndpoints {
		if !strings.HasPrefix(ep, "https://") {
			t.Errorf("etcd endpoint %s is not https", ep)
		}
	}
	// Plain HTTP to the API is refused.
	if resp, err := http.Get("http://" + n1.addr + "/cluster"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Error("the API answered plain HTTP")
		}
	}

	// etcd: a client with a certificate of the CA works.
	etcdGet := func(endpoint string, cfg *tls.Config) error {
		ec, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, DialTimeout: 2 * time.Second, TLS: cfg,
			Logger: zap.NewNop()})
		if err != nil {
			return err
		}
		defer ec.Close()
		gctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		_, err = ec.Get(gctx, "/clusterkit/default/config")
		return err
	}
	cert, key := readFile(t, n1.dir, "node.crt"), readFile(t, n1.dir, "node.key")
	withCert, err := ca.ClientConfig(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	if err := etcdGet(info.EtcdEndpoints[0], withCert); err != nil {
		t.Fatalf("etcd with a certificate of the cluster's CA: %v", err)
	}
	// Every client and peer port of the three members: GET /version (served on both) in
	// plaintext, over TLS without a client certificate, and with a certificate of another CA,
	// is refused; with a certificate of the cluster's CA it is answered.
	other, _ := pki.NewCA("other")
	oCert, oKey, _ := other.Issue("intruder", []string{"127.0.0.1"})
	oCfg, _ := other.ClientConfig(oCert, oKey)
	oCfg.RootCAs = pool
	for _, n := range nodes {
		port := 0
		fmt.Sscanf(n.addr[strings.LastIndex(n.addr, ":")+1:], "%d", &port)
		for _, p := range []int{port + 10000, port + 20000} {
			hostPort := fmt.Sprintf("127.0.0.1:%d", p)
			if code, err := versionStatus(nil, "http://"+hostPort); err == nil && code == http.StatusOK {
				t.Errorf("%s: etcd port %d answered plaintext", n.id, p)
			}
			for what, cfg := range map[string]*tls.Config{"no client certificate": {RootCAs: pool}, "another CA's certificate": oCfg} {
				if code, err := versionStatus(cfg, "https://"+hostPort); err == nil && code == http.StatusOK {
					t.Errorf("%s: etcd port %d answered a client with %s", n.id, p, what)
				}
			}
			if code, err := versionStatus(withCert, "https://"+hostPort); err != nil || code != http.StatusOK {
				t.Errorf("%s: etcd port %d with a certificate of the cluster's CA: %d %v", n.id, p, code, err)
			}
		}
	}

	// A fourth node with a wrong token fails at start, naming the problem, and leaves nothing
	// in etcd.
	ec, err := clientv3.New(clientv3.Config{Endpoints: info.EtcdEndpoints, DialTimeout: 2 * time.Second, TLS: withCert, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer ec.Close()
	before, err := ec.Get(ctx, "/", clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		t.Fatal(err)
	}
	intruder := startSecureNode(t, bin, "node-4", n1.addr, "wrong-token-of-enough-length")
	if status := intruder.Wait(t, 30*time.Second); status == 0 {
		t.Fatal("node-4 with a wrong token exited 0")
	}
	if log := intruder.Log(); !strings.Contains(log, "does not prove that it knows the join token") {
		t.Errorf("node-4's log does not say why it was refused:\n%s", proctest.Tail(log, 5))
	}
	after, err := ec.Get(ctx, "/", clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range after.Kvs {
		if strings.Contains(string(kv.Key), "node-4") {
			t.Errorf("node-4 left %s in etcd", kv.Key)
		}
	}
	if len(after.Kvs) > len(before.Kvs) {
		t.Errorf("etcd holds %d keys after node-4's refusal, %d before", len(after.Kvs), len(before.Kvs))
	}
	if _, err := os.Stat(filepath.Join(intruder.dir, "pki")); err == nil {
		t.Error("node-4 saved a pki directory")
	}

	// The health probe speaks https in secure mode.
	probe := exec.Command(bin, "-healthcheck")
	probe.Env = append(os.Environ(), "HTTP_ADDR="+nodes[1].addr, "JOIN_TOKEN="+secureToken)
	if out, err := probe.CombinedOutput(); err != nil {
		t.Errorf("clusterkit-node -healthcheck in secure mode: %v\n%s", err, out)
	}

	// A member killed and restarted with its DataDir comes back with the files it has: its
	// etcd member over TLS, its certificate, the pinned CA.
	restarted := nodes[1]
	restarted.Kill(t)
	restarted.Start(t)
	if _, err := restarted.AwaitReady(time.Minute); err != nil {
		t.Fatal(err)
	}
	if code, body := secureGet(t, verified, "https://"+restarted.addr+"/health", ""); code != http.StatusOK {
		t.Errorf("%s after its restart: %d %s", restarted.id, code, body)
	}
	if got := readCA(t, restarted.dir, false); got.Hash() != ca.Hash() {
		t.Errorf("%s pinned CA %s after its restart, the cluster's is %s", restarted.id, got.Hash(), ca.Hash())
	}

	// Restarted with another token, a node refuses to start: the token does not open the CA
	// key stored in etcd. With its own token it comes back.
	other3 := nodes[2]
	other3.Kill(t)
	env := slices.Clone(other3.Env)
	other3.Env = append(slices.Clone(env), "JOIN_TOKEN=another-token-of-enough-length")
	other3.Start(t)
	if status := other3.Wait(t, time.Minute); status == 0 {
		t.Fatalf("%s restarted with another token exited 0", other3.id)
	}
	if log := other3.Log(); !strings.Contains(log, "does not open with this join token") {
		t.Errorf("%s's log does not say why it refused another token:\n%s", other3.id, proctest.Tail(log, 5))
	}
	other3.Env = env
	other3.Start(t)
	if _, err := other3.AwaitReady(time.Minute); err != nil {
		t.Fatal(err)
	}
}

func readFile(t *testing.T, dir, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "pki", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func readCA(t *testing.T, dir string, withKey bool) *pki.CA {
	t.Helper()
	var key []byte
	if withKey {
		key = readFile(t, dir, "ca.key")
	}
	ca, err := pki.ParseCA(readFile(t, dir, "ca.crt"), key)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func secureGet(t *testing.T, httpc *http.Client, url, token string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := httpc.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// versionStatus GETs /version of an etcd port with tlsConfig.
func versionStatus(tlsConfig *tls.Config, base string) (int, error) {
	httpc := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsConfig}}
	defer httpc.CloseIdleConnections()
	resp, err := httpc.Get(base + "/version")
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}
