package store

import (
	"slices"
	"sync/atomic"

	"github.com/clusterkit-go/clusterkit/pkg/clusterkit"
)

// counters are the store's running counts.
type counters struct {
	primaryWrites       atomic.Int64
	replicaSends        atomic.Int64
	replicaApplied      atomic.Int64
	replicationFailures atomic.Int64
	replicationDropped  atomic.Int64
	queued              atomic.Int64
	staleRefused        atomic.Int64
	adopted             atomic.Int64
	handedOver          atomic.Int64
	notPrimary          atomic.Int64
	partitionsCopiedIn  atomic.Int64
	keysCopiedIn        atomic.Int64
	sourcesSkipped      atomic.Int64
	partitionsReleased  atomic.Int64
	keysReleased        atomic.Int64
}

// Stats is a node's view of its store, served on GET /store/stats.
type Stats struct {
	NodeID   string `json:"node_id"`
	Mode     string `json:"mode"`
	MapEpoch uint64 `json:"map_epoch"`
	// Primaries and Replicas count the partitions this node leads and replicates in its map.
	Primaries int `json:"primaries"`
	Replicas  int `json:"replicas"`
	// Keys is the number of keys stored here, all partitions together.
	Keys int `json:"keys"`

	// PrimaryWrites counts the writes this node accepted as primary.
	PrimaryWrites int64 `json:"primary_writes"`
	// ReplicaSends counts the writes a replica acknowledged to this node.
	ReplicaSends int64 `json:"replica_sends"`
	// ReplicaApplied counts the replicated writes this node stored.
	ReplicaApplied int64 `json:"replica_applied"`
	// ReplicationFailures counts failed sends to replicas (Sync: writes not acknowledged;
	// Async: sends retried).
	ReplicationFailures int64 `json:"replication_failures"`
	// ReplicationQueue is the number of writes waiting to be sent (Async).
	ReplicationQueue int64 `json:"replication_queue"`
	// ReplicationDropped counts queued writes dropped because they were no longer wanted.
	ReplicationDropped int64 `json:"replication_dropped"`
	// StaleEpochRefused counts replicated writes refused as coming from a deposed primary.
	StaleEpochRefused int64 `json:"stale_epoch_refused"`
	// HandedOver counts queued writes this node handed to the partition's new primary because
	// the replicas refused its old epoch; Adopted counts the ones this node took over as primary.
	HandedOver int64 `json:"handed_over"`
	Adopted    int64 `json:"adopted"`
	// NotPrimaryRefused counts writes and reads refused because this node was not the primary.
	NotPrimaryRefused int64 `json:"not_primary_refused"`

	// PartitionsCopiedIn counts completed copies of a partition to this node from at least one
	// source (a brand-new partition has none).
	PartitionsCopiedIn int64 `json:"partitions_copied_in"`
	// KeysCopiedIn counts keys that a copy stored or updated here.
	KeysCopiedIn int64 `json:"keys_copied_in"`
	// CopySourcesSkipped counts sources skipped because they stopped holding the partition
	// (died) before they answered.
	CopySourcesSkipped int64 `json:"copy_sources_skipped"`
	// PartitionsReleased and KeysReleased count copies dropped after a handoff away from here.
	PartitionsReleased int64 `json:"partitions_released"`
	KeysReleased       int64 `json:"keys_released"`
}

// Stats returns the store's counters and this node's roles in its current map.
func (s *Store) Stats() Stats {
	st := Stats{
		NodeID:              s.me,
		Mode:                s.opts.Replication.String(),
		MapEpoch:            s.ck.Epoch(),
		PrimaryWrites:       s.stats.primaryWrites.Load(),
		ReplicaSends:        s.stats.replicaSends.Load(),
		ReplicaApplied:      s.stats.replicaApplied.Load(),
		ReplicationFailures: s.stats.replicationFailures.Load(),
		ReplicationQueue:    s.stats.queued.Load(),
		ReplicationDropped:  s.stats.replicationDropped.Load(),
		StaleEpochRefused:   s.stats.staleRefused.Load(),
		NotPrimaryRefused:   s.stats.notPrimary.Load(),
		HandedOver:          s.stats.handedOver.Load(),
		Adopted:             s.stats.adopted.Load(),
		PartitionsCopiedIn:  s.stats.partitionsCopiedIn.Load(),
		KeysCopiedIn:        s.stats.keysCopiedIn.Load(),
		CopySourcesSkipped:  s.stats.sourcesSkipped.Load(),
		PartitionsReleased:  s.stats.partitionsReleased.Load(),
		KeysReleased:        s.stats.keysReleased.Load(),
	}
	// Partitions are numbered from 0; GetNodes answers nil past the last one.
	for i := 0; ; i++ {
		p := &clusterkit.Partition{ID: clusterkit.PartitionID(i)}
		nodes := s.ck.GetNodes(p)
		if nodes == nil {
			break
		}
		if nodes[0].ID == s.me {
			st.Primaries++
		} else if slices.ContainsFunc(nodes, func(n clusterkit.Node) bool { return n.ID == s.me }) {
			st.Replicas++
		}
	}
	s.mu.Lock()
	parts := make([]*partition, 0, len(s.parts))
	for _, p := range s.parts {
		parts = append(parts, p)
	}
	s.mu.Unlock()
	for _, p := range parts {
		p.mu.Lock()
		st.Keys += len(p.entries)
		p.mu.Unlock()
	}
	return st
}
