// Package quickstart_test runs the Quick Start programs as a user would: it builds them with
// `go build`, starts them as real processes on free 127.0.0.1 ports, talks to them over HTTP
// and stops them with SIGTERM.
package quickstart_test

import (
	"bytes"
	"crypto/md5"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/clusterkit-go/clusterkit/internal/etcdtest"
	"github.com/clusterkit-go/clusterkit/internal/proctest"
	"github.com/clusterkit-go/clusterkit/internal/wiretest"
)

const (
	// startWithin bounds how long a program may take to start and join.
	startWithin = 30 * time.Second
	// stopWithin bounds how long a program may take to exit after SIGTERM.
	stopWithin = 20 * time.Second
	// partitionCount is ClusterKit's default, which the programs keep.
	partitionCount = 64
)

func TestMain(m *testing.M) { os.Exit(etcdtest.RunWithoutLeaks(m)) }

// The bootstrap and join programs form a two-node cluster, and both leave it gracefully on
// SIGTERM: node-2's partitions go back to node-1 at once, not after the lease TTL.
func TestBootstrapAndJoin(t *testing.T) {
	bins := proctest.BuildAll(t, "./bootstrap", "./join")
	bootstrap, join := bins[0], bins[1]
	dir := t.TempDir()
	addr1, addr2 := nodeAddr(t), nodeAddr(t)

	node1 := proctest.Start(t, "node-1", bootstrap, "-addr", addr1, "-data-dir", filepath.Join(dir, "node-1"))
	// As in the Quick Start, node-2 is started once the bootstrap node is up.
	waitFor(t, startWithin, "node-1's GET /cluster lists node-1", func() error {
		c, err := getCluster(addr1)
		if err != nil {
			return err
		}
		return checkCluster(c, "node-1")
	})
	node2 := proctest.Start(t, "node-2", join, "-addr", addr2, "-join", addr1, "-data-dir", filepath.Join(dir, "node-2"))

	var joined *wiretest.Cluster
	waitFor(t, startWithin, "node-1's GET /cluster lists node-1 and node-2", func() error {
		c, err := getCluster(addr1)
		if err != nil {
			return err
		}
		if err := checkCluster(c, "node-1", "node-2"); err != nil {
			return err
		}
		joined = c
		return nil
	})
	if got := joined.Cluster.Nodes["node-2"].IP; got != addr2 {
		t.Errorf("node-2 is listed at %q, want %q", got, addr2)
	}
	if h := joined.HashConfig; h.Algorithm != "md5" || h.Modulo != partitionCount {
		t.Errorf("hash_config is %+v, want md5 modulo %d", h, partitionCount)
	}
	waitFor(t, 5*time.Second, "node-2's GET /cluster agrees with node-1's", func() error {
		c, err := getCluster(addr2)
		if err != nil {
			return err
		}
		if c.Cluster.Epoch != joined.Cluster.Epoch {
			return fmt.Errorf("node-2 holds epoch %d, node-1 epoch %d", c.Cluster.Epoch, joined.Cluster.Epoch)
		}
		return checkCluster(c, "node-1", "node-2")
	})

	left := time.Now()
	proctest.Stop(t, stopWithin, node2)
	// The lease TTL is 10s: a map without node-2 well within it comes from a graceful leave.
	waitFor(t, 5*time.Second, "node-1's GET /cluster lists only node-1", func() error {
		c, err := getCluster(addr1)
		if err != nil {
			return err
		}
		return checkCluster(c, "node-1")
	})
	t.Logf("node-2 stopped and removed from the map in %v", time.Since(left))
	proctest.Stop(t, stopWithin, node1)
	for _, p := range []*proctest.Process{node1, node2} {
		if out := p.Log(); !strings.Contains(out, p.Name+" stopped") {
			t.Errorf("%s did not report a clean stop:\n%s", p.Name, out)
		}
	}
}

// The kvstore program alone is a one-node cluster: it stores both keys as their primary and
// reads the value back.
func TestKVStoreSingleNode(t *testing.T) {
	kvstore := proctest.Build(t, "./kvstore")
	p := proctest.Start(t, "kvstore", kvstore, "-addr", nodeAddr(t), "-kv-addr", "127.0.0.1:0", "-data-dir", t.TempDir())
	if status := p.Wait(t, startWithin+stopWithin); status != 0 {
		t.Fatalf("kvstore exited with status %d:\n%s", status, p.Log())
	}
	out := p.Log()
	for _, want := range []string{
		// user:123 is in partition-48 of 64 by the md5 wire contract.
		"Stored user:123=John Doe (I'm primary of " + partitionOf("user:123") + ")",
		"Stored user:456=Jane Smith (I'm primary of " + partitionOf("user:456") + ")",
		"Value: John Doe",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

// In a three-node cluster with two copies of each partition, a write sent to the one node that
// holds no copy is forwarded to the primary, which replicates it; a read at that node is
// forwarded too. This runs every path of Set and Get across real processes.
func TestKVStoreCluster(t *testing.T) {
	kvstore := proctest.Build(t, "./kvstore")
	dir := t.TempDir()
	type kvNode struct {
		id, addr, kvAddr string
		proc             *proctest.Process
	}
	var nodes []*kvNode
	byID := make(map[string]*kvNode)
	for i := 1; i <= 3; i++ {
		n := &kvNode{id: fmt.Sprintf("node-%d", i), addr: nodeAddr(t), kvAddr: proctest.FreeAddr(t)}
		args := []string{"-id", n.id, "-addr", n.addr, "-kv-addr", n.kvAddr,
			"-data-dir", filepath.Join(dir, n.id), "-replication", "2", "-serve"}
		if i > 1 {
			args = append(args, "-join", nodes[0].addr)
		}
		n.proc = proctest.Start(t, n.id, kvstore, args...)
		// Each program writes and reads its example keys once it has started.
		waitFor(t, startWithin, n.id+" prints the value it read", func() error {
			if !strings.Contains(n.proc.Log(), "Value: John Doe") {
				return errors.New("not yet")
			}
			return nil
		})
		nodes = append(nodes, n)
		byID[n.id] = n
	}
	var state *wiretest.Cluster
	waitFor(t, 10*time.Second, "all three nodes hold the same settled map", func() error {
		var epochs []uint64
		for _, n := range nodes {
			c, err := getCluster(n.addr)
			if err != nil {
				return err
			}
			if err := checkCluster(c, "node-1", "node-2", "node-3"); err != nil {
				return err
			}
			if len(c.Cluster.Handoffs) > 0 {
				return fmt.Errorf("%s: %d handoffs in progress", n.id, len(c.Cluster.Handoffs))
			}
			epochs = append(epochs, c.Cluster.Epoch)
			state = c
		}
		if slices.Min(epochs) != slices.Max(epochs) {
			return fmt.Errorf("epochs differ: %v", epochs)
		}
		return nil
	})

	for i := range 12 {
		key, value := fmt.Sprintf("item:%d", i), fmt.Sprintf("value-%d", i)
		p := state.Cluster.PartitionMap[partitionOf(key)]
		if len(p.ReplicaNodes) != 1 {
			t.Fatalf("%s has replicas %v, want one", partitionOf(key), p.ReplicaNodes)
		}
		var outsider *kvNode
		for _, n := range nodes {
			if n.id != p.PrimaryNode && n.id != p.ReplicaNodes[0] {
				outsider = n
			}
		}
		if err := kvPut(outsider.kvAddr, key, value); err != nil {
			t.Fatalf("PUT %s at %s (not a holder): %v", key, outsider.id, err)
		}
		// The primary stored it before answering; the replica gets it in the background.
		if got, err := kvGet(byID[p.PrimaryNode].kvAddr, key); err != nil || got != value {
			t.Fatalf("GET %s at primary %s: %q, %v; want %q", key, p.PrimaryNode, got, err, value)
		}
		waitFor(t, 5*time.Second, key+" reaches replica "+p.ReplicaNodes[0], func() error {
			got, err := kvGet(byID[p.ReplicaNodes[0]].kvAddr, key)
			if err == nil && got != value {
				err = fmt.Errorf("got %q", got)
			}
			return err
		})
		if got, err := kvGet(outsider.kvAddr, key); err != nil || got != value {
			t.Fatalf("GET %s at %s (not a holder): %q, %v; want %q", key, outsider.id, got, err, value)
		}
	}
	if got, err := kvGet(nodes[0].kvAddr, "never-written"); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("GET of a missing key: %q, %v; want 404", got, err)
	}

	for i := len(nodes) - 1; i >= 0; i-- {
		proctest.Stop(t, stopWithin, nodes[i].proc)
	}
	for _, n := range nodes {
		if !strings.Contains(n.proc.Log(), "Forwarding item:") {
			t.Errorf("%s never forwarded a write:\n%s", n.id, n.proc.Log())
		}
	}
}

// partitionOf is ClusterKit's key -> partition wire contract: the big-endian uint32 of the
// first four bytes of md5(key), modulo the partition count.
func partitionOf(key string) string {
	sum := md5.Sum([]byte(key))
	return fmt.Sprintf("partition-%d", binary.BigEndian.Uint32(sum[:4])%partitionCount)
}

// checkCluster reports nil when the GET /cluster answer c lists exactly the given nodes and
// every partition has a primary among them.
func checkCluster(c *wiretest.Cluster, nodes ...string) error {
	var got []string
	for id := range c.Cluster.Nodes {
		got = append(got, id)
	}
	slices.Sort(got)
	if !slices.Equal(got, nodes) {
		return fmt.Errorf("epoch %d lists nodes %v, want %v", c.Cluster.Epoch, got, nodes)
	}
	if len(c.Cluster.PartitionMap) != partitionCount {
		return fmt.Errorf("epoch %d has %d partitions, want %d", c.Cluster.Epoch, len(c.Cluster.PartitionMap), partitionCount)
	}
	for i := range partitionCount {
		id := "partition-" + strconv.Itoa(i)
		p, ok := c.Cluster.PartitionMap[id]
		if !ok || p.ID != id || !slices.Contains(nodes, p.PrimaryNode) {
			return fmt.Errorf("epoch %d: %s is %+v, want a primary among %v", c.Cluster.Epoch, id, p, nodes)
		}
	}
	if !slices.Contains(nodes, c.Cluster.Leader) {
		return fmt.Errorf("epoch %d: leader %q is not among %v", c.Cluster.Epoch, c.Cluster.Leader, nodes)
	}
	return nil
}

var httpClient = &http.Client{Timeout: 5 * time.Second}

func getCluster(addr string) (*wiretest.Cluster, error) {
	resp, err := httpClient.Get("http://" + addr + "/cluster")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /cluster: %s", resp.Status)
	}
	var c wiretest.Cluster
	if err := json.NewDecoder(resp.Body).Decode(&c); err != nil {
		return nil, fmt.Errorf("GET /cluster: %w", err)
	}
	return &c, nil
}

func kvPut(addr, key, value string) error {
	req, err := http.NewRequest(http.MethodPut, "http://"+addr+"/kv/"+key, strings.NewReader(value))
	if err != nil {
		return err
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", resp.Status, bytes.TrimSpace(b))
	}
	return nil
}

func kvGet(addr, key string) (string, error) {
	resp, err := httpClient.Get("http://" + addr + "/kv/" + key)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s: %s", resp.Status, bytes.TrimSpace(b))
	}
	return string(b), nil
}

// nodeAddr returns an address for a program's ClusterKit API: a node that starts an embedded
// etcd also takes the ports 10000 and 20000 above it.
func nodeAddr(t *testing.T) string {
	t.Helper()
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(proctest.FreeNodePort(t)))
}

// waitFor polls cond until it holds, failing the test after within.
var waitFor = etcdtest.WaitFor
