// Package clusterkit tells a distributed data system where each key lives: key -> partition ->
// primary and replica nodes. It keeps the cluster's membership, elects a leader and publishes the
// partition map through etcd; the application stores and copies the data itself, and is called
// when a partition gets a new holder.
//
// Quick start (the first node starts an embedded etcd; the others join through it):
//
//	ck, err := clusterkit.NewClusterKit(clusterkit.Options{NodeID: "node-1", HTTPAddr: ":8080"})
//	if err != nil { ... }
//	ck.OnPartitionChange(func(partitionID string, copyFrom []*clusterkit.Node, copyTo *clusterkit.Node) {
//		if copyTo.ID != ck.GetMyNodeID() { return }
//		// fetch partitionID from every node in copyFrom and merge
//	})
//	if err := ck.Start(); err != nil { ... }
//	defer ck.Stop()
//
//	p, _ := ck.GetPartition("user:123")
//	if ck.IsPrimary(p) { ... } else { forward to ck.GetPrimary(p).IP }
//
// How it works. Each node registers under /clusterkit/<cluster>/nodes/<id> with an etcd lease
// (Options.LeaseTTL) and campaigns for leadership. The leader recomputes the map with
// pkg/rebalance whenever the set of live nodes changes and writes it in one transaction that
// fails unless it still holds its leader key and the map is the one it read; its work stops the
// moment its session ends, its key disappears, or its lease deadline passes. Every node watches
// the map, never applies one older than it holds, and serves lookups from an immutable snapshot.
//
// Guarantees:
//
//   - Key -> partition is md5-based and fixed (golden vectors in the tests and the README); every client can
//     compute it.
//   - Each partition has min(N, ReplicationFactor) distinct live holders after every published
//     map; a lost node's partitions are given to others even when N <= ReplicationFactor.
//   - The map epoch only grows; a node never goes back to an older map.
//   - A deposed leader's write is refused by etcd.
//   - Lookups take no lock and allocate nothing; they are safe for concurrent use.
//   - Hooks run on a bounded pool, never on the watch; a panicking hook is logged, not fatal.
//   - Handoff without a gap: a node that must copy a partition in is listed as pending and
//     not routed to until its OnPartitionChange hooks have returned and it has acknowledged.
//   - A crashed primary is replaced at once by a surviving holder; every change of primary
//     raises the partition's PrimaryEpoch, the fencing token checked by IsPrimaryAt.
//   - A node that cannot renew its lease claims no primary role from its lease deadline on.
//
// Embedded etcd. A node started with neither JoinAddr nor etcd settings creates a cluster on an
// etcd member embedded in it. The first Options.EmbeddedMembers nodes to join (3 by default; 1, 3
// or 5) run an etcd member too: each is added as a learner, which does not count towards the
// quorum while it copies the data, and promoted once it has caught up; joins are decided under a
// lock in etcd, so that concurrent joins never exceed the count. The other nodes are clients of
// those members. Every node keeps its client pointed at all members and remembers them in its
// DataDir, so no node, the bootstrap node included, is needed by the others; a member node
// restarted with its DataDir is the same member again. Decommission removes a member node for
// good, and a client node takes its member place.
//
// Not guaranteed: the cluster survives the loss of (EmbeddedMembers-1)/2 member nodes at once
// (none with 1 member). Without a quorum of members nothing changes: lookups keep answering from
// the last map, every node stops claiming primary roles once its lease deadline passes, and a
// node cannot start; once a quorum is back, the nodes renew or re-register and the map moves on.
// A member lost for good is not replaced by itself (a crash cannot be told from a long outage):
// remove it with etcdctl member remove, then delete its record under etcd-members/, and a client
// node takes the place.
package clusterkit
