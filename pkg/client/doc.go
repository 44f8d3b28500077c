// Package client is the Go client of a ClusterKit cluster: it learns the partition map from any
// node (or from etcd), keeps it fresh, routes each key to its partition's nodes with exactly the
// nodes' hash, and runs operations on the primary with immediate fallback to the replicas.
//
// It does not import pkg/clusterkit: a client binary carries no etcd server, only (in etcd mode)
// the etcd client it is given. It reads GET /cluster and GET /cluster/map with the types of
// pkg/wire, the ones the nodes write them with.
//
// Quick start:
//
//	c, err := client.New(ctx, client.Config{Seeds: []string{"10.0.0.1:8080", "10.0.0.2:8080"}})
//	if err != nil { ... }
//	defer c.Close()
//
//	err = c.Do(ctx, "user:123", func(ctx context.Context, n client.Node, r client.Route) error {
//		return put(ctx, n.Metadata["data_addr"], "user:123", value, r.PrimaryEpoch)
//	})
//
// Where the map comes from. With Seeds, New reads GET /cluster from the first seed that
// answers; a goroutine of the client then long-polls GET /cluster/map?since=<epoch>&wait=20s on
// one node, which answers as soon as it holds a newer map, with only the partitions that
// changed since the client's epoch (and the node table); the client copies its map and replaces
// those. A node that answers 404 there (an older version) is long-polled with
// GET /cluster?wait=20s and the map's ETag instead, and answers the whole map. When that node
// fails, the poll moves at once to the next seed or to another node of the map, with a bounded
// backoff once every address has failed. With Etcd, the client reads the map from the cluster's etcd prefix
// and watches it, as the nodes themselves do. In both modes a new map reaches the client as
// soon as the node it follows (or etcd) has it: one HTTP answer or one watch event later, with
// no polling period.
//
// Guarantees:
//
//   - Route computes md5(key)[0:4] as a big-endian uint32 modulo the partition count, the
//     wire contract of the nodes (the same code: internal/partition). A cluster that publishes
//     another hash in hash_config is refused with ErrUnsupportedHash rather than misrouted.
//   - Route.Nodes lists only a partition's serving holders, primary first: never a node still
//     copying the partition in. Those are in Route.Pending, for writes that must reach every
//     future holder.
//   - The client never goes back to an older map (nor follows a node of another cluster).
//   - Route takes no lock and allocates nothing: the map is an immutable snapshot behind an
//     atomic pointer. Every method is safe for concurrent use.
//   - Do tries the primary, then each replica, at once, on connection failures (see
//     IsUnavailable) and on errors that wrap ErrUnavailable; a node that failed so is tried
//     last for a second. Other errors are returned as they are. When nothing worked the error
//     is an *AttemptsError naming every node tried and its error.
//   - Close stops the client's goroutine and waits for it.
//
// Not guaranteed: a node that hangs without closing its connections (paused, cut off by the
// network) holds the long poll up for up to 25s before the client moves on; Do notices a hung
// node only through op's own timeouts, which are not treated as unavailability (the node may
// have carried the operation out). Routing follows the map the client holds: between a node's
// death and the map without it (about one lease TTL), Do reaches the partition through the
// fallback, not through the map.
package client
