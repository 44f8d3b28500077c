package clusterkit_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/clusterkit-go/clusterkit/internal/keys"
	"github.com/clusterkit-go/clusterkit/internal/mapstore"
	"github.com/clusterkit-go/clusterkit/internal/proctest"
	"github.com/clusterkit-go/clusterkit/internal/state"
	"github.com/clusterkit-go/clusterkit/pkg/clusterkit"
	"github.com/clusterkit-go/clusterkit/pkg/clustertest"
)

// The documented maximum of partitions: three nodes form a cluster, then three more join at once,
// and every map published on the way keeps the invariants (the checker of pkg/clustertest reads
// every one from etcd: no epoch going back, one primary per primary epoch, no routing to a node
// still copying). The join is published in a few maps, and what each wrote follows the change:
// the partitions that changed and the node table, not the whole map every time. The timings of
// this case, and of larger ones, are measured by go run ./test/scale, not asserted here.
func TestLargestMapJoinsInFewMaps(t *testing.T) {
	if testing.Short() {
		t.Skip("forms a 65536-partition cluster")
	}
	const partitions = clusterkit.MaxPartitionCount
	// Under the race detector a node takes several times longer to read and apply the map, and
	// the suite runs other packages' node processes beside it on the same cores: the lease is
	// the scale scenarios' 5s (the kit's 2s expired under that load, and the cluster churned),
	// and the bounds are generous, since only the invariants and the number of maps are
	// asserted.
	// No copy may time out either: under that load tens of thousands of copy hooks and their
	// acknowledgements can outlast the default 2-minute HandoffTimeout, and a copy asked again
	// makes the acknowledgements of the first request stale (seen once: attempt 3 of a copy
	// after 4 minutes).
	c := clustertest.New(t, clusterkit.Options{PartitionCount: partitions, ReplicationFactor: 3,
		LeaseTTL: 5 * time.Second, StartTimeout: 4 * time.Minute, HandoffTimeout: 10 * time.Minute})
	for i := 1; i <= 3; i++ {
		c.Add(fmt.Sprintf("node-%d", i))
	}
	c.WaitConverged(4 * time.Minute)
	before := readMap(t, c)
	checkpoint := before.CheckpointBytes

	var wg sync.WaitGroup
	errs := make(chan error, 3)
	for i := 4; i <= 6; i++ {
		wg.Go(func() {
			if _, err := c.TryStart(c.Options(fmt.Sprintf("node-%d", i))); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	c.WaitConverged(4 * time.Minute)
	after := readMap(t, c)
	maps := after.Epoch - before.Epoch
	t.Logf("3 -> 6 nodes at %d partitions: %d maps (epochs %d to %d), %d maps checked", partitions, maps, before.Epoch, after.Epoch, c.MapsChecked())
	// Three joins coalesce into one to three membership maps, and the copies of each into
	// a few completion maps, however many partitions moved. Completions are published as the
	// copies finish, at most a second apart: under the race detector the copies of the same
	// join take ten seconds and more (8 and 13 maps seen), so more maps are allowed; one map
	// per batch of acknowledgements would still be several times this.
	limit := uint64(10)
	if proctest.RaceEnabled {
		limit = 24
	}
	if maps > limit {
		t.Errorf("the join took %d maps, want at most %d", maps, limit)
	}
	if after.Chunks == 0 || checkpoint == 0 {
		t.Fatalf("a %d-partition map is stored inline", partitions)
	}
	// Each delta since the checkpoint holds only what changed: the map after the join has a
	// third of its replicas on new nodes, so its deltas may outweigh it once, not each time.
	if after.DeltaBytes > after.CheckpointBytes {
		t.Errorf("deltas of %d bytes on a checkpoint of %d", after.DeltaBytes, after.CheckpointBytes)
	}
	for _, ck := range c.Nodes() {
		p, err := ck.GetPartition("user:42")
		if err != nil || ck.GetPrimary(p) == nil || len(ck.GetNodes(p)) != 3 {
			t.Fatalf("%s: lookup in the largest map: %v", ck.GetMyNodeID(), err)
		}
	}
}

func readMap(t *testing.T, c *clustertest.Cluster) *state.Map {
	t.Helper()
	r, err := mapstore.ReadMap(context.Background(), c.Etcd(), keys.New(c.Name()), 0)
	if err != nil || r.Map == nil {
		t.Fatalf("read the map: %v", err)
	}
	return r.Map
}
