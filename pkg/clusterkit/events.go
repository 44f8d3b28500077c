package clusterkit

import (
	"github.com/clusterkit-go/clusterkit/internal/state"
)

// Role is a node's role for one partition.
type Role int

// Roles, from none to primary.
const (
	RoleNone Role = iota
	// RolePending: the node is copying the partition in and is not routed to yet.
	RolePending
	RoleReplica
	RolePrimary
)

func (r Role) String() string {
	switch r {
	case RolePending:
		return "pending"
	case RoleReplica:
		return "replica"
	case RolePrimary:
		return "primary"
	}
	return "none"
}

// Event is a change of this node's role for one partition, delivered to OnEvent hooks.
type Event struct {
	// Partition is the partition's ID.
	Partition string
	// Role is this node's role after the change, PreviousRole before it.
	Role         Role
	PreviousRole Role
	// Reason says why the map changed: "create", "join", "leave", "crash", "drain", "admin"
	// (an operator's action came into force or ended), "handoff" (a copy completed), "timeout"
	// (a copy is asked again) or "rebalance".
	Reason string
	// Nodes are the nodes the reason is about (the ones that joined, left, crashed, drain, or
	// that the operators' actions name).
	Nodes []string
	// MapEpoch is the epoch of the map that made the change; PrimaryEpoch is the partition's
	// primary epoch in it (the fencing token of its primary).
	MapEpoch     uint64
	PrimaryEpoch uint64
	// Released is set when the node stopped holding the partition because the handoff to its
	// successors completed: its copy is no longer needed and can be dropped.
	Released bool
	// CopyFrom lists the holders to copy from when Role is RolePending.
	CopyFrom []*Node
}

// EventHook receives this node's Events.
type EventHook func(Event)

// OnEvent registers a hook for this node's role changes: partitions gained or lost and in which
// role, why, with the epochs, and a Released event once a handoff away from this node has
// completed. Hooks run on the same bounded pool as OnPartitionChange hooks, one partition's
// events in order. Register before Start to see the changes Start brings about. Safe for
// concurrent use.
func (ck *ClusterKit) OnEvent(hook func(Event)) { ck.hooks.addEvent(hook) }

// roleIn is node's role in a map entry.
func roleIn(e *state.Entry, node string) Role {
	for i, h := range e.Holders {
		if h == node {
			if i == 0 {
				return RolePrimary
			}
			return RoleReplica
		}
	}
	if _, ok := e.PendingFor(node); ok {
		return RolePending
	}
	return RoleNone
}

// diffRoles lists this node's Events from old to next.
func diffRoles(old, next *snapshot, self string) []hookEvent {
	var events []hookEvent
	_, listed := next.nodes[self]
	for i := range next.diffed(old) {
		e := &next.raw.Partitions[i]
		was := RoleNone
		var wasPending state.Pending
		if old != nil {
			b := &old.raw.Partitions[i]
			was = roleIn(b, self)
			wasPending, _ = b.PendingFor(self)
		}
		now := roleIn(e, self)
		pd, _ := e.PendingFor(self)
		if now == was && (now != RolePending || pd.Since == wasPending.Since) {
			continue
		}
		ev := &Event{
			Partition:    next.partitions[i].ID,
			Role:         now,
			PreviousRole: was,
			Reason:       next.raw.Cause.Reason,
			Nodes:        next.raw.Cause.Nodes,
			MapEpoch:     next.epoch,
			PrimaryEpoch: e.PrimaryEpoch,
			Released:     now == RoleNone && (was == RoleReplica || was == RolePrimary) && listed,
		}
		if now == RolePending {
			for k := range next.holders[i] {
				ev.CopyFrom = append(ev.CopyFrom, &next.holders[i][k])
			}
		}
		events = append(events, hookEvent{partition: i, id: ev.Partition, epoch: next.epoch, event: ev})
	}
	return events
}
