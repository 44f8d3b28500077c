package clusterkit

import (
	"context"
	"fmt"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/clusterkit-go/clusterkit/internal/keys"
	"github.com/clusterkit-go/clusterkit/internal/state"
)

// A map too large for one etcd value is published in chunks and read whole by every node. The
// value limit is lowered so that a small map needs many chunks, which keeps the test fast under
// the race detector; internal/state tests the real limit with a 65536-partition map.
func TestLargeMapInChunks(t *testing.T) {
	defer func(v int) { maxMapValue = v }(maxMapValue)
	maxMapValue = 16 << 10
	const partitions = 1024
	tc := newTestCluster(t, Options{PartitionCount: partitions, ReplicationFactor: 3})
	for i := 1; i <= 3; i++ {
		tc.start(fmt.Sprintf("node-%d", i))
	}
	tc.waitConverged(60 * time.Second)
	r, err := state.ReadMap(context.Background(), tc.etcd.Client, keys.New(tc.name), 0)
	if err != nil {
		t.Fatal(err)
	}
	if r.Map.Chunks < 2 {
		t.Fatalf("a map of %d partitions was stored in %d chunks", partitions, r.Map.Chunks)
	}
	tc.start("node-4")
	tc.waitConverged(60 * time.Second)
	// Only the current epoch's chunks remain.
	resp, err := tc.etcd.Client.Get(context.Background(), keys.New(tc.name).AllChunksPrefix(), clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	epoch := tc.live()[0].Epoch()
	for _, kv := range resp.Kvs {
		if want := keys.New(tc.name).ChunksPrefix(epoch); string(kv.Key[:len(want)]) != want {
			t.Fatalf("stale chunk %s left behind (epoch %d)", kv.Key, epoch)
		}
	}
	ck := tc.live()[0]
	p, err := ck.GetPartition("user:123")
	if err != nil || ck.GetPrimary(p) == nil || len(ck.GetNodes(p)) != 3 {
		t.Fatalf("lookup in the large map: %v", err)
	}
}

// A watch that resumes from a revision etcd has compacted away reads the whole map again and
// carries on from there.
func TestWatchRereadsAfterCompaction(t *testing.T) {
	tc := newTestCluster(t, Options{})
	tc.start("node-1")
	old := tc.nodes["node-1"].maps.snapshot()
	tc.start("node-2")
	tc.start("node-3")
	tc.waitConverged(10 * time.Second)
	resp, err := tc.etcd.Client.Get(context.Background(), "compact-here")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tc.etcd.Client.Compact(context.Background(), resp.Header.Revision); err != nil {
		t.Fatal(err)
	}

	// A watcher that last saw the first map, at a revision that is now compacted.
	w, err := NewClusterKit(tc.options("watcher"))
	if err != nil {
		t.Fatal(err)
	}
	w.env.client = tc.etcd.Client
	w.env.schema = keys.New(tc.name)
	w.env.config.PartitionCount = 16
	ctx, cancel := context.WithCancel(context.Background())
	w.maps.begin(state.Read{Map: old.raw, ModRevision: old.revision, Revision: old.revision})
	done := make(chan struct{})
	go func() { w.maps.run(ctx, old.revision); close(done) }()
	defer func() { cancel(); <-done }()

	want := tc.nodes["node-1"].Epoch()
	waitFor(t, 10*time.Second, "watcher catches up", func() error {
		if got := w.Epoch(); got != want {
			return fmt.Errorf("watcher at epoch %d, want %d", got, want)
		}
		return nil
	})
	// And it follows later maps through the resumed watch.
	tc.stop("node-3")
	tc.waitConverged(10 * time.Second)
	want = tc.nodes["node-1"].Epoch()
	waitFor(t, 10*time.Second, "watcher follows", func() error {
		if got := w.Epoch(); got != want {
			return fmt.Errorf("watcher at epoch %d, want %d", got, want)
		}
		return nil
	})
}
