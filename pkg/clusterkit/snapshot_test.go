package clusterkit

import (
	"errors"
	"testing"
	"time"
)

// Lookups read the snapshot: holders, roles and partitions passed back by the caller.
func TestSnapshotLookups(t *testing.T) {
	ck, err := NewClusterKit(Options{NodeID: "b", HTTPAddr: ":0", PartitionCount: 2})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ck.GetPartition("x"); !errors.Is(err, ErrNoPartitionMap) {
		t.Fatalf("before a map: %v", err)
	}
	ck.clock.deadline.Store(int64(time.Hour)) // as if the lease had just been renewed
	ck.maps.snap.Store(newSnapshot(testMap(1, []string{"a", "b", "c"}, []string{"a", "b", "c"}, []string{"b", "c"}), 1))
	p0 := &Partition{ID: "partition-0"}
	if got := ck.GetPrimary(p0); got == nil || got.ID != "a" {
		t.Fatalf("primary of partition-0: %v", got)
	}
	if ck.IsPrimary(p0) || !ck.IsReplica(p0) {
		t.Fatal("b should be a replica of partition-0")
	}
	if got := ck.GetReplicas(p0); len(got) != 2 || got[0].ID != "b" || got[1].ID != "c" {
		t.Fatalf("replicas: %v", got)
	}
	if got := ck.GetNodes(p0); len(got) != 3 || got[0].ID != "a" {
		t.Fatalf("nodes: %v", got)
	}
	p1 := &Partition{ID: "partition-1"}
	if !ck.IsPrimary(p1) || ck.IsReplica(p1) || !ck.IsPrimaryAt(p1, 1) || ck.IsPrimaryAt(p1, 0) {
		t.Fatal("b should be primary of partition-1 at primary epoch 1")
	}
	// Past the lease deadline the node claims nothing, even before the fencing goroutine ran.
	ck.clock.deadline.Store(0)
	if ck.IsPrimary(p1) || ck.IsPrimaryAt(p1, 1) || !ck.IsFenced() {
		t.Fatal("a node past its lease deadline claims a primary role")
	}
	ck.clock.deadline.Store(int64(time.Hour))
	for _, bad := range []*Partition{nil, {ID: "partition-2"}, {ID: "partition-01"}, {ID: "p-1"}} {
		if ck.GetPrimary(bad) != nil || ck.IsPrimary(bad) || ck.GetNodes(bad) != nil {
			t.Fatalf("unknown partition %v answered", bad)
		}
	}
	// A partition handed out by an older map is answered from the current one.
	old, _ := ck.GetPartition("user:123")
	ck.maps.snap.Store(newSnapshot(testMap(2, []string{"c"}, []string{"c"}, []string{"c"}), 2))
	if got := ck.GetPrimary(old); got == nil || got.ID != "c" {
		t.Fatalf("stale partition: primary %v, want c", got)
	}
}
