package clusterkit

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/clusterkit-go/clusterkit/internal/fence"
	"github.com/clusterkit-go/clusterkit/internal/follow"
	"github.com/clusterkit-go/clusterkit/internal/nextmap"
	"github.com/clusterkit-go/clusterkit/internal/state"
)

// maxMapValue is the largest value a map write puts in etcd; tests lower it to exercise chunking
// on small maps.
var maxMapValue = state.MaxValue

// errMapChanged means the map changed between the leader's read and its write.
var errMapChanged = errors.New("partition map changed concurrently")

// leader does the leader's work for one term at a time: it follows the node records and the
// handoff acknowledgements, asks nextmap for the next map whenever they change or a deadline
// passes, and publishes it in a transaction fenced by the term. Each term's goroutines (the two
// prefix followers) are owned by lead and stopped before it returns.
type leader struct {
	env *env
	log *zap.Logger
	// leaving is closed when the node stops: the term's last map leaves this node out.
	leaving <-chan struct{}
}

// view is what the leader knows during one term.
type view struct {
	term *fence.Term
	// nodes are the node records in etcd, leaving and draining ones included.
	nodes map[string]state.Node
	// departed are nodes seen leaving on purpose since the last published map.
	departed map[string]bool
	acks     map[nextmap.Ack]uint64
	// acked lists the partitions of each node's acknowledgement record, as held in acks.
	acked  map[string][]int
	cur    *state.Map
	curRev int64 // ModRevision of the partitions key, 0 when there is no map

	lastPublish time.Time
}

// update is one read or watch response of the node or acknowledgement prefix.
type update struct {
	nodes  bool
	reset  bool
	kvs    []*mvccpb.KeyValue
	events []*clientv3.Event
}

// lead publishes a new map whenever the live nodes change, a handoff is acknowledged or times
// out, or a crashed node's grace period ends, until the term ends. Changes that arrive within
// CoalesceWindow of the last map are published together; a change after a quiet period is
// published at once. When the node is leaving, it publishes a last map without itself before
// returning, so that the others switch at once.
func (l *leader) lead(term *fence.Term) error {
	ctx := term.Context()
	v := &view{term: term, departed: map[string]bool{}}
	if err := l.readMap(ctx, v); err != nil {
		return err
	}
	updates := make(chan update)
	wctx, stop := context.WithCancel(ctx)
	var g sync.WaitGroup
	defer func() { stop(); g.Wait() }()
	for _, nodes := range []bool{true, false} {
		p := &follow.Keys{Client: l.env.client, Log: l.log, ReadTimeout: l.env.opts.LeaseTTL, PrevKV: true,
			Key: l.env.schema.HandoffsPrefix(), Prefix: true}
		if nodes {
			p.Key = l.env.schema.NodesPrefix()
		}
		send := func(ctx context.Context, u update) {
			u.nodes = nodes
			select {
			case updates <- u:
			case <-ctx.Done():
			}
		}
		p.Reset = func(ctx context.Context, kvs []*mvccpb.KeyValue) { send(ctx, update{reset: true, kvs: kvs}) }
		p.Events = func(ctx context.Context, evs []*clientv3.Event) { send(ctx, update{events: evs}) }
		g.Go(func() { p.Run(wctx) })
	}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()

	haveNodes, haveAcks := false, false
	dirty := true
	// Acknowledgements arriving since the last map: they are published together once none has
	// arrived for CoalesceWindow, every copy is done, or maxCompletionDelay has passed.
	var firstAck, lastAck time.Time
	for {
		wake := l.wake(v)
		now := time.Now()
		if !firstAck.IsZero() && !dirty {
			if nextmap.AllAcknowledged(v.cur, v.acks) || now.Sub(lastAck) >= l.env.opts.CoalesceWindow ||
				now.Sub(firstAck) >= maxCompletionDelay {
				dirty = true
			} else {
				wake = min(wake, lastAck.Add(l.env.opts.CoalesceWindow).Sub(now), firstAck.Add(maxCompletionDelay).Sub(now))
			}
		}
		if dirty && haveNodes && haveAcks {
			if wait := l.env.opts.CoalesceWindow - time.Since(v.lastPublish); wait > 0 {
				wake = min(wake, wait)
			} else {
				err := l.publish(ctx, v, false)
				if errors.Is(err, errMapChanged) {
					if err := l.readMap(ctx, v); err != nil {
						return l.leave(v, err)
					}
					continue
				}
				if err != nil {
					return l.leave(v, err)
				}
				dirty = false
				firstAck, lastAck = time.Time{}, time.Time{}
				wake = l.wake(v)
			}
		}
		timer.Reset(max(wake, time.Millisecond))
		select {
		case <-ctx.Done():
			return l.leave(v, ctx.Err())
		case <-timer.C:
			dirty = dirty || nextmap.Wake(v.cur, l.env.opts.HandoffTimeout, l.env.opts.CrashGracePeriod, time.Now()) <= time.Millisecond
		case u := <-updates:
			if u.nodes {
				l.applyNodes(v, u)
				haveNodes = haveNodes || u.reset
				dirty = true
			} else {
				l.applyAcks(v, u)
				haveAcks = haveAcks || u.reset
				if u.reset {
					dirty = true
				} else {
					lastAck = time.Now()
					if firstAck.IsZero() {
						firstAck = lastAck
					}
				}
			}
		}
	}
}

// maxCompletionDelay is how long finished copies may wait for others before the map that
// routes to them is published.
const maxCompletionDelay = time.Second

// wake is how long until the next handoff deadline or grace-period end.
func (l *leader) wake(v *view) time.Duration {
	return nextmap.Wake(v.cur, l.env.opts.HandoffTimeout, l.env.opts.CrashGracePeriod, time.Now())
}

func (l *leader) applyNodes(v *view, u update) {
	if u.reset {
		v.nodes = make(map[string]state.Node, len(u.kvs))
		for _, kv := range u.kvs {
			if id, n, ok := l.decodeNode(kv.Key, kv.Value); ok {
				v.nodes[id] = n
			}
		}
		return
	}
	for _, ev := range u.events {
		if ev.Type == clientv3.EventTypeDelete {
			id, ok := l.env.schema.NodeID(string(ev.Kv.Key))
			if !ok {
				continue
			}
			delete(v.nodes, id)
			// A record deleted right after it said "leaving" is a Stop, not a crash.
			if ev.PrevKv != nil {
				if prev, err := state.DecodeNode(ev.PrevKv.Value); err == nil && prev.State == state.NodeLeaving {
					v.departed[id] = true
				}
			}
			continue
		}
		if id, n, ok := l.decodeNode(ev.Kv.Key, ev.Kv.Value); ok {
			v.nodes[id] = n
			if n.State == state.NodeLeaving {
				v.departed[id] = true
			}
		}
	}
}

func (l *leader) decodeNode(key, value []byte) (string, state.Node, bool) {
	id, ok := l.env.schema.NodeID(string(key))
	if !ok {
		return "", state.Node{}, false
	}
	n, err := state.DecodeNode(value)
	if err != nil || n.ID != id {
		l.log.Error("ignoring unreadable node record", zap.String("key", string(key)), zap.Error(err))
		return "", state.Node{}, false
	}
	return id, n, true
}

func (l *leader) applyAcks(v *view, u update) {
	if u.reset {
		v.acks = map[nextmap.Ack]uint64{}
		v.acked = map[string][]int{}
		for _, kv := range u.kvs {
			l.applyAck(v, kv.Key, kv.Value, false)
		}
		return
	}
	for _, ev := range u.events {
		l.applyAck(v, ev.Kv.Key, ev.Kv.Value, ev.Type == clientv3.EventTypeDelete)
	}
}

// applyAck replaces what the view holds of one node's acknowledgement record.
func (l *leader) applyAck(v *view, key, value []byte, deleted bool) {
	id, ok := l.env.schema.HandoffNode(string(key))
	if !ok {
		return
	}
	for _, p := range v.acked[id] {
		delete(v.acks, nextmap.Ack{Partition: p, Node: id})
	}
	delete(v.acked, id)
	if deleted {
		return
	}
	node, acked, err := state.DecodeAcks(value, l.env.config.PartitionCount)
	if err == nil && node != id {
		err = fmt.Errorf("record of node %q under the key of %q", node, id)
	}
	if err != nil {
		l.log.Error("ignoring unreadable handoff acknowledgements", zap.String("key", string(key)), zap.Error(err))
		return
	}
	ps := make([]int, 0, len(acked))
	for p, since := range acked {
		v.acks[nextmap.Ack{Partition: p, Node: id}] = since
		ps = append(ps, p)
	}
	v.acked[id] = ps
}

func (l *leader) readMap(ctx context.Context, v *view) error {
	rctx, cancel := context.WithTimeout(ctx, l.env.opts.LeaseTTL)
	defer cancel()
	r, err := state.ReadMap(rctx, l.env.client, l.env.schema, 0)
	if err != nil {
		return fmt.Errorf("read map: %w", err)
	}
	if r.Map != nil {
		if err := r.Map.Validate(l.env.config.PartitionCount); err != nil {
			// A corrupt map is replaced by a fresh placement, never served.
			l.log.Error("stored map is invalid, replacing it", zap.Error(err))
			r.Map.Partitions = nil
		}
	}
	v.cur, v.curRev = r.Map, r.ModRevision
	return nil
}

// leave publishes the map without this node when the term ended because the node is leaving.
// It uses a fresh bounded context: the term's own is cancelled by now. The write is still
// guarded by the leader key, so it fails if leadership has passed on.
func (l *leader) leave(v *view, cause error) error {
	select {
	case <-l.leaving:
	default:
		return cause
	}
	if v.nodes == nil {
		return cause // the term ended before the leader knew the nodes
	}
	ctx, cancel := context.WithTimeout(context.Background(), l.env.opts.ShutdownTimeout)
	defer cancel()
	if err := l.publish(ctx, v, true); err != nil {
		return fmt.Errorf("publish leaving map: %w", err)
	}
	return nil
}

// publish computes the next map and writes it if it differs from the current one. With
// leaving, this node is left out.
func (l *leader) publish(ctx context.Context, v *view, leaving bool) error {
	start := time.Now()
	o := &l.env.opts
	res, err := nextmap.Next(nextmap.Input{
		Current: v.cur, Nodes: v.nodes, Departed: v.departed, Acks: v.acks,
		Leader: o.NodeID, Leaving: leaving,
		PartitionCount: l.env.config.PartitionCount, ReplicationFactor: l.env.config.ReplicationFactor,
		HandoffTimeout: o.HandoffTimeout, CrashGracePeriod: o.CrashGracePeriod, Now: start.UTC(),
	})
	if err != nil || res.Map == nil {
		return err
	}
	next := res.Map
	if v.cur != nil && v.cur.SamePlacement(next) {
		return nil
	}
	for _, r := range res.Retries {
		l.log.Warn("handoff timed out, asking again", zap.String("partition", PartitionID(r.Partition)),
			zap.String("node", r.Node), zap.Int("attempt", r.Attempt), zap.Duration("timeout", o.HandoffTimeout))
	}
	rev, err := l.writeMap(ctx, v, next)
	if err != nil {
		return err
	}
	l.env.metrics.observePublish(next, time.Since(start))
	l.log.Info("published partition map", zap.Uint64("epoch", next.Epoch), zap.String("reason", next.Cause.Reason),
		zap.Strings("about", next.Cause.Nodes), zap.Int("nodes", len(next.Nodes)), zap.Int("handoffs_pending", nextmap.Pending(next)))
	v.cur, v.curRev = next, rev
	v.lastPublish = time.Now()
	clear(v.departed)
	return nil
}

// writeMap publishes m as state.Encoded.Writes says: every transaction guarded by the leader
// key, the head's also by the map's revision. It returns the new revision of the partitions key.
func (l *leader) writeMap(ctx context.Context, v *view, m *state.Map) (int64, error) {
	enc, err := state.EncodeNext(v.cur, m, maxMapValue)
	if err != nil {
		return 0, err
	}
	before, head := enc.Writes(l.env.schema, m.Epoch, maxMapValue)
	for _, op := range before {
		if _, err := v.term.Txn(ctx, nil, op); err != nil {
			return 0, fmt.Errorf("write map epoch %d: %w", m.Epoch, err)
		}
	}
	key := l.env.schema.Partitions()
	resp, err := v.term.Txn(ctx, []clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(key), "=", v.curRev)}, head...)
	if err != nil {
		return 0, fmt.Errorf("write map: %w", err)
	}
	if !resp.Succeeded {
		return 0, errMapChanged
	}
	l.env.metrics.observeMapWrite(enc)
	return resp.Header.Revision, nil
}
