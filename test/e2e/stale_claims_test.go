package e2e

import (
	"fmt"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/clusterkit-go/clusterkit/internal/proctest"
	"github.com/clusterkit-go/clusterkit/internal/wiretest"
)

// A node whose lease expired while it was stopped (SIGSTOP longer than LEASE_TTL) registers again
// on SIGCONT; it must not claim the partitions others took over, at their old primary epochs,
// before it has read the maps published while it was stopped. Many partitions make its map watch
// slower than its registration, which is what used to expose the gap (1024 partitions keep the
// test quick under the race detector; 4096 exposed it more often).
func TestPausedNodeClaimsNothingStale(t *testing.T) {
	bin := buildNodeBinary(t)
	etcd := startPlainEtcdProcess(t)
	c := newFailoverCluster(t, bin, etcd.URL)
	for i := 1; i <= 3; i++ {
		id := fmt.Sprintf("node-%d", i)
		addr := fmt.Sprintf("127.0.0.1:%d", proctest.FreePort(t))
		n := newNodeProcess(t, bin, id, addr, []string{"NODE_ID=" + id, "HTTP_ADDR=" + addr, "ETCD_ENDPOINTS=" + etcd.URL, "CLUSTER_NAME=" + c.name,
			"LEASE_TTL=2s", "PARTITION_COUNT=1024", "REPLICATION_FACTOR=3", "DATA_DIR=" + filepath.Join(c.dir, id)})
		c.nodes = append(c.nodes, n)
		n.Start(t)
		n.waitReady(t)
	}
	httpc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{}}
	defer httpc.CloseIdleConnections()
	victim := c.nodes[0]
	var before wiretest.Claims
	waitFor(t, 90*time.Second, "a stable map in which node-1 leads partitions", func() error {
		before = wiretest.Claims{}
		if err := fetchJSON(httpc, victim.addr, "/cluster/claims", &before); err != nil {
			return err
		}
		var v wiretest.Cluster
		if err := fetchJSON(httpc, c.nodes[1].addr, "/cluster", &v); err != nil {
			return err
		}
		if before.Fenced || len(before.Primaries) == 0 || len(v.Cluster.Nodes) != 3 || len(v.Cluster.Handoffs) > 0 || v.Cluster.Epoch != before.Epoch {
			return fmt.Errorf("node-1 epoch %d, %d primaries; node-2 epoch %d, %d nodes, %d handoffs",
				before.Epoch, len(before.Primaries), v.Cluster.Epoch, len(v.Cluster.Nodes), len(v.Cluster.Handoffs))
		}
		return nil
	})
	t.Logf("node-1 leads %d partitions at map epoch %d; SIGSTOP for 5s (LEASE_TTL 2s)", len(before.Primaries), before.Epoch)
	victim.Pause(t)
	time.Sleep(5 * time.Second)
	var after wiretest.Cluster
	if err := fetchJSON(httpc, c.nodes[1].addr, "/cluster", &after); err != nil {
		t.Fatal(err)
	}
	t.Logf("meanwhile node-2 holds map epoch %d, without node-1: %v", after.Cluster.Epoch, after.Cluster.Nodes["node-1"].ID == "")
	victim.Resume(t)
	resumed := time.Now()
	for time.Since(resumed) < 5*time.Second {
		var a wiretest.Claims
		if err := fetchJSON(httpc, victim.addr, "/cluster/claims", &a); err != nil {
			continue
		}
		stale := 0
		for p, e := range a.Primaries {
			if before.Primaries[p] == e {
				stale++
			}
		}
		t.Logf("+%v: fenced=%v, map epoch %d, claims %d partitions, %d at the primary epochs held before the pause",
			time.Since(resumed).Round(time.Millisecond), a.Fenced, a.Epoch, len(a.Primaries), stale)
		if !a.Fenced && stale > 0 {
			t.Errorf("node-1 is unfenced and claims %d partitions that others lead since epoch %d", stale, after.Cluster.Epoch)
		}
		if a.Epoch > before.Epoch && !a.Fenced {
			break
		}
	}
}
