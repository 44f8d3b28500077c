package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/clusterkit-go/clusterkit/internal/etcdtest"
	"github.com/clusterkit-go/clusterkit/internal/proctest"
	"github.com/clusterkit-go/clusterkit/internal/wiretest"
)

// Five clusterkit-node processes on embedded etcd, with no etcd installed: the bootstrap node and
// the first two nodes to join run etcd members, the other two are clients. Killing the bootstrap
// node with SIGKILL leaves a cluster that publishes a map without it and keeps serving; restarted
// with its DATA_DIR it is the same etcd member and is listed again. With two of the three members
// killed the cluster has no etcd quorum: every remaining process keeps running and serving its
// last map, and nothing changes; once one member is back, map changes resume. The member lost
// for good, removed by hand as the README says, is replaced by a client node.
func TestEmbeddedHA(t *testing.T) {
	began := time.Now()
	bin := buildNodeBinary(t)
	c := newFailoverCluster(t, bin, "")
	t.Logf("built clusterkit-node (race: %v) in %v", proctest.RaceEnabled, time.Since(began).Round(time.Millisecond))

	began = time.Now()
	bootstrap := c.launchEmbedded(t, "node-1", "")
	bootstrap.waitReady(t)
	for i := 2; i <= 5; i++ {
		c.launchEmbedded(t, fmt.Sprintf("node-%d", i), bootstrap.addr)
	}
	for _, n := range c.nodes {
		n.waitReady(t)
	}
	view := c.waitStable(t, 30*time.Second)
	t.Logf("5 nodes ready and agreeing in %v (epoch %d)", time.Since(began).Round(time.Millisecond), view.Cluster.Epoch)

	etcd := c.etcdClient(t)
	members := etcdtest.Members(t, etcd)
	if len(members) != 3 || members["node-1"] == "" {
		t.Fatalf("etcd members %v: want node-1 and two of the nodes that joined", members)
	}
	if records, err := etcdMemberRecords(etcd); err != nil || !maps.Equal(records, members) {
		t.Errorf("etcd members %v (no learner may remain), records under etcd-members/ %v (%v)", members, records, err)
	}
	var others []*nodeProcess // the members other than the bootstrap node
	for _, n := range c.nodes {
		if _, ok := members[n.id]; ok && n != bootstrap {
			others = append(others, n)
		}
	}
	t.Logf("etcd members: %v", slices.Sorted(maps.Keys(members)))

	// The bootstrap node dies: the other four publish a map without it and keep serving.
	killed := time.Now()
	bootstrap.Kill(t)
	view = c.waitStable(t, failoverTTL+15*time.Second)
	t.Logf("bootstrap node killed: the other 4 serve a map without it after %v (epoch %d, leader %s)",
		time.Since(killed).Round(time.Millisecond), view.Cluster.Epoch, view.Cluster.Leader)

	// Back with its DATA_DIR, it is the same member and is listed again.
	began = time.Now()
	bootstrap.Start(t)
	bootstrap.waitReady(t)
	view = c.waitStable(t, 30*time.Second)
	t.Logf("bootstrap node restarted and listed again after %v (epoch %d)", time.Since(began).Round(time.Millisecond), view.Cluster.Epoch)
	if after := etcdtest.Members(t, etcd); !maps.Equal(after, members) {
		t.Errorf("etcd members after the restart %v, before %v", after, members)
	}

	// One more member dies: two of three still make a quorum.
	killed = time.Now()
	others[0].Kill(t)
	view = c.waitStable(t, failoverTTL+15*time.Second)
	t.Logf("member %s killed: the other 4 serve a map without it after %v (epoch %d)",
		others[0].id, time.Since(killed).Round(time.Millisecond), view.Cluster.Epoch)

	// A second member of three dies: no quorum. Nothing may change, nothing may crash.
	frozen := view.Cluster.Epoch
	others[1].Kill(t)
	watchFor := failoverTTL + 3*time.Second
	deadline := time.Now().Add(watchFor)
	polls := 0
	for time.Now().Before(deadline) {
		for _, n := range c.running() {
			var v wiretest.Cluster
			if err := fetchJSON(c.httpc, n.addr, "/cluster", &v); err != nil {
				t.Fatalf("without quorum, %s stopped serving /cluster: %v", n.id, err)
			}
			if v.Cluster.Epoch != frozen {
				t.Fatalf("without quorum, %s serves epoch %d, the last map had %d", n.id, v.Cluster.Epoch, frozen)
			}
			polls++
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, n := range c.nodes {
		if n == others[0] || n == others[1] {
			continue
		}
		if n.State() == proctest.Exited {
			t.Fatalf("%s exited without quorum (status %d)", n.id, n.ExitStatus())
		}
		// Past its lease deadline a node claims no primary role: its lease may be gone.
		var claims wiretest.Claims
		if err := fetchJSON(c.httpc, n.addr, "/cluster/claims", &claims); err != nil {
			t.Fatal(err)
		}
		if !claims.Fenced || len(claims.Primaries) > 0 {
			t.Errorf("%s without quorum for %v: fenced %v, claims %d primaries", n.id, watchFor, claims.Fenced, len(claims.Primaries))
		}
	}
	t.Logf("no quorum for %v: %d answers of /cluster, all at epoch %d; every node fenced itself", watchFor, polls, frozen)

	// The member killed first comes back: the quorum with it, and the cluster moves on. It was
	// out of the map already, and the one killed last is still in it: the stable map that lists
	// exactly the running nodes takes two changes, a join and a crash.
	began = time.Now()
	others[0].Start(t)
	others[0].waitReady(t)
	view = c.waitStable(t, failoverTTL+30*time.Second)
	if view.Cluster.Epoch <= frozen {
		t.Errorf("after the quorum came back: epoch %d, was %d", view.Cluster.Epoch, frozen)
	}
	t.Logf("member %s back: quorum restored, and a map with it and without %s (epoch %d) after %v",
		others[0].id, others[1].id, view.Cluster.Epoch, time.Since(began).Round(time.Millisecond))

	// The member killed last is lost for good: an operator removes it with etcdctl's member
	// remove and deletes its record, and a client node takes the member place.
	began = time.Now()
	lost := others[1].id
	id, err := strconv.ParseUint(members[lost], 16, 64)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := etcd.MemberRemove(ctx, id); err != nil {
		t.Fatalf("etcdctl member remove %s: %v", members[lost], err)
	}
	if _, err := etcd.Delete(ctx, "/clusterkit/default/etcd-members/"+lost); err != nil {
		t.Fatal(err)
	}
	var after map[string]string
	waitFor(t, 30*time.Second, "a client node in the lost member's place", func() error {
		var err error
		if after, err = etcdtest.MemberList(etcd); err != nil {
			return fmt.Errorf("etcd member list: %w", err)
		}
		if len(after) != 3 {
			return fmt.Errorf("members %v", after)
		}
		records, err := etcdMemberRecords(etcd)
		if err != nil {
			return err
		}
		if !maps.Equal(records, after) {
			return fmt.Errorf("members %v, records %v", after, records)
		}
		return nil
	})
	if _, ok := after[lost]; ok {
		t.Errorf("%s is a member again: %v", lost, after)
	}
	t.Logf("lost member %s removed by hand: members %v after %v", lost, slices.Sorted(maps.Keys(after)), time.Since(began).Round(time.Millisecond))
}

// launchEmbedded starts a node on embedded etcd: a bootstrap node without join, else one that
// joins the node at join. Its HTTP port leaves room for the embedded etcd's ports (+10000 and
// +20000).
func (c *failoverCluster) launchEmbedded(t *testing.T, id, join string) *nodeProcess {
	t.Helper()
	var env []string
	if join != "" {
		env = append(env, "JOIN_ADDR="+join)
	}
	return c.launchOn(t, id, proctest.FreeNodePort, env...)
}

// etcdClient connects to the embedded etcd members that a running node names in
// GET /cluster/join.
func (c *failoverCluster) etcdClient(t *testing.T) *clientv3.Client {
	t.Helper()
	var info wiretest.Join
	waitFor(t, 10*time.Second, "every member's endpoint in /cluster/join", func() error {
		if err := fetchJSON(c.httpc, c.running()[0].addr, "/cluster/join", &info); err != nil {
			return err
		}
		if len(info.EtcdEndpoints) != 3 {
			return fmt.Errorf("endpoints %v", info.EtcdEndpoints)
		}
		return nil
	})
	cl, err := clientv3.New(clientv3.Config{Endpoints: info.EtcdEndpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}

// etcdMemberRecords returns /clusterkit/default/etcd-members/ as node ID -> member ID. It
// returns errors rather than failing the test: polled conditions call it.
func etcdMemberRecords(cl *clientv3.Client) (map[string]string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := cl.Get(ctx, "/clusterkit/default/etcd-members/", clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("read etcd-members/: %w", err)
	}
	out := map[string]string{}
	for _, kv := range resp.Kvs {
		var rec struct {
			NodeID   string `json:"node_id"`
			MemberID string `json:"member_id"`
		}
		if err := json.Unmarshal(kv.Value, &rec); err != nil {
			return nil, fmt.Errorf("%s: %w", kv.Key, err)
		}
		out[rec.NodeID] = rec.MemberID
	}
	return out, nil
}
