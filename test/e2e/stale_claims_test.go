package e2e

import (
	"fmt"
	"net/http"
	"testing"
	"time"

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
	c.partitions, c.replication = 1024, 3
	for i := 1; i <= 3; i++ {
		c.launch(t, fmt.Sprintf("node-%d", i)).waitReady(t)
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
	t.Logf("node-1 leads %d partitions at map epoch %d; SIGSTOP until the others publish a map without it (LEASE_TTL %v)",
		len(before.Primaries), before.Epoch, failoverTTL)
	victim.Pause(t)
	paused := time.Now()
	var after wiretest.Cluster
	waitFor(t, 30*time.Second, "node-2 holding a map without the paused node-1", func() error {
		after = wiretest.Cluster{} // decoding into a used map would keep its keys
		if err := fetchJSON(httpc, c.nodes[1].addr, "/cluster", &after); err != nil {
			return err
		}
		if _, ok := after.Cluster.Nodes["node-1"]; ok {
			return fmt.Errorf("node-2's map (epoch %d) still lists node-1", after.Cluster.Epoch)
		}
		return nil
	})
	t.Logf("%v after SIGSTOP, node-2 holds map epoch %d, without node-1", time.Since(paused).Round(time.Millisecond), after.Cluster.Epoch)
	victim.Resume(t)
	resumed := time.Now()
	answers, rejoined := 0, false
	for time.Since(resumed) < 15*time.Second {
		var a wiretest.Claims
		if err := fetchJSON(httpc, victim.addr, "/cluster/claims", &a); err != nil {
			time.Sleep(5 * time.Millisecond)
			continue
		}
		answers++
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
			rejoined = true
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	switch {
	case answers == 0:
		t.Errorf("node-1 never answered GET /cluster/claims within 15s of SIGCONT")
	case !rejoined:
		t.Errorf("node-1 did not register again within 15s of SIGCONT: never unfenced at a map epoch above %d", before.Epoch)
	}
}
