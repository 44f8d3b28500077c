package e2e

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/clusterkit-go/clusterkit/internal/etcdtest"
	"github.com/clusterkit-go/clusterkit/internal/wiretest"
	"github.com/clusterkit-go/clusterkit/pkg/clusterkit"
)

const (
	partitionCount    = 32
	replicationFactor = 3
)

// ClusterKit nodes share an etcd that runs as its own process, reached over TLS with a user
// that may only touch the cluster's prefix: they form one cluster, refuse bad credentials and
// a missing TLS configuration, move partitions when a node stops, and keep their whole state
// under /clusterkit/<cluster-name>/.
func TestExternalEtcd(t *testing.T) {
	etcd := startEtcdProcess(t)
	name := "external-" + randomHex(t)
	prefix := "/clusterkit/" + name + "/"
	rootPassword, ckPassword := etcd.enableAuth(t, prefix)
	root := etcd.client(t, "root", rootPassword)

	options := func(id string) clusterkit.Options {
		return clusterkit.Options{
			NodeID:            id,
			HTTPAddr:          "127.0.0.1:0",
			DataDir:           t.TempDir(),
			ClusterName:       name,
			PartitionCount:    partitionCount,
			ReplicationFactor: replicationFactor,
			LeaseTTL:          2 * time.Second,
			StartTimeout:      20 * time.Second,
			EtcdEndpoints:     []string{etcd.URL},
			EtcdUsername:      "ck",
			EtcdPassword:      ckPassword,
			EtcdTLS:           &tls.Config{RootCAs: etcd.CA},
			Logger:            zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)).Named(id),
		}
	}

	// Three nodes start at once, racing to create the cluster.
	ids := []string{"node-1", "node-2", "node-3"}
	nodes := make(map[string]*clusterkit.ClusterKit)
	for _, id := range ids {
		ck, err := clusterkit.NewClusterKit(options(id))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ck.Stop() })
		nodes[id] = ck
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(ids))
	for id, ck := range nodes {
		wg.Go(func() {
			if err := ck.Start(); err != nil {
				errs <- fmt.Errorf("start %s: %w", id, err)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		t.FailNow()
	}

	httpc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	waitFor(t, 10*time.Second, "one cluster of 3 nodes", func() error {
		return checkCluster(httpc, nodes)
	})
	t.Logf("3 nodes agree on epoch %d, leader %s", nodes["node-1"].Epoch(), nodes["node-1"].Leader())
	p, err := nodes["node-1"].GetPartition("user:123")
	if err != nil {
		t.Fatal(err)
	}
	if p.ID != "partition-16" {
		t.Errorf("user:123 is in %s, want partition-16 (md5 modulo %d)", p.ID, partitionCount)
	}
	for id, ck := range nodes {
		if got, want := ck.GetPrimary(p).ID, nodes["node-1"].GetPrimary(p).ID; got != want {
			t.Errorf("%s sees %s as primary of %s, node-1 sees %s", id, got, p.ID, want)
		}
	}

	t.Run("wrong password is refused", func(t *testing.T) {
		o := options("intruder")
		o.EtcdPassword = "wrong-" + ckPassword
		o.StartTimeout = 10 * time.Second
		err := startMustFail(t, o)
		if !errors.Is(err, rpctypes.ErrAuthFailed) || !strings.Contains(err.Error(), "authentication failed") {
			t.Errorf("Start with a wrong password: %v; want an error wrapping %v", err, rpctypes.ErrAuthFailed)
		}
	})
	t.Run("missing TLS config is refused", func(t *testing.T) {
		o := options("intruder")
		o.EtcdTLS = nil
		o.EtcdDialTimeout = 2 * time.Second
		o.StartTimeout = 10 * time.Second
		// Without EtcdTLS the client checks etcd's certificate against the system roots, which
		// do not know the test's CA: no connection ever succeeds.
		err := startMustFail(t, o)
		if !strings.Contains(err.Error(), etcd.URL) {
			t.Errorf("Start without EtcdTLS: %v; want an error that names the endpoint %s", err, etcd.URL)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if resp, err := root.Get(ctx, prefix+"nodes/intruder"); err != nil || len(resp.Kvs) != 0 {
		t.Errorf("a refused node left a record (%v, %v)", resp, err)
	}

	// Stop the leader: the others elect a new one and share its partitions between them.
	var leader string
	for id, ck := range nodes {
		if ck.IsLeader() {
			leader = id
		}
	}
	if leader == "" {
		leader = nodes["node-1"].Leader()
	}
	stopped := time.Now()
	nodes[leader].Stop()
	delete(nodes, leader)
	waitFor(t, 10*time.Second, "the 2 remaining nodes without "+leader, func() error {
		return checkCluster(httpc, nodes)
	})
	t.Logf("stopped leader %s: maps of the other nodes updated after %v", leader, time.Since(stopped).Round(time.Millisecond))
	waitFor(t, 10*time.Second, "new leader", func() error {
		for _, ck := range nodes {
			if ck.IsLeader() {
				return nil
			}
		}
		return errors.New("no remaining node leads")
	})

	// The state is in etcd, readable by an operator, and nowhere but under the cluster's prefix.
	keys := keysUnder(ctx, t, root, prefix)
	var remaining []string
	for id := range nodes {
		remaining = append(remaining, prefix+"nodes/"+id)
	}
	for _, want := range append(remaining, prefix+"config", prefix+"partitions") {
		if !slices.Contains(keys, want) {
			t.Errorf("etcd lacks %s; it holds %q", want, keys)
		}
	}
	if slices.Contains(keys, prefix+"nodes/"+leader) {
		t.Errorf("the record of the stopped node %s is still in etcd", leader)
	}
	var config struct {
		PartitionCount    int `json:"partition_count"`
		ReplicationFactor int `json:"replication_factor"`
	}
	cresp, err := root.Get(ctx, prefix+"config")
	if err != nil || len(cresp.Kvs) != 1 {
		t.Fatalf("read config: %v %v", cresp, err)
	}
	if err := json.Unmarshal(cresp.Kvs[0].Value, &config); err != nil {
		t.Fatalf("config %s: %v", cresp.Kvs[0].Value, err)
	}
	if config.PartitionCount != partitionCount || config.ReplicationFactor != replicationFactor {
		t.Errorf("config %s: want partition_count %d and replication_factor %d", cresp.Kvs[0].Value, partitionCount, replicationFactor)
	}
}

// Three clusterkit-node processes reach an etcd process over TLS (ETCD_CA_FILE verifies it;
// ETCD_CERT_FILE and ETCD_KEY_FILE are loaded as the client certificate, which this etcd does not
// ask for) as a user that may only touch the cluster's prefix (ETCD_USERNAME, ETCD_PASSWORD).
// They agree on one map; once their leader is killed with SIGKILL, the other two agree on a map
// without it, published by a new leader, and its record is gone from etcd.
func TestNodeProcessesOnExternalEtcd(t *testing.T) {
	began := time.Now()
	bin := buildNodeBinary(t)
	etcd := startEtcdProcess(t)
	c := newFailoverCluster(t, bin, etcd.URL)
	prefix := "/clusterkit/" + c.name + "/"
	rootPassword, ckPassword := etcd.enableAuth(t, prefix)
	for i := 1; i <= 3; i++ {
		c.launchOnEtcd(t, fmt.Sprintf("node-%d", i), etcd.URL,
			"ETCD_CA_FILE="+etcd.Certs.CAFile,
			"ETCD_CERT_FILE="+etcd.Certs.CertFile,
			"ETCD_KEY_FILE="+etcd.Certs.KeyFile,
			"ETCD_USERNAME=ck",
			"ETCD_PASSWORD="+ckPassword,
		)
	}
	for _, n := range c.nodes {
		n.waitReady(t)
	}
	before := c.waitStable(t, 30*time.Second)
	victim := c.byID(before.Cluster.Leader)
	if victim == nil {
		t.Fatalf("leader %q is none of the nodes", before.Cluster.Leader)
	}
	t.Logf("3 node processes on etcd %s over TLS with a password agree on epoch %d (leader %s) %v after the start",
		etcd.Version, before.Cluster.Epoch, victim.id, time.Since(began).Round(time.Millisecond))

	killed := time.Now()
	victim.Kill(t)
	after := c.waitStable(t, failoverTTL+15*time.Second)
	t.Logf("leader %s killed: the other 2 agree on a map without it after %v (epoch %d, leader %s)",
		victim.id, time.Since(killed).Round(time.Millisecond), after.Cluster.Epoch, after.Cluster.Leader)
	if after.Cluster.Epoch <= before.Cluster.Epoch {
		t.Errorf("map epoch %d after the kill, %d before", after.Cluster.Epoch, before.Cluster.Epoch)
	}
	if l := c.byID(after.Cluster.Leader); l == nil || l == victim {
		t.Errorf("the map without %s was published by %q, want one of the other nodes", victim.id, after.Cluster.Leader)
	}

	root := etcd.client(t, "root", rootPassword)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	keys := keysUnder(ctx, t, root, prefix)
	if slices.Contains(keys, prefix+"nodes/"+victim.id) {
		t.Errorf("the record of the killed node %s is still in etcd", victim.id)
	}
	for _, n := range c.running() {
		if !slices.Contains(keys, prefix+"nodes/"+n.id) {
			t.Errorf("etcd lacks the record of %s; it holds %q", n.id, keys)
		}
	}
}

// keysUnder returns every key in the etcd root reads, and fails the test for each one outside
// the cluster's prefix: the state is in etcd, readable by an operator, and nowhere else.
func keysUnder(ctx context.Context, t *testing.T, root *clientv3.Client, prefix string) []string {
	t.Helper()
	resp, err := root.Get(ctx, "\x00", clientv3.WithFromKey(), clientv3.WithKeysOnly())
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, kv := range resp.Kvs {
		keys = append(keys, string(kv.Key))
		if !strings.HasPrefix(string(kv.Key), prefix) {
			t.Errorf("key %q is outside the cluster's prefix %s", kv.Key, prefix)
		}
	}
	return keys
}

// startMustFail starts a node that must fail, and returns its error. Start must give up within
// a generous bound of StartTimeout rather than hang.
func startMustFail(t *testing.T, o clusterkit.Options) error {
	t.Helper()
	ck, err := clusterkit.NewClusterKit(o)
	if err != nil {
		t.Fatal(err)
	}
	defer ck.Stop()
	began := time.Now()
	err = ck.Start()
	took := time.Since(began)
	if err == nil {
		t.Fatal("Start succeeded")
	}
	t.Logf("Start failed after %v: %v", took.Round(time.Millisecond), err)
	if took > o.StartTimeout+5*time.Second {
		t.Errorf("Start took %v to fail, StartTimeout is %v", took, o.StartTimeout)
	}
	return err
}

// checkCluster reports why the nodes do not yet agree on one map that places every partition
// on min(N, replicationFactor) distinct nodes among them, as seen through their HTTP APIs.
func checkCluster(httpc *http.Client, nodes map[string]*clusterkit.ClusterKit) error {
	var want []string
	for id := range nodes {
		want = append(want, id)
	}
	sort.Strings(want)
	holders := min(len(want), replicationFactor)
	var epoch uint64
	for id, ck := range nodes {
		if epoch == 0 {
			epoch = ck.Epoch()
		}
		if ck.Epoch() != epoch {
			return fmt.Errorf("%s has epoch %d, another node %d", id, ck.Epoch(), epoch)
		}
		v, err := getCluster(httpc, ck.AdvertiseAddr())
		if err != nil {
			return fmt.Errorf("%s: %w", id, err)
		}
		c := v.Cluster
		if c.Epoch != epoch {
			return fmt.Errorf("%s serves epoch %d, holds %d", id, c.Epoch, epoch)
		}
		var got []string
		for nid, n := range c.Nodes {
			got = append(got, nid)
			if other, ok := nodes[nid]; ok && n.IP != other.AdvertiseAddr() {
				return fmt.Errorf("%s lists %s at %s, it serves at %s", id, nid, n.IP, other.AdvertiseAddr())
			}
		}
		sort.Strings(got)
		if !slices.Equal(got, want) {
			return fmt.Errorf("%s lists nodes %v, want %v", id, got, want)
		}
		if v.HashConfig.Algorithm != "md5" || v.HashConfig.Modulo != partitionCount {
			return fmt.Errorf("%s: hash_config %+v", id, v.HashConfig)
		}
		if len(c.PartitionMap) != partitionCount {
			return fmt.Errorf("%s lists %d partitions, want %d", id, len(c.PartitionMap), partitionCount)
		}
		for i := range partitionCount {
			pid := fmt.Sprintf("partition-%d", i)
			p, ok := c.PartitionMap[pid]
			if !ok || p.ID != pid {
				return fmt.Errorf("%s: %s missing or misnamed (%+v)", id, pid, p)
			}
			all := append([]string{p.PrimaryNode}, p.ReplicaNodes...)
			slices.Sort(all)
			if len(slices.Compact(all)) != holders || len(p.ReplicaNodes) != holders-1 {
				return fmt.Errorf("%s: %s has holders %s+%v, want %d distinct", id, pid, p.PrimaryNode, p.ReplicaNodes, holders)
			}
			for _, h := range all {
				if !slices.Contains(want, h) {
					return fmt.Errorf("%s: %s is held by %s, not a live node", id, pid, h)
				}
			}
		}
	}
	return nil
}

func getCluster(httpc *http.Client, addr string) (*wiretest.Cluster, error) {
	resp, err := httpc.Get("http://" + addr + "/cluster")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /cluster: %s: %s", resp.Status, body)
	}
	var v wiretest.Cluster
	if err := json.Unmarshal(body, &v); err != nil {
		return nil, fmt.Errorf("GET /cluster: %v", err)
	}
	return &v, nil
}

// waitFor polls cond until it holds, failing the test after within.
var waitFor = etcdtest.WaitFor
