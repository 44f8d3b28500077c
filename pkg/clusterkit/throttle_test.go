package clusterkit_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/clusterkit-go/clusterkit/internal/etcdtest"
	"github.com/clusterkit-go/clusterkit/pkg/clusterkit"
	"github.com/clusterkit-go/clusterkit/pkg/clustertest"
	"github.com/clusterkit-go/clusterkit/pkg/wire"
	"github.com/prometheus/client_golang/prometheus"
)

// throttleRun is what one join under a MaxHandoffsPerNode bound did.
type throttleRun struct {
	copies int
	// mostInto and mostOutOf are the most copies in flight into one node and out of one node in
	// any map; mostRunning the most copy hooks running at once on the joining node.
	mostInto, mostOutOf, mostRunning int
	maps                             int
	queuedSeen                       bool
	took                             time.Duration
}

// throttledJoin joins node-3 to node-1 and node-2 at p partitions (R=2) with copies that take
// delay each, under the bound limit (0: none), and measures the join until it settles.
func throttledJoin(t *testing.T, p, limit int, delay time.Duration) throttleRun {
	c := clustertest.New(t, clusterkit.Options{PartitionCount: p, ReplicationFactor: 2, MaxHandoffsPerNode: limit})
	c.Add("node-1")
	c.Add("node-2")
	// Under the bound the two nodes' own forming copies go a few at a time too.
	c.WaitConverged(time.Minute + time.Duration(p/max(limit, 1))*250*time.Millisecond)
	log := recordMaps(t, c)
	var run throttleRun
	var mu sync.Mutex
	running := 0
	start := time.Now()
	c.Add("node-3", func(ck *clusterkit.ClusterKit) {
		ck.OnPartitionChange(func(id string, from []*clusterkit.Node, to *clusterkit.Node) {
			if to == nil || to.ID != "node-3" {
				return
			}
			mu.Lock()
			running++
			run.copies++
			run.mostRunning = max(run.mostRunning, running)
			mu.Unlock()
			time.Sleep(delay)
			mu.Lock()
			running--
			mu.Unlock()
		})
	})
	url := fmt.Sprintf("http://%s/cluster", c.Node("node-1").AdvertiseAddr())
	for c.Converged() != nil {
		if !run.queuedSeen {
			if resp, err := http.Get(url); err == nil {
				var body wire.Cluster
				if json.NewDecoder(resp.Body).Decode(&body) == nil && body.Cluster.Queued["node-3"] > 0 {
					run.queuedSeen = true
				}
				resp.Body.Close()
			}
		}
		if limit := 3*time.Minute + time.Duration(p)*100*time.Millisecond; time.Since(start) > limit {
			t.Fatalf("the join did not settle in %v: %v", limit, c.Converged())
		}
		time.Sleep(5 * time.Millisecond)
	}
	run.took = time.Since(start)
	for _, m := range log.all(t, c) {
		into, outOf := map[string]int{}, map[string]int{}
		for i := range m.Partitions {
			e := &m.Partitions[i]
			for _, pd := range e.Pending {
				into[pd.Node]++
				outOf[e.Holders[0]]++
			}
		}
		for _, k := range into {
			run.mostInto = max(run.mostInto, k)
		}
		for _, k := range outOf {
			run.mostOutOf = max(run.mostOutOf, k)
		}
		if len(into) > 0 {
			run.maps++
		}
	}
	return run
}

// A node joining under MaxHandoffsPerNode: no map asks for more copies into a node or out of
// one than the bound, the joining node never runs more copy hooks at once, GET /cluster shows
// the copies waiting as queued, and the join settles. The same join without a bound runs in the
// same test for comparison. CLUSTERKIT_THROTTLE_PARTITIONS and CLUSTERKIT_THROTTLE_LIMIT run it
// at another size (the README's figures: 4096 and 4).
func TestThrottledJoinBoundsCopies(t *testing.T) {
	p, limit := 64, 2
	if v, err := strconv.Atoi(os.Getenv("CLUSTERKIT_THROTTLE_PARTITIONS")); err == nil {
		p = v
	}
	if v, err := strconv.Atoi(os.Getenv("CLUSTERKIT_THROTTLE_LIMIT")); err == nil {
		limit = v
	}
	const delay = 2 * time.Millisecond
	bounded := throttledJoin(t, p, limit, delay)
	free := throttledJoin(t, p, 0, delay)
	for _, r := range []struct {
		name string
		run  throttleRun
	}{{fmt.Sprintf("MaxHandoffsPerNode %d", limit), bounded}, {"no bound", free}} {
		t.Logf("P=%d, 2 -> 3 nodes, copies of %v: %-22s %4d copies, most in flight into a node %4d, out of a node %4d, hooks at once %3d, %3d maps with copies, settled in %v",
			p, delay, r.name, r.run.copies, r.run.mostInto, r.run.mostOutOf, r.run.mostRunning, r.run.maps, r.run.took.Round(time.Millisecond))
	}
	t.Logf("settling took %.1fx as long under the bound", bounded.took.Seconds()/free.took.Seconds())
	if bounded.mostInto > limit || bounded.mostOutOf > limit || bounded.mostRunning > limit {
		t.Fatalf("bound %d: %d copies in flight into a node, %d out of one, %d hooks at once", limit, bounded.mostInto, bounded.mostOutOf, bounded.mostRunning)
	}
	if !bounded.queuedSeen || bounded.copies < bounded.mostInto*2 {
		t.Fatalf("bound %d: GET /cluster showed queued copies: %v; %d copies", limit, bounded.queuedSeen, bounded.copies)
	}
	if free.mostInto <= limit {
		t.Fatalf("without a bound only %d copies were in flight at once: the join does not exercise the bound", free.mostInto)
	}
}

// The leader reports the copies waiting for a slot by node, next to those in flight.
func TestQueuedHandoffsMetric(t *testing.T) {
	c := clustertest.New(t, clusterkit.Options{PartitionCount: 8, ReplicationFactor: 2, MaxHandoffsPerNode: 2})
	reg := prometheus.NewRegistry()
	o1 := c.Options("node-1")
	o1.Registerer = reg
	c.Start(o1)
	c.WaitConverged(10 * time.Second)
	release := make(chan struct{})
	defer close(release)
	c.Add("node-2", func(ck *clusterkit.ClusterKit) {
		ck.OnPartitionChange(func(_ string, _ []*clusterkit.Node, to *clusterkit.Node) {
			if to.ID == "node-2" {
				<-release
			}
		})
	})
	etcdtest.WaitFor(t, 5*time.Second, "node-2's copies in flight and queued", func() error {
		return expect{
			"clusterkit_handoffs_running node=node-2": 2,
			"clusterkit_handoffs_queued node=node-2":  6,
			"clusterkit_handoffs_queued node=node-1":  0,
		}.check(t, reg)
	})
}
