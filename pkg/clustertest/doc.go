// Package clustertest runs a ClusterKit cluster inside an application's own tests: real nodes
// (pkg/clusterkit) in the test process, on a real etcd embedded in the test, on 127.0.0.1 with
// free ports and the test's temporary directories.
//
//	c := clustertest.New(t, clusterkit.Options{PartitionCount: 16})
//	rec := clustertest.NewRecorder()
//	c.Start(c.Options("node-1"), rec.Attach, myStore.Attach)
//	c.Add("node-2")
//	c.WaitConverged(10 * time.Second)
//	c.Crash("node-2")  // as kill -9, with the lease expired at once
//	c.WaitConverged(10 * time.Second)
//
// What it gives:
//   - Start, Add, Stop (graceful), Drain, Kill (goroutines stopped without a word to etcd, as
//     kill -9: the lease expires after its TTL), Crash (Kill, then the node's lease revoked, as
//     if its TTL had passed) and Pause/Resume (the node's etcd
//     traffic held, as a frozen process or a network partition looks to the others; the node
//     itself keeps running and fences itself after its lease deadline).
//   - Converged and WaitConverged: every live node holds the same map, placed on exactly the
//     live nodes, with min(N, ReplicationFactor) distinct holders per partition, no copy in
//     flight, and one leader.
//   - An invariant checker that follows every map published in etcd and fails the test at its
//     end if any map broke an invariant: two nodes primary of one partition at one primary
//     epoch, an epoch or primary epoch going backwards, a partition with fewer than
//     min(N, ReplicationFactor) holders and copies, or a node routed to while it still copies
//     (see Violations).
//   - A Recorder of OnPartitionChange calls and OnEvent events, per node.
//
// Each node reaches etcd through a proxy of its own (that is how Pause works), with its own etcd
// client, as separate processes would. Nodes are stopped when the test ends. The cluster's name
// is the test's name, so tests may share nothing but the process.
package clustertest
