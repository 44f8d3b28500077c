package nextmap

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

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
//     replica, as long as that node is live, not draining, drained or cordoned, and the
//     partition's holders keep to the zone spread rule with it;
//   - a weight replaces a node's own in the placement.
//
// Constraints that cannot hold give way: when no live node may be used, every live node keeps
// what it has; a pin its node may not take waits (Explain says why).
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

// apply changes target, the placement computed for nodes (the nodes placed allows), by the
// constraints that are not expressed by which nodes are placed: moves onto cordoned nodes are
// undone, maintenance keeps every placement that lost no node, pins put their node in. prev is
// the placement each partition was meant to have (nil for a new cluster).
func (c Constraints) apply(target, prev rebalance.Map, live map[string]state.Node, nodes []rebalance.Node, replication int) {
	if prev == nil || len(prev) != len(target) {
		return
	}
	a := applier{c: c, live: live, nodes: nodes, replication: replication}
	for i, t := range target {
		target[i] = a.partition(i, t, prev[i], nil)
	}
}

// applier applies the constraints to one partition at a time.
type applier struct {
	c           Constraints
	live        map[string]state.Node
	nodes       []rebalance.Node
	replication int
	// limits and zoneOf are the spread rule's, worked out on the first pin that needs them
	// (zoned says they were): nil when no node has a zone.
	zoned  bool
	limits map[string]int
	zoneOf map[string]string
}

// Note is one decision the constraints took about a partition, which Explain reports.
type Note struct {
	// Constraint is the kind of the action that decided: "move", "cordon", "maintenance" or
	// "drain".
	Constraint string `json:"constraint"`
	// Effect is what it did. A move: "placed" (its node holds the partition) or "blocked" (see
	// Blocked). A cordon: "kept-away" (a move onto the node was undone) or "gave-way" (the node
	// takes the place of a holder no usable node can keep). Maintenance: "held-back" (the
	// placement's moves wait), "standing" (nothing would move anyway) or "repair" (a holder is
	// gone, and is replaced). A drain: "emptying" (the partition moves off the node) or
	// "gave-way" (the node keeps it: no live node may be used, or maintenance holds it back).
	Effect string `json:"effect"`
	// Node is the node the constraint is about.
	Node string `json:"node,omitempty"`
	// Blocked says why a pin is not honoured: "not-live", "draining", "drained", "cordoned"
	// or "spread" (its node would put more holders in its zone than the spread rule allows).
	Blocked string `json:"blocked,omitempty"`
	// Why says it in a sentence.
	Why string `json:"why"`
}

// trace collects the notes of one partition, for Explain; the leader passes none.
type trace struct {
	// holders are the partition's holders in the current map, which a drain empties.
	holders []string
	notes   []Note
}

func (tr *trace) note(n Note) { tr.notes = append(tr.notes, n) }

func (a *applier) isLive(n string) bool { _, ok := a.live[n]; return ok }

// usable reports whether the placement may give node n partitions.
func (a *applier) usable(n string) bool {
	return a.isLive(n) && !a.c.Drained[n] && !a.c.Cordoned[n] && a.live[n].State != state.NodeDraining
}

// partition applies the constraints to partition i, placed at t by the placement and meant to
// be at prev, and returns its target. With tr, it notes its decisions there.
func (a *applier) partition(i int, t, prev []string, tr *trace) []string {
	c := a.c
	if len(c.Cordoned) > 0 {
		// Undo every move onto a cordoned node whose node it replaces can keep its place.
		var left []string // prev's live, usable nodes the target drops
		for _, n := range prev {
			if !slices.Contains(t, n) && a.usable(n) {
				left = append(left, n)
			}
		}
		for j, n := range t {
			if !c.Cordoned[n] || slices.Contains(prev, n) {
				continue
			}
			if len(left) == 0 {
				if tr != nil {
					tr.note(Note{Constraint: state.AdminCordon, Effect: "gave-way", Node: n,
						Why: fmt.Sprintf("%s is cordoned, but takes a place that no usable node of %v can keep", n, prev)})
				}
				continue
			}
			if tr != nil {
				tr.note(Note{Constraint: state.AdminCordon, Effect: "kept-away", Node: n,
					Why: fmt.Sprintf("the placement moved it onto %s, which is cordoned: %s keeps its place", n, left[0])})
			}
			t = slices.Clone(t)
			t[j], left = left[0], left[1:]
		}
	}
	if len(c.Maintenance) > 0 && len(prev) > 0 {
		switch lost := slices.ContainsFunc(prev, func(n string) bool { return !a.isLive(n) }); {
		case lost && tr != nil:
			tr.note(Note{Constraint: state.AdminMaintenance, Effect: "repair",
				Why: fmt.Sprintf("maintenance stands (%s), but %v of its holders are gone: the placement replaces them",
					reasons(c.Maintenance), slices.DeleteFunc(slices.Clone(prev), a.isLive))})
		case lost:
		case tr != nil && !slices.Equal(t, prev):
			tr.note(Note{Constraint: state.AdminMaintenance, Effect: "held-back",
				Why: fmt.Sprintf("maintenance stands (%s): it stays on %v; the placement would put it on %v, and only lost holders are replaced", reasons(c.Maintenance), prev, t)})
			t = prev
		case tr != nil:
			tr.note(Note{Constraint: state.AdminMaintenance, Effect: "standing",
				Why: fmt.Sprintf("maintenance stands (%s): the placement keeps it on %v anyway", reasons(c.Maintenance), prev)})
			t = prev
		default:
			t = prev
		}
	}
	if n, ok := c.Pins[i]; ok && len(t) > 0 {
		t = a.pin(n, t, tr)
	}
	if tr != nil {
		a.noteDrains(t, prev, tr)
	}
	return t
}

// pin puts node n, a partition's pinned node, among its holders t in place of the last replica
// (or beside them when they are fewer than the replication factor), unless the node may not
// take it.
func (a *applier) pin(n string, t []string, tr *trace) []string {
	if slices.Contains(t, n) {
		if tr != nil {
			tr.note(Note{Constraint: state.AdminMove, Effect: "placed", Node: n, Why: fmt.Sprintf("pinned to %s, which holds it", n)})
		}
		return t
	}
	blocked, why := "", ""
	switch {
	case !a.isLive(n):
		blocked, why = "not-live", fmt.Sprintf("pinned to %s, which is not live (no node record, or leaving)", n)
	case a.live[n].State == state.NodeDraining:
		blocked, why = "draining", fmt.Sprintf("pinned to %s, which is draining (stopping)", n)
	case a.c.Drained[n]:
		blocked, why = "drained", fmt.Sprintf("pinned to %s, which is drained", n)
	case a.c.Cordoned[n]:
		blocked, why = "cordoned", fmt.Sprintf("pinned to %s, which is cordoned", n)
	}
	pinned := slices.Clone(t)
	replaced := ""
	if len(pinned) < a.replication {
		pinned = append(pinned, n)
	} else {
		replaced = pinned[len(pinned)-1]
		pinned[len(pinned)-1] = n
	}
	if blocked == "" {
		if zone, limit, over := a.overSpread(pinned, n); over {
			blocked, why = "spread", fmt.Sprintf("pinned to %s, but with it %v would have more than the %d holders the spread rule allows in zone %s", n, pinned, limit, zone)
		}
	}
	if blocked != "" {
		if tr != nil {
			tr.note(Note{Constraint: state.AdminMove, Effect: "blocked", Node: n, Blocked: blocked, Why: why + ": the pin waits, and the placement keeps it on " + fmt.Sprint(t)})
		}
		return t
	}
	if tr != nil {
		why := fmt.Sprintf("pinned to %s, which takes the place of %s, its last replica", n, replaced)
		if replaced == "" {
			why = fmt.Sprintf("pinned to %s, which joins its %d holders", n, len(t))
		}
		tr.note(Note{Constraint: state.AdminMove, Effect: "placed", Node: n, Why: why})
	}
	return pinned
}

// overSpread reports whether holders put more nodes in n's zone than the spread rule allows.
func (a *applier) overSpread(holders []string, n string) (zone string, limit int, over bool) {
	if !a.zoned {
		a.zoned = true
		if slices.ContainsFunc(a.nodes, func(node rebalance.Node) bool { return node.Zone != "" }) {
			a.zoneOf = make(map[string]string, len(a.nodes))
			for _, node := range a.nodes {
				a.zoneOf[node.ID] = node.Zone
			}
			a.limits = rebalance.SpreadLimits(a.nodes, rebalance.Config{Partitions: 1, ReplicationFactor: a.replication})
		}
	}
	zone = a.zoneOf[n]
	limit, ok := a.limits[zone]
	if zone == "" || !ok {
		return "", 0, false
	}
	k := 0
	for _, h := range holders {
		if a.zoneOf[h] == zone {
			k++
		}
	}
	return zone, limit, k > limit
}

// noteDrains notes the drained and draining nodes among the partition's holders, placement and
// target.
func (a *applier) noteDrains(t, prev []string, tr *trace) {
	var on []string
	for _, n := range slices.Concat(tr.holders, prev) {
		if (a.c.Drained[n] || a.isLive(n) && a.live[n].State == state.NodeDraining) && !slices.Contains(on, n) {
			on = append(on, n)
		}
	}
	for _, n := range on {
		what := "drained"
		if !a.c.Drained[n] {
			what = "draining (stopping)"
		}
		if slices.Contains(t, n) {
			why := "no live node may be used: every live node keeps what it has"
			if len(a.c.Maintenance) > 0 {
				why = "maintenance holds the move off it back"
			}
			tr.note(Note{Constraint: state.AdminDrain, Effect: "gave-way", Node: n, Why: fmt.Sprintf("%s is %s, but keeps it: %s", n, what, why)})
			continue
		}
		tr.note(Note{Constraint: state.AdminDrain, Effect: "emptying", Node: n,
			Why: fmt.Sprintf("%s is %s: the placement moves it to %v", n, what, t)})
	}
}

// reasons quotes the maintenance reasons.
func reasons(rs []string) string {
	q := make([]string, len(rs))
	for i, r := range rs {
		q[i] = strconv.Quote(r)
	}
	return strings.Join(q, ", ")
}
