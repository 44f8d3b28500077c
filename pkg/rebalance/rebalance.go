package rebalance

import (
	"fmt"
	"slices"
	"strings"
)

// MaxWeight is the largest Node.Weight accepted. It keeps the exact share arithmetic within 64 bits.
const MaxWeight = 1 << 30

// MaxSlots is the largest Partitions × ReplicationFactor accepted.
const MaxSlots = 1 << 31

// Node is a live node as placement sees it.
type Node struct {
	ID string
	// Zone is the failure domain (rack, availability zone). "" means the node shares a failure domain
	// with no other node.
	Zone string
	// Weight is the relative capacity: a node of weight 2 holds twice the replicas of a node of
	// weight 1, as far as the zones allow. 0 means 1; negative or above MaxWeight is an error.
	Weight int
}

// Map is a placement: Map[p] lists the holders of partition p, primary first. A nil or empty Map, or
// a Map whose length differs from Config.Partitions, means "no previous placement".
type Map [][]string

// Config holds the cluster's fixed placement settings.
type Config struct {
	Partitions        int // P >= 1
	ReplicationFactor int // R >= 1; a partition has min(R, live nodes) holders
}

// Move is one change between two placements.
type Move struct {
	Partition int `json:"partition"`
	// From is the holder losing the slot, "" if the slot is new (the partition had fewer holders).
	From string `json:"from"`
	// To is the new holder, "" if the slot is dropped (fewer live nodes than the replication factor).
	To string `json:"to"`
}

// Compute returns the next placement given the previous one and the live nodes. It is pure and
// deterministic: the same inputs, with nodes in any order, give the same output. Holders in prev
// that are not in nodes are dead. With zero nodes it returns an error wrapping ErrNoNodes; a bad
// node or config is an error wrapping ErrInvalidNode or ErrInvalidConfig. It never modifies prev or
// nodes, and it is safe for concurrent use. The result shares the rows that did not change with
// prev: treat both as read-only.
//
// The guarantees (balance, minimal movement, zone spread) are listed in the package documentation.
func Compute(prev Map, nodes []Node, cfg Config) (Map, error) {
	pl, err := newPlacer(prev, nodes, cfg)
	if err != nil {
		return nil, err
	}
	pl.run()
	return pl.result(), nil
}

// Moves lists the replica moves (holder-set changes) from prev to next, sorted by partition then To.
// In each partition the holders that left are paired, in prev's order, with the holders that arrived,
// sorted by ID; an arrival with no departure has From "", a departure with no arrival has To "".
// Primary changes among the same holders are not moves; PrimaryMoves lists them. A prev whose length
// differs from next's counts as empty.
func Moves(prev, next Map) []Move {
	if len(prev) != len(next) {
		prev = nil
	}
	var moves []Move
	for p, holders := range next {
		var before []string
		if prev != nil {
			before = prev[p]
		}
		var gone, came []string
		for _, id := range before {
			if !slices.Contains(holders, id) && !slices.Contains(gone, id) {
				gone = append(gone, id)
			}
		}
		for _, id := range holders {
			if !slices.Contains(before, id) && !slices.Contains(came, id) {
				came = append(came, id)
			}
		}
		slices.Sort(came)
		for k, to := range came {
			from := ""
			if k < len(gone) {
				from = gone[k]
			}
			moves = append(moves, Move{Partition: p, From: from, To: to})
		}
		for k := len(came); k < len(gone); k++ {
			moves = append(moves, Move{Partition: p, From: gone[k], To: ""})
		}
	}
	slices.SortStableFunc(moves, func(a, b Move) int {
		if a.Partition != b.Partition {
			return a.Partition - b.Partition
		}
		return strings.Compare(a.To, b.To)
	})
	return moves
}

// PrimaryMoves lists the partitions whose primary differs between prev and next, sorted by
// partition: From is the old primary ("" if the partition had none) and To the new one ("" if it has
// none). A prev whose length differs from next's counts as empty.
func PrimaryMoves(prev, next Map) []Move {
	if len(prev) != len(next) {
		prev = nil
	}
	var moves []Move
	for p, holders := range next {
		from, to := "", ""
		if prev != nil && len(prev[p]) > 0 {
			from = prev[p][0]
		}
		if len(holders) > 0 {
			to = holders[0]
		}
		if from != to {
			moves = append(moves, Move{Partition: p, From: from, To: to})
		}
	}
	return moves
}

// validate checks the config and the nodes, and returns the nodes sorted by ID. Sorting finds
// repeated IDs as neighbours, without a set of all IDs.
func validate(nodes []Node, cfg Config) ([]Node, error) {
	if cfg.Partitions < 1 {
		return nil, fmt.Errorf("%w: Partitions = %d, must be at least 1", ErrInvalidConfig, cfg.Partitions)
	}
	if cfg.ReplicationFactor < 1 {
		return nil, fmt.Errorf("%w: ReplicationFactor = %d, must be at least 1", ErrInvalidConfig, cfg.ReplicationFactor)
	}
	if int64(cfg.Partitions)*int64(cfg.ReplicationFactor) > MaxSlots {
		return nil, fmt.Errorf("%w: Partitions × ReplicationFactor = %d × %d, must be at most %d",
			ErrInvalidConfig, cfg.Partitions, cfg.ReplicationFactor, MaxSlots)
	}
	if len(nodes) == 0 {
		return nil, ErrNoNodes
	}
	for _, n := range nodes {
		if n.ID == "" {
			return nil, fmt.Errorf("%w: empty ID", ErrInvalidNode)
		}
		if n.Weight < 0 || n.Weight > MaxWeight {
			return nil, fmt.Errorf("%w: node %q has weight %d, must be in [0, %d]", ErrInvalidNode, n.ID, n.Weight, MaxWeight)
		}
	}
	sorted := slices.Clone(nodes)
	slices.SortFunc(sorted, func(a, b Node) int { return strings.Compare(a.ID, b.ID) })
	for i := 1; i < len(sorted); i++ {
		if sorted[i].ID == sorted[i-1].ID {
			return nil, fmt.Errorf("%w: duplicate ID %q", ErrInvalidNode, sorted[i].ID)
		}
	}
	return sorted, nil
}
