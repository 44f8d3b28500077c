package main

// A real cluster for the commands to read: clusterkit-node processes on 127.0.0.1 with the
// embedded etcd, and the command built once and run as a process against it.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/clusterkit-go/clusterkit/internal/etcdtest"
	"github.com/clusterkit-go/clusterkit/internal/proctest"
	"github.com/clusterkit-go/clusterkit/internal/wiretest"
)

// Settings of the test cluster. 64 partitions is what the key -> partition vectors of the
// design are given for; a replication factor below the node count makes placement choose.
const (
	testPartitions  = 64
	testReplication = 2
	// testLease is long enough for race-built nodes on a busy machine; nothing here waits for
	// a lease to expire.
	testLease = "5s"
)

// testCluster is the node processes and the command's binary.
type testCluster struct {
	nodeBin, cliBin string
	nodes           []*testNode
	httpc           *http.Client
	// endpoints is the etcd member's client URL.
	endpoints string
}

type testNode struct {
	*proctest.Process
	id, zone, addr string
	// join is the address of the node it joins, "" for the first.
	join string
}

// startCluster builds both programs and starts node-1, which bootstraps the embedded etcd,
// then node-2 and node-3, which join it; zones a, b, c. node-1 runs the only etcd member:
// adding two more would double the time the cluster takes to start.
func startCluster(t *testing.T) *testCluster {
	t.Helper()
	began := time.Now()
	bins := proctest.BuildAll(t, "github.com/clusterkit-go/clusterkit/cmd/clusterkit-node", "github.com/clusterkit-go/clusterkit/cmd/clusterkit")
	c := &testCluster{nodeBin: bins[0], cliBin: bins[1], httpc: &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{}}}
	t.Cleanup(c.httpc.CloseIdleConnections)
	t.Logf("built clusterkit-node and clusterkit (race: %v) in %v", proctest.RaceEnabled, time.Since(began).Round(time.Millisecond))
	began = time.Now()
	c.launch(t, "node-1", "a").wait(t)
	n2, n3 := c.launch(t, "node-2", "b"), c.launch(t, "node-3", "c")
	n2.wait(t)
	n3.wait(t)
	var info wiretest.Join
	etcdtest.WaitFor(t, 30*time.Second, "the etcd endpoint in GET /cluster/join", func() error {
		if err := c.get("node-1", "/cluster/join", &info); err != nil {
			return err
		}
		if len(info.EtcdEndpoints) != 1 {
			return fmt.Errorf("etcd endpoints %v", info.EtcdEndpoints)
		}
		return nil
	})
	c.endpoints = strings.Join(info.EtcdEndpoints, ",")
	t.Logf("3 nodes ready in %v; etcd at %s", time.Since(began).Round(time.Millisecond), c.endpoints)
	return c
}

// launch starts node id in zone; every node but the first joins node-1.
func (c *testCluster) launch(t *testing.T, id, zone string) *testNode {
	t.Helper()
	n := &testNode{Process: proctest.New(t, id, c.nodeBin), id: id, zone: zone}
	if len(c.nodes) > 0 {
		n.join = c.nodes[0].addr
	}
	n.place(t)
	c.nodes = append(c.nodes, n)
	n.Start(t)
	return n
}

// place gives the node a free port (the embedded etcd takes +10000 and +20000) and a new data
// directory.
func (n *testNode) place(t *testing.T) {
	n.addr = fmt.Sprintf("127.0.0.1:%d", proctest.FreeNodePort(t))
	n.Env = []string{"NODE_ID=" + n.id, "HTTP_ADDR=" + n.addr, "DATA_DIR=" + t.TempDir(), "ZONE=" + n.zone,
		"LEASE_TTL=" + testLease, "PARTITION_COUNT=" + fmt.Sprint(testPartitions),
		"REPLICATION_FACTOR=" + fmt.Sprint(testReplication), "LOG_LEVEL=warn", "EMBEDDED_MEMBERS=1"}
	if n.join != "" {
		n.Env = append(n.Env, "JOIN_ADDR="+n.join)
	}
}

// wait waits for the node's ready line. A node that exited before it because a port was taken
// between the choice and the bind is started again elsewhere: it had not joined yet.
func (n *testNode) wait(t *testing.T) {
	t.Helper()
	for launch := 1; ; launch++ {
		_, err := n.AwaitReady(time.Minute)
		if err == nil {
			return
		}
		if launch == 3 || !n.PortTaken() {
			t.Fatal(err)
		}
		t.Logf("%s: a port was taken before the node bound it; starting it again", n.id)
		n.place(t)
		n.Start(t)
	}
}

func (c *testCluster) node(id string) *testNode {
	for _, n := range c.nodes {
		if n.id == id {
			return n
		}
	}
	return nil
}

// get GETs path from node id and decodes its 200 answer into v.
func (c *testCluster) get(id, path string, v any) error {
	resp, err := c.httpc.Get("http://" + c.node(id).addr + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	return json.Unmarshal(body, v)
}

// stable waits until every node of ids serves the same map, which lists exactly ids, places
// every partition on testReplication of them and copies nothing, and returns it.
func (c *testCluster) stable(t *testing.T, ids ...string) *wiretest.Cluster {
	t.Helper()
	var agreed *wiretest.Cluster
	etcdtest.WaitFor(t, 30*time.Second, fmt.Sprintf("a stable map of %v", ids), func() error {
		agreed = nil
		for _, id := range ids {
			var v wiretest.Cluster
			if err := c.get(id, "/cluster", &v); err != nil {
				return fmt.Errorf("%s: %w", id, err)
			}
			if got := slices.Sorted(maps.Keys(v.Cluster.Nodes)); !slices.Equal(got, ids) {
				return fmt.Errorf("%s lists %v", id, got)
			}
			if len(v.Cluster.Handoffs) > 0 {
				return fmt.Errorf("%s: %d copies in progress", id, len(v.Cluster.Handoffs))
			}
			for pid, p := range v.Cluster.PartitionMap {
				if len(p.ReplicaNodes) != testReplication-1 || len(p.PendingNodes) > 0 {
					return fmt.Errorf("%s: %s is held by %s+%v, pending %v", id, pid, p.PrimaryNode, p.ReplicaNodes, p.PendingNodes)
				}
			}
			if agreed != nil && agreed.Cluster.Epoch != v.Cluster.Epoch {
				return fmt.Errorf("%s serves epoch %d, another node %d", id, v.Cluster.Epoch, agreed.Cluster.Epoch)
			}
			agreed = &v
		}
		return nil
	})
	return agreed
}

// cli runs the command against the cluster's etcd (CLUSTERKIT_ENDPOINTS) and returns its exit
// status and output. A data race it reports fails the test.
func (c *testCluster) cli(t *testing.T, args ...string) (status int, stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.cliBin, args...)
	cmd.Env = c.cliEnv()
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	if _, exited := err.(*exec.ExitError); err != nil && !exited {
		t.Fatalf("clusterkit %s: %v", strings.Join(args, " "), err)
	}
	if strings.Contains(errOut.String(), "WARNING: DATA RACE") {
		t.Errorf("clusterkit %s: the race detector reported a data race:\n%s", strings.Join(args, " "), &errOut)
	}
	return cmd.ProcessState.ExitCode(), out.String(), errOut.String()
}

// cliEnv is the test's environment without CLUSTERKIT_ variables, and with the endpoints.
func (c *testCluster) cliEnv() []string {
	env := slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, envPrefix) })
	return append(env, "CLUSTERKIT_ENDPOINTS="+c.endpoints)
}

// cliOK runs the command, which must succeed, and returns its output.
func (c *testCluster) cliOK(t *testing.T, args ...string) string {
	t.Helper()
	status, stdout, stderr := c.cli(t, args...)
	if status != 0 {
		t.Fatalf("clusterkit %s: status %d; stderr:\n%s", strings.Join(args, " "), status, stderr)
	}
	if stderr != "" {
		t.Errorf("clusterkit %s: stderr %q, want nothing", strings.Join(args, " "), stderr)
	}
	return stdout
}

// tableOK runs the command in the test's process against the cluster; it must succeed. It
// returns the output.
func (c *testCluster) tableOK(t *testing.T, args ...string) string {
	t.Helper()
	status, stdout, stderr := runIn(t, env{"CLUSTERKIT_ENDPOINTS": c.endpoints}, args...)
	if status != 0 || stderr != "" {
		t.Fatalf("clusterkit %s: status %d; stderr:\n%s", strings.Join(args, " "), status, stderr)
	}
	return stdout
}

// cliJSON runs the command with -o json and decodes its document into v strictly: a field
// that v does not declare is an error, so that a change of the documented shape shows here.
func (c *testCluster) cliJSON(t *testing.T, v any, args ...string) {
	t.Helper()
	out := c.cliOK(t, append(args, "-o", "json")...)
	dec := json.NewDecoder(strings.NewReader(out))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("clusterkit %s -o json: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// tableRows returns the rows of a table that starts at the line whose first field is header,
// as fields, up to the next empty line; nil when there is no such header.
func tableRows(out, header string) [][]string {
	var rows [][]string
	in := false
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		switch {
		case !in && len(f) > 0 && f[0] == header:
			in = true
		case in && len(f) == 0:
			return rows
		case in:
			rows = append(rows, f)
		}
	}
	return rows
}

// holders returns a partition's holders in GET /cluster, primary first.
func holders(p wiretest.Partition) []string {
	return append([]string{p.PrimaryNode}, p.ReplicaNodes...)
}
