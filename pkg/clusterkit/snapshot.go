package clusterkit

import (
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/clusterkit-go/clusterkit/internal/partition"
	"github.com/clusterkit-go/clusterkit/internal/state"
)

// snapshot is one published partition map, immutable once built. Lookups read it through an
// atomic pointer, so they take no lock and allocate nothing.
type snapshot struct {
	epoch     uint64
	leader    string
	updatedAt time.Time
	// revision is the etcd revision the map was read at.
	revision int64

	partitions []Partition
	mod        partition.Modulo
	// holders[i] is partition i's nodes, primary first; primaries[i] points into it.
	holders   [][]Node
	primaries []*Node
	nodes     map[string]*Node
	// nodeIDs is sorted.
	nodeIDs []string
	// raw is the decoded stored map, kept to diff against the next one.
	raw *state.Map

	// enc is the /cluster body of this map, built on first request.
	encOnce sync.Once
	enc     *encodedCluster
}

// newSnapshot builds the lookup structures of a validated map.
func newSnapshot(m *state.Map, revision int64) *snapshot {
	s := &snapshot{
		epoch:      m.Epoch,
		leader:     m.Leader,
		updatedAt:  m.UpdatedAt,
		revision:   revision,
		partitions: make([]Partition, len(m.Partitions)),
		mod:        partition.NewModulo(len(m.Partitions)),
		holders:    make([][]Node, len(m.Partitions)),
		primaries:  make([]*Node, len(m.Partitions)),
		nodes:      make(map[string]*Node, len(m.Nodes)),
		raw:        m,
	}
	for id, rec := range m.Nodes {
		n := nodeFromRecord(rec)
		s.nodes[id] = &n
		s.nodeIDs = append(s.nodeIDs, id)
	}
	slices.Sort(s.nodeIDs)
	ids := partitionIDs(len(m.Partitions))
	// One backing array for every holder slice keeps the map compact.
	total := 0
	for i := range m.Partitions {
		total += len(m.Partitions[i].Holders)
	}
	backing := make([]Node, 0, total)
	for i := range m.Partitions {
		e := &m.Partitions[i]
		start := len(backing)
		for _, id := range e.Holders {
			backing = append(backing, *s.nodes[id])
		}
		hs := backing[start:len(backing):len(backing)]
		s.holders[i] = hs
		s.primaries[i] = &hs[0]
		p := Partition{
			ID:           ids[i],
			PrimaryNode:  e.Holders[0],
			ReplicaNodes: e.Holders[1:len(e.Holders):len(e.Holders)],
			PrimaryEpoch: e.PrimaryEpoch,
			Epoch:        m.Epoch,
			index:        i,
		}
		for _, pd := range e.Pending {
			p.PendingNodes = append(p.PendingNodes, pd.Node)
		}
		s.partitions[i] = p
	}
	return s
}

// idCache holds "partition-<i>" for every index up to the largest partition count seen, so that
// a new snapshot shares the IDs instead of formatting them again (the count is fixed per cluster).
var idCache atomic.Pointer[[]string]

// partitionIDs returns the IDs of partitions 0 to n-1. The slice is shared: never modify it.
func partitionIDs(n int) []string {
	if p := idCache.Load(); p != nil && len(*p) >= n {
		return (*p)[:n]
	}
	ids := make([]string, n)
	for i := range ids {
		ids[i] = PartitionID(i)
	}
	idCache.Store(&ids)
	return ids
}

// lookup returns the index of p in s: the index recorded in p when p came from ClusterKit,
// otherwise the one parsed from p.ID. It returns -1 for a partition s does not have.
func (s *snapshot) lookup(p *Partition) int {
	if p == nil {
		return -1
	}
	if i := p.index; i >= 0 && i < len(s.partitions) && s.partitions[i].ID == p.ID {
		return i
	}
	i, err := parsePartitionID(p.ID, len(s.partitions))
	if err != nil {
		return -1
	}
	return i
}

// involves reports whether node holds or is copying any partition in s.
func (s *snapshot) involves(node string) bool {
	for i := range s.raw.Partitions {
		if roleIn(&s.raw.Partitions[i], node) != RoleNone {
			return true
		}
	}
	return false
}
