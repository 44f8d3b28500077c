package client

import "github.com/clusterkit-go/clusterkit/internal/topology"

// Node is a member of the cluster as the client sees it:
//
//	ID        the node's unique name
//	Addr      the host:port of the node's ClusterKit HTTP API (the "ip" of GET /cluster)
//	Zone      the node's failure domain, if it has one
//	Metadata  what the application published for the node, for example the address of its
//	          own data service
//
// Values handed out by the client share their Metadata map with its snapshot of the topology:
// do not modify it.
type Node = topology.Node

// Route is where a key goes: its partition and the nodes that serve it.
//
//	Partition     the partition's ID, "partition-<Index>"
//	Index         the partition's index
//	Epoch         the epoch of the map the route comes from
//	PrimaryEpoch  the map epoch at which the current primary took the role: the fencing
//	              token to stamp writes with (replicas refuse writes stamped with an older one)
//	Nodes         the partition's routable holders, primary first, then the replicas; nodes
//	              still copying the partition in are never listed
//	Pending       nodes copying the partition in: not routable yet, but a write that must
//	              survive the handoff goes to them too (a node's copy may have been taken
//	              before the write)
//
// Nodes and Pending are shared with the client's snapshot: do not modify them. Its method
// Primary returns the partition's primary, the first of Nodes.
type Route = topology.Route
