package clusterkit

import (
	"context"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/clusterkit-go/clusterkit/internal/keys"
	"github.com/clusterkit-go/clusterkit/internal/mapstore"
	"github.com/clusterkit-go/clusterkit/internal/state"
)

// This file exports, for the cluster tests of package clusterkit_test only, the few internals
// they check that no public API shows. Each is safe for concurrent use unless it says otherwise.

// RawMap returns the stored map behind ck's snapshot, pending copies and all, or nil before
// the first map. The map is immutable: never modify it.
func RawMap(ck *ClusterKit) *state.Map {
	if s := ck.maps.snapshot(); s != nil {
		return s.raw
	}
	return nil
}

// MapRevision returns the etcd revision ck's map was read at, 0 before the first map.
func MapRevision(ck *ClusterKit) int64 {
	if s := ck.maps.snapshot(); s != nil {
		return s.revision
	}
	return 0
}

// MapChanges returns a channel closed when ck applies its next map. Take it before reading
// RawMap, so that a map applied in between is not missed.
func MapChanges(ck *ClusterKit) <-chan struct{} { return ck.maps.changes() }

// SettleHooks blocks until ck has handed the hooks of the map it holds to its dispatcher and
// every hook has returned.
func SettleHooks(tb testing.TB, ck *ClusterKit) {
	tb.Helper()
	// A map is stored and its jobs are queued under the follower's lock: once it is free, the
	// jobs of every map the node holds are queued.
	ck.maps.mu.Lock()
	ck.maps.mu.Unlock()
	ck.hooks.dispatch.waitIdle()
}

// Lease returns the lease of ck's current registration, clientv3.NoLease before the first.
func Lease(ck *ClusterKit) clientv3.LeaseID { return ck.election.lease() }

// LeaseDeadline returns the time until which ck knows it holds its lease: it fences itself then
// unless the lease is renewed.
func LeaseDeadline(ck *ClusterKit) time.Time { return ck.clock.Deadline() }

// HookCalls returns the OnPartitionChange calls a change from map before to map after gives,
// as "partition-<i>-><to> from [<from>...]" in the order they are made.
func HookCalls(before, after *state.Map) []string {
	return eventStrings(diffHolders(newSnapshot(before, 0), newSnapshot(after, 0)))
}

// FollowFrom makes ck, a node that was never started, follow the map of cluster through client
// as a started node does: from map from, read at etcd revision rev, until ctx ends. It blocks.
func FollowFrom(ctx context.Context, ck *ClusterKit, client *clientv3.Client, cluster string, from *state.Map, rev int64) {
	ck.env.client = client
	ck.env.schema = keys.New(cluster)
	ck.env.config.PartitionCount = len(from.Partitions)
	ck.maps.begin(mapstore.Read{Map: from, ModRevision: rev, Revision: rev})
	ck.maps.run(ctx, rev)
}

// SetHistoryRecords sets how many history records the leader keeps, and returns the function
// that restores it; call it as SetMaxMapValue.
func SetHistoryRecords(n uint64) (restore func()) {
	old := historyRecords
	historyRecords = n
	return func() { historyRecords = old }
}

// SetMaxMapValue lowers the largest value a map write puts in etcd to v, so that a small map is
// stored in chunks, and returns the function that restores it. Not safe for concurrent use:
// call it before any node starts and restore it after every node has stopped (t.Cleanup
// registered before the cluster's).
func SetMaxMapValue(v int) (restore func()) {
	old := maxMapValue
	maxMapValue = v
	return func() { maxMapValue = old }
}
