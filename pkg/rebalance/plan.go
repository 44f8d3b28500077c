package rebalance

import (
	"cmp"
	"fmt"
	"slices"
)

// Change is a membership change to try out with Plan.
type Change struct {
	Join  []Node   `json:"join,omitempty"`  // nodes that would join; their IDs must not be live
	Leave []string `json:"leave,omitempty"` // IDs of live nodes that would leave or crash
}

// Report is Plan's answer: what the change would move. It is made to be encoded as JSON.
type Report struct {
	Next         Map        `json:"-"`             // the placement after the change
	Moves        []Move     `json:"moves"`         // replica moves, as Moves(prev, Next)
	PrimaryMoves []Move     `json:"primary_moves"` // primary changes, as PrimaryMoves(prev, Next)
	Nodes        []NodeLoad `json:"nodes"`         // every node live before or after, by ID
}

// NodeLoad is one node's share of a placement before and after a change.
type NodeLoad struct {
	ID              string `json:"id"`
	Zone            string `json:"zone,omitempty"`
	ReplicasBefore  int    `json:"replicas_before"`
	Replicas        int    `json:"replicas"`
	PrimariesBefore int    `json:"primaries_before"`
	Primaries       int    `json:"primaries"`
}

// Plan computes what Compute would do if ch happened to the live nodes: the next placement, the
// moves and each node's load before and after. It changes nothing (prev and nodes are read only) and
// is safe for concurrent use; it costs one Compute. A Change that joins a live node or removes a node
// that is not live is an error wrapping ErrInvalidNode.
func Plan(prev Map, nodes []Node, cfg Config, ch Change) (Report, error) {
	if _, err := validate(nodes, cfg); err != nil {
		return Report{}, err
	}
	live := make(map[string]Node, len(nodes))
	for _, n := range nodes {
		live[n.ID] = n
	}
	after := make([]Node, 0, len(nodes)+len(ch.Join))
	for _, id := range ch.Leave {
		if _, ok := live[id]; !ok {
			return Report{}, fmt.Errorf("%w: %q cannot leave: it is not live", ErrInvalidNode, id)
		}
	}
	for _, n := range nodes {
		if !slices.Contains(ch.Leave, n.ID) {
			after = append(after, n)
		}
	}
	for _, n := range ch.Join {
		if _, ok := live[n.ID]; ok {
			return Report{}, fmt.Errorf("%w: %q cannot join: it is already live", ErrInvalidNode, n.ID)
		}
		after = append(after, n)
		live[n.ID] = n
	}
	next, err := Compute(prev, after, cfg)
	if err != nil {
		return Report{}, err
	}
	if len(prev) != cfg.Partitions {
		prev = nil
	}
	rb, pb := countLoads(prev)
	ra, pa := countLoads(next)
	rep := Report{Next: next, Moves: Moves(prev, next), PrimaryMoves: PrimaryMoves(prev, next)}
	for id, n := range live {
		rep.Nodes = append(rep.Nodes, NodeLoad{
			ID: id, Zone: n.Zone,
			ReplicasBefore: rb[id], Replicas: ra[id],
			PrimariesBefore: pb[id], Primaries: pa[id],
		})
	}
	slices.SortFunc(rep.Nodes, func(a, b NodeLoad) int { return cmp.Compare(a.ID, b.ID) })
	return rep, nil
}

func countLoads(m Map) (replicas, primaries map[string]int) {
	replicas, primaries = make(map[string]int), make(map[string]int)
	for _, holders := range m {
		for k, id := range holders {
			replicas[id]++
			if k == 0 {
				primaries[id]++
			}
		}
	}
	return replicas, primaries
}

// Explanation says why a partition is placed where it is.
type Explanation struct {
	Partition int      `json:"partition"`
	Previous  []string `json:"previous"` // holders in prev, primary first
	Holders   []string `json:"holders"`  // holders now, primary first
	Rule      string   `json:"rule"`     // the spread rule and targets in force
	Steps     []string `json:"steps"`    // the decisions that touched the partition, in order
}

// Explain recomputes the placement as Compute does and reports the decisions that concern one
// partition: which previous holders were kept or dropped and why, who took free or handed-over
// slots, how the primary was chosen, and each holder's load against its target. It costs one
// Compute and is safe for concurrent use. A partition outside [0, cfg.Partitions) is an error
// wrapping ErrInvalidPartition.
func Explain(prev Map, nodes []Node, cfg Config, partition int) (Explanation, error) {
	pl, err := newPlacer(prev, nodes, cfg)
	if err != nil {
		return Explanation{}, err
	}
	if partition < 0 || partition >= cfg.Partitions {
		return Explanation{}, fmt.Errorf("%w: %d, want 0 to %d", ErrInvalidPartition, partition, cfg.Partitions-1)
	}
	pl.trace = partition
	pl.run()
	next := pl.result()
	ex := Explanation{Partition: partition, Holders: next[partition], Rule: pl.rule(), Steps: pl.notes}
	if pl.prev != nil {
		ex.Previous = slices.Clone(pl.prev[partition])
	}
	if ex.Steps == nil {
		ex.Steps = []string{}
	}
	for k, id := range ex.Holders {
		n, _ := pl.index.get(id)
		role := "replica"
		if k == 0 {
			role = "primary"
		}
		ex.Steps = append(ex.Steps, fmt.Sprintf("%s is %s; it holds %d replicas (target %d) and is primary of %d (target %d)",
			id, role, pl.load[n], pl.quota[n], pl.pcount[n], pl.pquota[n]))
	}
	return ex, nil
}

// rule describes the spread rule and the balance targets, for Explain.
func (s *placer) rule() string {
	text := fmt.Sprintf("%d holders per partition (replication factor capped by %d live nodes)", s.r, len(s.nodes))
	zoned := len(s.zones) < len(s.nodes)
	switch {
	case !zoned:
		text += "; no zones, so only distinct nodes are required"
	case len(s.loZones) == 0 && s.zonesAllHiOne():
		text += fmt.Sprintf("; %d failure domains, at least %d, so every holder is in a different one", len(s.zones), s.r)
	default:
		text += fmt.Sprintf("; %d failure domains, fewer than %d, so holders per domain are kept within", len(s.zones), s.r)
		for _, z := range s.zones {
			if z.name != "" {
				text += fmt.Sprintf(" %s:%d-%d", z.name, z.lo, z.hi)
			}
		}
	}
	return text + "; replica and primary targets are the weighted fair shares within those limits, rounded to a neighbouring integer"
}

func (s *placer) zonesAllHiOne() bool {
	for _, z := range s.zones {
		if z.hi != 1 {
			return false
		}
	}
	return true
}
