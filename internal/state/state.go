// Package state holds the values ClusterKit stores in etcd (JSON, readable with etcdctl) and
// the encoding of the partition map, including the chunked form used for maps too large for
// one etcd value. It does no I/O: it says which keys to read and what to write, and
// internal/mapstore reads and writes them in etcd.
package state

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/clusterkit-go/clusterkit/internal/keys"
	"github.com/clusterkit-go/clusterkit/internal/partition"
	"github.com/clusterkit-go/clusterkit/pkg/rebalance"
	"github.com/clusterkit-go/clusterkit/pkg/wire"
)

// Hash algorithms a cluster can be configured with.
const (
	HashMD5 = "md5"
)

// HashConfig says how a key maps to a partition. The config key stores the very document every
// node serves as hash_config in GET /cluster: one declaration keeps the two the same.
type HashConfig = wire.HashConfig

// Config is the cluster's fixed settings, stored once under the config key.
type Config struct {
	ClusterID         string     `json:"cluster_id"`
	PartitionCount    int        `json:"partition_count"`
	ReplicationFactor int        `json:"replication_factor"`
	Hash              HashConfig `json:"hash"`
	// EmbeddedMembers is how many nodes run an embedded etcd member: 1, 3 or 5 for a cluster
	// created by a node with embedded etcd, 0 for a cluster on an external etcd.
	EmbeddedMembers int       `json:"embedded_members,omitempty"`
	CreatedAt       time.Time `json:"created_at"`
}

// Check reports why a stored config cannot be used: no cluster ID, a partition count outside
// 1..65536, a replication factor outside 1..16, a hash other than md5 modulo the partition count,
// or an embedded member count other than 0, 1, 3 or 5.
func (c Config) Check() error {
	switch {
	case c.ClusterID == "":
		return fmt.Errorf("no cluster_id")
	case c.PartitionCount < 1 || c.PartitionCount > 1<<16:
		return fmt.Errorf("partition_count %d outside 1..65536", c.PartitionCount)
	case c.ReplicationFactor < 1 || c.ReplicationFactor > 16:
		return fmt.Errorf("replication_factor %d outside 1..16", c.ReplicationFactor)
	case c.Hash.Algorithm != HashMD5 || c.Hash.Modulo != c.PartitionCount:
		return fmt.Errorf("hash %s modulo %d, want %s modulo the partition count %d", c.Hash.Algorithm, c.Hash.Modulo, HashMD5, c.PartitionCount)
	case c.EmbeddedMembers != 0 && c.EmbeddedMembers != 1 && c.EmbeddedMembers != 3 && c.EmbeddedMembers != 5:
		return fmt.Errorf("embedded_members %d is not 0, 1, 3 or 5", c.EmbeddedMembers)
	}
	return nil
}

// EtcdMember records the embedded etcd member a node runs, under etcd-members/<node-id>, so that
// an operator can tell which member to remove for which node. While the node becomes a member
// (learner, catch-up, promotion) the record reserves its place: Joining is set, MemberID is
// empty, and the record lives on a lease that the joining node keeps alive, so that the place
// frees itself when that node dies.
type EtcdMember struct {
	NodeID string `json:"node_id"`
	// MemberID is the etcd member ID in hex, as etcdctl member list prints it; empty while
	// Joining.
	MemberID   string    `json:"member_id"`
	Joining    bool      `json:"joining,omitempty"`
	PeerURLs   []string  `json:"peer_urls"`
	ClientURLs []string  `json:"client_urls"`
	JoinedAt   time.Time `json:"joined_at"`
}

// Differs names the first fixed setting in which c and other differ, and returns "" when
// they agree. ClusterID and CreatedAt are not settings and are ignored.
func (c Config) Differs(other Config) (setting string, ours, theirs any) {
	switch {
	case c.PartitionCount != other.PartitionCount:
		return "PartitionCount", c.PartitionCount, other.PartitionCount
	case c.ReplicationFactor != other.ReplicationFactor:
		return "ReplicationFactor", c.ReplicationFactor, other.ReplicationFactor
	case c.Hash.Algorithm != other.Hash.Algorithm:
		return "Hash", c.Hash.Algorithm, other.Hash.Algorithm
	}
	return "", nil, nil
}

// Node is a node's record under nodes/<id>, and its entry in the map's node table.
type Node struct {
	ID       string            `json:"id"`
	IP       string            `json:"ip"`
	Zone     string            `json:"zone,omitempty"`
	Weight   int               `json:"weight,omitempty"`
	Metadata map[string]string `json:"metadata,omitempty"`
	// EtcdEndpoints are the client URLs of the etcd member embedded in this node, if any.
	EtcdEndpoints []string `json:"etcd_endpoints,omitempty"`
	// Instance identifies one life of a node's data directory, so that a node restarted with
	// its DataDir can take back its own record before the old lease expires.
	Instance  string    `json:"instance,omitempty"`
	StartedAt time.Time `json:"started_at"`
	// State is "" for a serving node, NodeDraining while it hands its partitions over, and
	// NodeLeaving in the instant before it revokes its lease on Stop.
	State string `json:"state,omitempty"`
	// NoHandoff says the node runs no OnPartitionChange hook: it copies nothing in, and would
	// acknowledge every copy at once, so a partition placed on it serves there at once, without
	// a handoff and the map that completes it.
	NoHandoff bool `json:"no_handoff,omitempty"`
}

// Node states.
const (
	NodeDraining = "draining"
	NodeLeaving  = "leaving"
)

// Check reports why a node record cannot take part in placement: an ID that is not a valid node
// ID, no address, a weight outside [0, rebalance.MaxWeight], or an unknown state. (Weight 0 is
// a record from before weights, read as 1.)
func (n Node) Check() error {
	if err := keys.ValidNodeID(n.ID); err != nil {
		return err
	}
	switch {
	case n.IP == "":
		return fmt.Errorf("node %q has no address", n.ID)
	case n.Weight < 0 || n.Weight > rebalance.MaxWeight:
		return fmt.Errorf("node %q has weight %d, outside [1, %d]", n.ID, n.Weight, rebalance.MaxWeight)
	case n.State != "" && n.State != NodeDraining && n.State != NodeLeaving:
		return fmt.Errorf("node %q has unknown state %q", n.ID, n.State)
	}
	return nil
}

// Equal reports whether two records describe the node the same way.
func (n Node) Equal(o Node) bool {
	return n.ID == o.ID && n.IP == o.IP && n.Zone == o.Zone && n.Weight == o.Weight &&
		n.Instance == o.Instance && n.State == o.State && n.StartedAt.Equal(o.StartedAt) &&
		slices.Equal(n.EtcdEndpoints, o.EtcdEndpoints) && mapsEqual(n.Metadata, o.Metadata)
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// Entry is one partition in the map.
type Entry struct {
	// Holders serve the partition, primary first: routing uses exactly these.
	Holders []string `json:"holders"`
	// PrimaryEpoch is the map epoch at which the current primary took the role: it grows every
	// time the primary changes, and fences writes stamped by an older primary.
	PrimaryEpoch uint64 `json:"primary_epoch"`
	// Pending are nodes copying the partition in; they are not routed to until they acknowledge.
	Pending []Pending `json:"pending,omitempty"`
	// Target is the placement the partition is moving to, when it differs from Holders.
	Target []string `json:"target,omitempty"`
}

// Pending is a node asked to copy a partition in.
type Pending struct {
	Node string `json:"node"`
	// Since is the epoch of the map that asked for the copy; the acknowledgement names it.
	Since   uint64    `json:"since"`
	Started time.Time `json:"started"`
	Attempt int       `json:"attempt"`
}

// Placement returns the holders the partition is meant to have: Target, or Holders when the
// partition is not moving.
func (e *Entry) Placement() []string {
	if e.Target != nil {
		return e.Target
	}
	return e.Holders
}

// PendingFor returns the pending record of node, if any.
func (e *Entry) PendingFor(node string) (Pending, bool) {
	for _, p := range e.Pending {
		if p.Node == node {
			return p, true
		}
	}
	return Pending{}, false
}

// Equal reports whether two entries are the same.
func (e *Entry) Equal(o *Entry) bool {
	return e.PrimaryEpoch == o.PrimaryEpoch && slices.Equal(e.Holders, o.Holders) &&
		slices.Equal(e.Target, o.Target) && slices.Equal(e.Pending, o.Pending)
}

// Cause says why a map was published; its Reason is one of the Reason constants. The stored map
// carries the very document GET /cluster serves as the map's cause.
type Cause = wire.Cause

// Reasons for a new map, in the order of precedence used when several apply at once.
const (
	ReasonCrash = "crash"
	ReasonLeave = "leave"
	ReasonDrain = "drain"
	ReasonJoin  = "join"
	// ReasonAdmin means an operator's action (an AdminAction record) came into force or ended.
	ReasonAdmin     = "admin"
	ReasonHandoff   = "handoff"
	ReasonTimeout   = "timeout"
	ReasonRebalance = "rebalance"
	ReasonCreate    = "create"
)

// Map is the partition map as stored under the partitions key.
type Map struct {
	// Epoch grows by one with every published map.
	Epoch     uint64    `json:"epoch"`
	Leader    string    `json:"leader"`
	UpdatedAt time.Time `json:"updated_at"`
	Cause     Cause     `json:"cause"`
	// Nodes is the table of live nodes the map was computed from. The head of a map stored out
	// of line leaves it out: it names the node table it builds on and the change from it.
	Nodes map[string]Node `json:"nodes,omitempty"`
	// Absent are nodes that crashed less than the grace period ago: their places in the
	// partitions' targets are kept for them, but they hold nothing.
	Absent map[string]Absent `json:"absent,omitempty"`
	// Partitions[i] is partition-i. Empty in the stored head of a map kept out of line.
	Partitions Entries `json:"partitions,omitempty"`

	// Where the partitions of a map stored out of line are (see store.go); all zero for an
	// inline map. Chunks is the number of chunk keys of the checkpoint of epoch Checkpoint;
	// every epoch after it, up to Epoch, has a delta. CheckpointBytes and DeltaBytes are the
	// bytes of the checkpoint and of the deltas since: a new checkpoint is written when the
	// deltas would outweigh it.
	Chunks          int    `json:"chunks,omitempty"`
	Checkpoint      uint64 `json:"checkpoint,omitempty"`
	CheckpointBytes int    `json:"checkpoint_bytes,omitempty"`
	DeltaBytes      int    `json:"delta_bytes,omitempty"`
	// The node table of a map stored out of line: NodeIDs lists every node of the map, sorted;
	// a node's record is in NodesChanged when it was added or changed since the table written at
	// epoch NodesBase (under NodeTable(NodesBase)), in that table otherwise.
	NodeIDs      []string        `json:"node_ids,omitempty"`
	NodesBase    uint64          `json:"nodes_base,omitempty"`
	NodesChanged map[string]Node `json:"nodes_changed,omitempty"`

	// baseNodes is the table at NodesBase and baseBytes its stored size, known once the map
	// has been read or written: the next map's change is computed from it.
	baseNodes map[string]Node
	baseBytes int
}

// Absent is a crashed node kept in the targets during its grace period.
type Absent struct {
	Since  time.Time `json:"since"`
	Zone   string    `json:"zone,omitempty"`
	Weight int       `json:"weight,omitempty"`
}

// Members returns the IDs of the map's nodes, sorted. Unlike Nodes, it is known from the head
// alone, before the node table of a map stored out of line is read.
func (m *Map) Members() []string {
	if m.Nodes == nil && m.NodesBase > 0 {
		return slices.Clone(m.NodeIDs)
	}
	return slices.Sorted(maps.Keys(m.Nodes))
}

// SamePlacement reports whether m and o have the same partitions, node table and absent nodes.
func (m *Map) SamePlacement(o *Map) bool {
	if len(m.Partitions) != len(o.Partitions) || len(m.Nodes) != len(o.Nodes) || len(m.Absent) != len(o.Absent) {
		return false
	}
	for i := range m.Partitions {
		if !m.Partitions[i].Equal(&o.Partitions[i]) {
			return false
		}
	}
	for id, n := range m.Nodes {
		if on, ok := o.Nodes[id]; !ok || !on.Equal(n) {
			return false
		}
	}
	for id := range m.Absent {
		if _, ok := o.Absent[id]; !ok {
			return false
		}
	}
	return true
}

// ErrCorrupt is returned when a stored value cannot be decoded or breaks the map's invariants.
var ErrCorrupt = errors.New("state: corrupt value")

// Validate checks the invariants every reader relies on: one entry per partition, at least
// one holder each, distinct holders, every holder and pending node in the node table.
func (m *Map) Validate(partitionCount int) error {
	return m.ValidateChange(partitionCount, nil, nil)
}

// ValidateChange checks what Validate checks, knowing that m follows prev, a valid map, with
// changed the partitions that differ (nil: any may): only those are checked, and the others
// only when a node left the table.
func (m *Map) ValidateChange(partitionCount int, prev *Map, changed []int) error {
	if len(m.Partitions) != partitionCount {
		return fmt.Errorf("%w: map epoch %d has %d partitions, the cluster has %d", ErrCorrupt, m.Epoch, len(m.Partitions), partitionCount)
	}
	if prev != nil && changed != nil {
		for id := range prev.Nodes {
			if _, ok := m.Nodes[id]; !ok {
				changed = nil // a node left: every partition may name it
				break
			}
		}
	}
	if prev == nil || changed == nil {
		for i := range m.Partitions {
			if err := m.validEntry(i); err != nil {
				return err
			}
		}
		return nil
	}
	for _, i := range changed {
		if err := m.validEntry(i); err != nil {
			return err
		}
	}
	return nil
}

func (m *Map) validEntry(i int) error {
	e := &m.Partitions[i]
	if len(e.Holders) == 0 {
		return fmt.Errorf("%w: map epoch %d: %s has no holder", ErrCorrupt, m.Epoch, partition.ID(i))
	}
	for j, h := range e.Holders {
		if _, ok := m.Nodes[h]; !ok {
			return fmt.Errorf("%w: map epoch %d: %s holder %q is not in the node table", ErrCorrupt, m.Epoch, partition.ID(i), h)
		}
		if slices.Contains(e.Holders[:j], h) {
			return fmt.Errorf("%w: map epoch %d: %s lists %q twice", ErrCorrupt, m.Epoch, partition.ID(i), h)
		}
	}
	for _, p := range e.Pending {
		if _, ok := m.Nodes[p.Node]; !ok || slices.Contains(e.Holders, p.Node) {
			return fmt.Errorf("%w: map epoch %d: %s pending node %q is unknown or already a holder", ErrCorrupt, m.Epoch, partition.ID(i), p.Node)
		}
	}
	return nil
}
