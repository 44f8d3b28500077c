// Package store is the per-node key-value store that the examples share: a small, real store
// built on the public pkg/clusterkit API. ClusterKit says WHERE each key lives; this package
// decides HOW it is stored and copied.
//
// Each node keeps, in memory, the keys of the partitions it holds, grouped by partition. Every
// value carries a Version, (primary epoch, counter), that only grows for a key: a write made
// by a newer primary always wins over one made by an older primary, whatever order copies
// arrive in, so every copy and every migration simply merges by version.
//
// Quick start (the data API listens first: its address is published in the node's metadata):
//
//	l, _ := net.Listen("tcp", "127.0.0.1:9080")
//	ck, _ := clusterkit.NewClusterKit(clusterkit.Options{NodeID: "node-1", HTTPAddr: ":8080",
//		Metadata: map[string]string{store.AddrKey: l.Addr().String()}})
//	s, _ := store.New(ck, store.Options{Token: os.Getenv(store.TokenEnv)}) // before Start: it registers hooks
//	go http.Serve(l, s.Handler())
//	ck.Start()
//	v, err := s.Put(ctx, "user:123", "John") // on the partition's primary
//
// What it does:
//
//   - Put, on the partition's primary, stamps the write with the partition's primary epoch and
//     a counter, stores it, and replicates it to the replicas and to the nodes copying the
//     partition in: before answering (Sync) or from a queue in the background (Async).
//   - A node that is not the primary at the epoch it read, or is self-fenced, refuses Put with a
//     *NotPrimaryError (HTTP 421) so that the caller re-routes.
//   - A replica refuses a replicated write stamped with an older primary epoch than it knows for
//     the partition (HTTP 409, ErrStaleEpoch): it comes from a deposed primary. In Async mode a
//     primary whose queued writes are refused so hands them to the partition's new primary,
//     which adopts them (merging by version: an older write never replaces a newer one) and
//     replicates them under its own epoch.
//   - When the node is asked to hold a partition (OnPartitionChange), it fetches the partition
//     from every copyFromNode and merges by version; the hook returns only when that is done,
//     and ClusterKit keeps routing to the old holders until then. A Released event drops the copy.
//   - Counters for replication and migration, on GET /store/stats.
//   - With Options.Token (the cluster's join token) every endpoint requires "Authorization:
//     Bearer <token>" (401 unauthorized otherwise, before the body is read), and the store sends
//     it to the other nodes; without one the API is open. A value is limited to
//     Options.MaxValueBytes (1 MiB by default), a key to 4 KiB, and every request body to what
//     the largest legal request takes in JSON (413 too_large beyond).
//
// HTTP data API (Handler), all bodies JSON:
//
//	POST /store/put        {"key","value"}: primary write; 421 not_primary, 503 replication_failed, 413 too_large
//	GET  /store/get?key=k  read on the primary (421 not_primary); &local=1 reads this node's copy
//	POST /store/replicate  ReplicateRequest from a primary; 409 stale_epoch, 421 not_holder
//	POST /store/adopt      ReplicateRequest from a former primary, to the current one; 421 not_primary
//	GET  /store/export?partition=p&min_epoch=e&node=id&addr=a   a partition's entries, for migration
//	                       (streamed: a partition is not limited in size); node and addr tell this
//	                       node where to send its next writes of the partition
//	GET  /store/stats      Stats
//
// With a token, every one of them answers 401 unauthorized without it.
//
// What it does not do: keep data on disk (a restarted node starts empty and copies in), delete
// keys, or bound memory. With Async replication, writes acknowledged by a primary that dies
// before its queue is sent are lost (see examples/async/README.md).
package store
