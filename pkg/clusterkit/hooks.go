package clusterkit

import (
	"slices"

	"github.com/clusterkit-go/clusterkit/internal/state"
)

// PartitionChangeHook is called for every (partition, new holder) of every map change, on every
// node: copyToNode is the node that newly holds partitionID and copyFromNodes are the live nodes
// that held it before (empty for a brand-new partition). A node that only cares about its own
// partitions filters with copyToNode.ID == ck.GetMyNodeID().
type PartitionChangeHook func(partitionID string, copyFromNodes []*Node, copyToNode *Node)

// hookEvent is one job for the hooks: a (partition, new holder) for the OnPartitionChange
// hooks, or an Event of this node for the OnEvent hooks.
type hookEvent struct {
	partition int
	id        string
	from      []*Node
	to        *Node
	epoch     uint64
	// since is set when to is asked to copy the partition in (a handoff): the map epoch that
	// asked, which the acknowledgement names.
	since uint64
	// event is set for an OnEvent job.
	event *Event
}

// diffHolders lists the OnPartitionChange calls from old to next: every node newly asked to
// copy a partition in (pending), with the current holders as sources, and every node that newly
// holds a partition without a handoff (a new cluster, or a partition whose holders all died),
// with the previous holders still live as sources.
func diffHolders(old, next *snapshot) []hookEvent {
	events := make([]hookEvent, 0, next.diffCount(old))
	for i := range next.diffed(old) {
		e := &next.raw.Partitions[i]
		var before *state.Entry
		if old != nil {
			before = &old.raw.Partitions[i]
		}
		var from []*Node
		fromDone := false
		sources := func() []*Node {
			if !fromDone {
				from = sourcesOf(before, next)
				fromDone = true
			}
			return from
		}
		for _, pd := range e.Pending {
			if before != nil {
				if was, ok := before.PendingFor(pd.Node); ok && was.Since == pd.Since {
					continue // asked before
				}
			}
			holders := make([]*Node, len(next.holders[i]))
			for k := range next.holders[i] {
				holders[k] = &next.holders[i][k]
			}
			events = append(events, hookEvent{partition: i, id: next.partitions[i].ID, from: holders,
				to: next.nodes[pd.Node], epoch: next.epoch, since: pd.Since})
		}
		for j, id := range e.Holders {
			if before != nil {
				if slices.Contains(before.Holders, id) {
					continue
				}
				if _, ok := before.PendingFor(id); ok {
					continue // its hook ran when it was asked to copy
				}
			}
			events = append(events, hookEvent{partition: i, id: next.partitions[i].ID, from: sources(),
				to: &next.holders[i][j], epoch: next.epoch})
		}
	}
	return events
}

// sourcesOf returns the holders before the change that are still live.
func sourcesOf(before *state.Entry, next *snapshot) []*Node {
	var out []*Node
	if before == nil {
		return out
	}
	for _, b := range before.Holders {
		if n, ok := next.nodes[b]; ok {
			out = append(out, n)
		}
	}
	return out
}
