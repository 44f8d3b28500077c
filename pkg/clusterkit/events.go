package clusterkit

import (
	"context"
	"encoding/json"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

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
	// Reason says why the map changed: "create", "join", "leave", "crash", "drain",
	// "handoff" (a copy completed), "timeout" (a copy is asked again) or "rebalance".
	Reason string
	// Nodes are the nodes the reason is about (the ones that joined, left, crashed, drain).
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
func (ck *ClusterKit) OnEvent(hook func(Event)) {
	ck.mu.Lock()
	defer ck.mu.Unlock()
	var hooks []EventHook
	if p := ck.eventHooks.Load(); p != nil {
		hooks = append(hooks, *p...)
	}
	hooks = append(hooks, hook)
	ck.eventHooks.Store(&hooks)
}

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
	for i := range next.raw.Partitions {
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

// deliver runs the hooks of one job. When the job asks this node to copy a partition in and
// every hook returned normally, the copy is acknowledged so that the leader can route to it.
func (ck *ClusterKit) deliver(ev hookEvent) {
	log := ck.dispatch.log
	if ev.event != nil {
		if p := ck.eventHooks.Load(); p != nil {
			for _, h := range *p {
				callHook(log, ev, func() { h(*ev.event) })
			}
		}
		return
	}
	ok := true
	if p := ck.hooks.Load(); p != nil {
		for _, h := range *p {
			ok = callHook(log, ev, func() { h(ev.id, ev.from, ev.to) }) && ok
		}
	}
	if ev.since > 0 && ev.to != nil && ev.to.ID == ck.opts.NodeID {
		if !ok {
			log.Warn("handoff hook failed, not acknowledging; the leader asks again after HandoffTimeout",
				zap.String("partition", ev.id), zap.Uint64("since", ev.since))
			return
		}
		select {
		case ck.acks <- ackReq{partition: ev.partition, since: ev.since}:
		case <-ck.runCtx.Done():
		}
	}
}

// maxAckBatch is the most acknowledgements written in one transaction: etcd's default limit of
// operations per transaction is 128.
const maxAckBatch = 128

// ackReq is an acknowledgement to write.
type ackReq struct {
	partition int
	since     uint64
}

// writeAcks writes handoff acknowledgements under the node's lease, batching those that are
// ready together, until Stop.
func (ck *ClusterKit) writeAcks() {
	for {
		var batch []ackReq
		select {
		case <-ck.runCtx.Done():
			return
		case a := <-ck.acks:
			batch = append(batch, a)
		}
	more:
		for len(batch) < maxAckBatch {
			select {
			case a := <-ck.acks:
				batch = append(batch, a)
			default:
				break more
			}
		}
		ck.mu.Lock()
		lease := ck.session.lease
		ck.mu.Unlock()
		ops := make([]clientv3.Op, 0, len(batch))
		for _, a := range batch {
			b, _ := json.Marshal(ack{Since: a.since})
			ops = append(ops, clientv3.OpPut(ck.schema.Handoff(a.partition, ck.opts.NodeID), string(b), clientv3.WithLease(lease)))
		}
		ctx, cancel := context.WithTimeout(ck.runCtx, 5*time.Second)
		_, err := ck.client.Txn(ctx).Then(ops...).Commit()
		cancel()
		if err != nil && ck.runCtx.Err() == nil {
			ck.log.Warn("writing handoff acknowledgements failed; the leader asks again after HandoffTimeout",
				zap.Int("count", len(batch)), zap.Error(err))
		}
	}
}
