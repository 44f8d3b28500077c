package nextmap

import (
	"slices"

	"github.com/clusterkit-go/clusterkit/internal/state"
	"github.com/clusterkit-go/clusterkit/pkg/rebalance"
)

// Constraints are the operators' actions (state.AdminAction records) as the placement applies
// them:
//
//   - a drained node is given no partition: its partitions move to the others;
//   - a cordoned node is given no partition another node can keep: it stays in the placement,
//     and may lose partitions to others (a join), but a move onto it is undone while the node
//     it would replace is live and usable (so that replacing a lost holder may still use it);
//   - while any maintenance reason stands, a partition keeps the placement it has unless one of
//     its nodes is gone: only lost holders are replaced;
//   - a pinned partition (a move) has its pinned node among its holders, in place of its last
//     replica, as long as that node is live;
//   - a weight replaces a node's own in the placement.
//
// Constraints that cannot hold give way: when no live node may be used, every live node keeps
// what it has; a pin to a node that is not live is ignored.
type Constraints struct {
	Drained     map[string]bool
	Cordoned    map[string]bool
	Maintenance []string
	Pins        map[int]string
	Weights     map[string]int
}

// ConstraintsOf gathers the constraints of actions.
func ConstraintsOf(actions []state.AdminAction) Constraints {
	var c Constraints
	for _, a := range actions {
		switch a.Kind {
		case state.AdminDrain:
			c.Drained = set(c.Drained, a.Node)
		case state.AdminCordon:
			c.Cordoned = set(c.Cordoned, a.Node)
		case state.AdminMaintenance:
			c.Maintenance = append(c.Maintenance, a.Reason)
		case state.AdminMove:
			if c.Pins == nil {
				c.Pins = map[int]string{}
			}
			if a.Partition != nil {
				c.Pins[*a.Partition] = a.Node
			}
		case state.AdminWeight:
			if c.Weights == nil {
				c.Weights = map[string]int{}
			}
			c.Weights[a.Node] = a.Weight
		}
	}
	slices.Sort(c.Maintenance)
	return c
}

// Node states as GET /cluster and the dashboard show them (State).
const (
	// StateDraining is a node placement gives nothing and moves everything off: its own drain
	// (clusterkit.Drain, or a drain on stop) or an operator's drain record.
	StateDraining = "draining"
	// StateCordoned is a node an operator's cordon record gives nothing another node can keep.
	StateCordoned = "cordoned"
)

// State is how the placement treats node id, whose record is n: StateDraining, StateCordoned,
// or "" for a node it uses as any other. A drain outranks a cordon.
func (c Constraints) State(id string, n state.Node) string {
	switch {
	case n.State == state.NodeDraining || c.Drained[id]:
		return StateDraining
	case c.Cordoned[id]:
		return StateCordoned
	}
	return ""
}

// Weight is the weight the placement gives node id, whose record says own: the operator's
// (clusterkit weight) when one stands, else its own, where 0 (a record from before weights) is
// 1, as pkg/rebalance reads it.
func (c Constraints) Weight(id string, own int) int {
	if w, ok := c.Weights[id]; ok {
		return w
	}
	return max(own, 1)
}

func set(m map[string]bool, k string) map[string]bool {
	if m == nil {
		m = map[string]bool{}
	}
	m[k] = true
	return m
}

// apply changes target, the placement computed for the nodes placed allows, by the constraints
// that are not expressed by which nodes are placed: moves onto cordoned nodes are undone,
// maintenance keeps every placement that lost no node, pins put their node in. prev is the
// placement each partition was meant to have (nil for a new cluster).
func (c Constraints) apply(target, prev rebalance.Map, live map[string]state.Node, replication int) {
	if prev == nil || len(prev) != len(target) {
		return
	}
	isLive := func(n string) bool { _, ok := live[n]; return ok }
	for i, t := range target {
		if len(c.Cordoned) > 0 {
			// Undo every move onto a cordoned node whose node it replaces can keep its place.
			var left []string // prev's live, usable nodes the target drops
			for _, n := range prev[i] {
				if !slices.Contains(t, n) && isLive(n) && c.State(n, live[n]) == "" {
					left = append(left, n)
				}
			}
			for j, n := range t {
				if c.Cordoned[n] && !slices.Contains(prev[i], n) && len(left) > 0 {
					t = slices.Clone(t)
					t[j], left = left[0], left[1:]
				}
			}
		}
		if len(c.Maintenance) > 0 && len(prev[i]) > 0 && !slices.ContainsFunc(prev[i], func(n string) bool { return !isLive(n) }) {
			t = prev[i]
		}
		if n, ok := c.Pins[i]; ok && isLive(n) && !slices.Contains(t, n) && len(t) > 0 {
			t = slices.Clone(t)
			if len(t) < replication {
				t = append(t, n)
			} else {
				t[len(t)-1] = n
			}
		}
		target[i] = t
	}
}
