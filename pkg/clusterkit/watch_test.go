package clusterkit_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/clusterkit-go/clusterkit/internal/etcdtest"
	"github.com/clusterkit-go/clusterkit/internal/keys"
	"github.com/clusterkit-go/clusterkit/internal/mapstore"
	"github.com/clusterkit-go/clusterkit/pkg/clusterkit"
	"github.com/clusterkit-go/clusterkit/pkg/clustertest"
)

// A map too large for one etcd value is published in chunks and read whole by every node. The
// value limit is lowered so that a small map needs many chunks, which keeps the test fast under
// the race detector; internal/state tests the real limit with a 65536-partition map.
func TestLargeMapInChunks(t *testing.T) {
	// Restored after the cluster's cleanup has stopped every node (cleanups run last first).
	t.Cleanup(clusterkit.SetMaxMapValue(16 << 10))
	const partitions = 1024
	c := clustertest.New(t, clusterkit.Options{PartitionCount: partitions, ReplicationFactor: 3})
	for i := 1; i <= 3; i++ {
		c.Add(fmt.Sprintf("node-%d", i), copying)
	}
	c.WaitConverged(60 * time.Second)
	r, err := mapstore.ReadMap(context.Background(), c.Etcd(), keys.New(c.Name()), 0)
	if err != nil {
		t.Fatal(err)
	}
	if r.Map.Chunks < 2 {
		t.Fatalf("a map of %d partitions was stored in %d chunks", partitions, r.Map.Chunks)
	}
	c.Add("node-4")
	c.WaitConverged(60 * time.Second)
	// Only the current checkpoint's chunks and the deltas since remain.
	r, err = mapstore.ReadMap(context.Background(), c.Etcd(), keys.New(c.Name()), 0)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Etcd().Get(context.Background(), keys.New(c.Name()).AllChunksPrefix(), clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		t.Fatal(err)
	}
	deltas := 0
	for _, kv := range resp.Kvs {
		k, ok := keys.New(c.Name()).ParseMapKey(string(kv.Key))
		switch {
		case ok && k.Nodes:
			if k.Epoch != r.Map.NodesBase {
				t.Fatalf("node table %s left behind (the map builds on the one of epoch %d)", kv.Key, r.Map.NodesBase)
			}
		case !ok || k.Epoch < r.Map.Checkpoint || k.Epoch > r.Map.Epoch || k.Delta == (k.Epoch == r.Map.Checkpoint):
			t.Fatalf("stale key %s left behind (checkpoint %d, epoch %d)", kv.Key, r.Map.Checkpoint, r.Map.Epoch)
		case k.Delta:
			deltas++
		}
	}
	if r.Map.Epoch > r.Map.Checkpoint && deltas == 0 {
		t.Fatalf("epoch %d after checkpoint %d has no delta", r.Map.Epoch, r.Map.Checkpoint)
	}
	ck := anyNode(c)
	p, err := ck.GetPartition("user:123")
	if err != nil || ck.GetPrimary(p) == nil || len(ck.GetNodes(p)) != 3 {
		t.Fatalf("lookup in the large map: %v", err)
	}
}

// A watch that resumes from a revision etcd has compacted away reads the whole map again and
// carries on from there.
func TestWatchRereadsAfterCompaction(t *testing.T) {
	c := clustertest.New(t, clusterkit.Options{PartitionCount: 16})
	ck1 := c.Add("node-1")
	old, oldRev := clusterkit.RawMap(ck1), clusterkit.MapRevision(ck1)
	c.Add("node-2")
	c.Add("node-3")
	c.WaitConverged(10 * time.Second)
	resp, err := c.Etcd().Get(context.Background(), "compact-here")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Etcd().Compact(context.Background(), resp.Header.Revision); err != nil {
		t.Fatal(err)
	}

	// A watcher that last saw the first map, at a revision that is now compacted.
	w, err := clusterkit.NewClusterKit(c.Options("watcher"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { clusterkit.FollowFrom(ctx, w, c.Etcd(), c.Name(), old, oldRev); close(done) }()
	defer func() { cancel(); <-done }()

	want := ck1.Epoch()
	etcdtest.WaitFor(t, 10*time.Second, "watcher catches up", func() error {
		if got := w.Epoch(); got != want {
			return fmt.Errorf("watcher at epoch %d, want %d", got, want)
		}
		return nil
	})
	// And it follows later maps through the resumed watch.
	c.Stop("node-3")
	c.WaitConverged(10 * time.Second)
	want = ck1.Epoch()
	etcdtest.WaitFor(t, 10*time.Second, "watcher follows", func() error {
		if got := w.Epoch(); got != want {
			return fmt.Errorf("watcher at epoch %d, want %d", got, want)
		}
		return nil
	})
}
