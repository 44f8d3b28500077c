package clusterkit

import (
	"maps"

	"github.com/clusterkit-go/clusterkit/internal/state"
)

// Node is a member of the cluster. Values handed out by ClusterKit are shared with its
// snapshot of the map and must not be modified. Its JSON is that of wire.Node, as GET /cluster
// lists it, without the weight and state GET /cluster adds: those follow the operators'
// records under admin/, which change without a new map, while a Node belongs to one map.
type Node struct {
	// ID is the node's unique name (Options.NodeID).
	ID string `json:"id"`
	// IP is the host:port peers reach the node's ClusterKit HTTP API at (Options.AdvertiseAddr).
	IP string `json:"ip"`
	// Zone is the failure domain the node is in (Options.Zone); the holders of a partition are
	// spread over zones.
	Zone string `json:"zone,omitempty"`
	// Metadata is what the application published for the node (Options.Metadata), for example
	// the address of its own data service.
	Metadata map[string]string `json:"metadata,omitempty"`
}

// Partition is one partition and its holders. Values handed out by ClusterKit belong to an
// immutable snapshot of the map and must not be modified. Its JSON is that of wire.Partition, as
// GET /cluster lists it.
type Partition struct {
	// ID is "partition-<index>".
	ID string `json:"id"`
	// PrimaryNode is the ID of the node that holds the primary copy.
	PrimaryNode string `json:"primary_node"`
	// ReplicaNodes are the IDs of the other holders, in order.
	ReplicaNodes []string `json:"replica_nodes"`
	// PrimaryEpoch is the map epoch at which PrimaryNode became primary. It grows every time the
	// primary changes: stamp writes with it, and have replicas refuse writes stamped with an
	// older one (see IsPrimaryAt).
	PrimaryEpoch uint64 `json:"primary_epoch"`
	// Epoch is the epoch of the map this value comes from.
	Epoch uint64 `json:"epoch"`
	// PendingNodes are nodes copying the partition in. They are not routed to: they become
	// holders in a later map, once their copy is acknowledged.
	PendingNodes []string `json:"pending_nodes,omitempty"`

	index int
}

// Index is the partition's number, between 0 and the partition count.
func (p *Partition) Index() int { return p.index }

func nodeFromRecord(r state.Node) Node {
	return Node{ID: r.ID, IP: r.IP, Zone: r.Zone, Metadata: maps.Clone(r.Metadata)}
}
