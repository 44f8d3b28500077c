package clusterkit

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/clusterkit-go/clusterkit/internal/fence"
	"github.com/clusterkit-go/clusterkit/internal/state"
	"github.com/clusterkit-go/clusterkit/pkg/rebalance"
)

// maxMapValue is the largest value a map write puts in etcd; tests lower it to exercise chunking
// on small maps.
var maxMapValue = state.MaxValue

// errMapChanged means the map changed between the leader's read and its write.
var errMapChanged = errors.New("partition map changed concurrently")

// leaderState is what the leader knows while it leads: the live nodes and the map it last
// read or wrote.
type leaderState struct {
	term     *fence.Term
	nodes    map[string]state.Node
	nodesRev int64
	cur      *state.Map
	curRev   int64 // ModRevision of the partitions key, 0 when there is no map
}

// lead does the leader's work for one term: it publishes a new map whenever the set of live
// nodes changes, until the term ends. When the node is leaving, it publishes a last map without
// itself before returning, so that the others switch at once.
func (ck *ClusterKit) lead(term *fence.Term) error {
	ctx := term.Context()
	ls := &leaderState{term: term}
	if err := ck.readNodes(ctx, ls); err != nil {
		return err
	}
	if err := ck.readLeaderMap(ctx, ls); err != nil {
		return err
	}
	w := ck.watchNodes(ctx, ls)
	defer func() { w.cancel() }()
	for {
		if err := ck.publish(ctx, ls, false); err != nil {
			if errors.Is(err, errMapChanged) {
				if err := ck.readLeaderMap(ctx, ls); err != nil {
					return err
				}
				continue
			}
			return ck.leave(ls, err)
		}
		if err := ck.waitNodeChange(ctx, ls, &w); err != nil {
			return ck.leave(ls, err)
		}
	}
}

// leave publishes the map without this node when the term ended because the node is leaving.
// It uses a fresh bounded context: the term's own is cancelled by now. The write is still
// guarded by the leader key, so it fails if leadership has passed on.
func (ck *ClusterKit) leave(ls *leaderState, cause error) error {
	select {
	case <-ck.leaving:
	default:
		return cause
	}
	ctx, cancel := context.WithTimeout(context.Background(), ck.opts.ShutdownTimeout)
	defer cancel()
	if err := ck.publish(ctx, ls, true); err != nil {
		return fmt.Errorf("publish leaving map: %w", err)
	}
	return nil
}

func (ck *ClusterKit) readNodes(ctx context.Context, ls *leaderState) error {
	resp, err := ck.client.Get(ctx, ck.schema.NodesPrefix(), clientv3.WithPrefix())
	if err != nil {
		return fmt.Errorf("read nodes: %w", err)
	}
	ls.nodes = make(map[string]state.Node, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		ck.applyNodeKV(ls, kv.Key, kv.Value)
	}
	ls.nodesRev = resp.Header.Revision
	return nil
}

func (ck *ClusterKit) applyNodeKV(ls *leaderState, key, value []byte) {
	id, ok := ck.schema.NodeID(string(key))
	if !ok {
		return
	}
	n, err := state.DecodeNode(value)
	if err != nil || n.ID != id {
		ck.log.Error("ignoring unreadable node record", zap.String("key", string(key)), zap.Error(err))
		return
	}
	ls.nodes[id] = n
}

func (ck *ClusterKit) readLeaderMap(ctx context.Context, ls *leaderState) error {
	r, err := state.ReadMap(ctx, ck.client, ck.schema, 0)
	if err != nil {
		return fmt.Errorf("read map: %w", err)
	}
	if r.Map != nil {
		if err := r.Map.Validate(ck.config.PartitionCount); err != nil {
			// A corrupt map is replaced by a fresh placement, never served.
			ck.log.Error("stored map is invalid, replacing it", zap.Error(err))
			r.Map.Partitions = nil
		}
	}
	ls.cur, ls.curRev = r.Map, r.ModRevision
	return nil
}

// nodeWatch follows the node records for the leader. It lives as long as the term: a watch
// created at a revision the store has passed is served by etcd's catch-up loop, which runs only
// every 100ms, so re-creating it after every map write would delay every change.
type nodeWatch struct {
	cancel context.CancelFunc
	ch     clientv3.WatchChan
}

func (ck *ClusterKit) watchNodes(ctx context.Context, ls *leaderState) *nodeWatch {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	return &nodeWatch{cancel: cancel, ch: ck.client.Watch(wctx, ck.schema.NodesPrefix(), clientv3.WithPrefix(), clientv3.WithRev(ls.nodesRev+1))}
}

// waitNodeChange blocks until the set of live nodes changes, then applies every change that has
// arrived so far, so that a burst of joins or leaves makes one map.
func (ck *ClusterKit) waitNodeChange(ctx context.Context, ls *leaderState, w **nodeWatch) error {
	for {
		changed, err := ck.drainNodeEvents(ctx, ls, (*w).ch)
		if changed {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		(*w).cancel()
		if errors.Is(err, rpctypes.ErrCompacted) {
			// History is gone: read the nodes afresh and publish from that.
			if err := ck.readNodes(ctx, ls); err != nil {
				return err
			}
			*w = ck.watchNodes(ctx, ls)
			return nil
		}
		ck.log.Warn("node watch broke, watching again", zap.Error(err))
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		*w = ck.watchNodes(ctx, ls)
	}
}

// drainNodeEvents waits for the first node event, then takes every response already queued.
func (ck *ClusterKit) drainNodeEvents(ctx context.Context, ls *leaderState, wch clientv3.WatchChan) (bool, error) {
	changed := false
	for {
		var resp clientv3.WatchResponse
		var ok bool
		if changed {
			select {
			case resp, ok = <-wch:
			default:
				return true, nil
			}
		} else {
			select {
			case <-ctx.Done():
				return false, ctx.Err()
			case resp, ok = <-wch:
			}
		}
		if !ok {
			return changed, errors.New("watch closed")
		}
		if err := resp.Err(); err != nil {
			return changed, err
		}
		for _, ev := range resp.Events {
			if ev.Type == clientv3.EventTypeDelete {
				if id, ok := ck.schema.NodeID(string(ev.Kv.Key)); ok {
					delete(ls.nodes, id)
				}
			} else {
				ck.applyNodeKV(ls, ev.Kv.Key, ev.Kv.Value)
			}
			changed = true
		}
		ls.nodesRev = resp.Header.Revision
	}
}

// publish computes the next map from the live nodes and writes it if it differs from the
// current one. With leaving, this node is left out.
func (ck *ClusterKit) publish(ctx context.Context, ls *leaderState, leaving bool) error {
	live := ls.nodes
	if leaving {
		live = maps.Clone(ls.nodes)
		delete(live, ck.opts.NodeID)
	}
	if len(live) == 0 {
		return nil // nobody to hold anything: keep the last map
	}
	next, err := ck.computeMap(ls.cur, live)
	if err != nil {
		return err
	}
	if ls.cur != nil && ls.cur.SamePlacement(next) {
		return nil
	}
	rev, err := ck.writeMap(ctx, ls, next)
	if err != nil {
		return err
	}
	ck.log.Info("published partition map", zap.Uint64("epoch", next.Epoch), zap.Int("nodes", len(live)))
	ls.cur, ls.curRev = next, rev
	return nil
}

// computeMap places the partitions on the live nodes, starting from cur.
func (ck *ClusterKit) computeMap(cur *state.Map, live map[string]state.Node) (*state.Map, error) {
	ids := slices.Sorted(maps.Keys(live))
	nodes := make([]rebalance.Node, 0, len(ids))
	for _, id := range ids {
		n := live[id]
		nodes = append(nodes, rebalance.Node{ID: id, Zone: n.Zone, Weight: n.Weight})
	}
	var prev rebalance.Map
	epoch := uint64(1)
	if cur != nil {
		prev = rebalance.Map(cur.Partitions)
		epoch = cur.Epoch + 1
	}
	placed, err := rebalance.Compute(prev, nodes, rebalance.Config{
		Partitions:        ck.config.PartitionCount,
		ReplicationFactor: ck.config.ReplicationFactor,
	})
	if err != nil {
		return nil, fmt.Errorf("compute placement: %w", err)
	}
	return &state.Map{
		Epoch:      epoch,
		Leader:     ck.opts.NodeID,
		UpdatedAt:  time.Now().UTC().Truncate(time.Millisecond),
		Nodes:      maps.Clone(live),
		Partitions: placed,
	}, nil
}

// writeMap publishes m: chunks first (each guarded by the leader key), then the head in one
// transaction guarded by the leader key and by the map's revision, deleting older chunks. It
// returns the new revision of the partitions key.
func (ck *ClusterKit) writeMap(ctx context.Context, ls *leaderState, m *state.Map) (int64, error) {
	enc, err := state.Encode(m, maxMapValue)
	if err != nil {
		return 0, err
	}
	for i, c := range enc.Chunks {
		if _, err := ls.term.Txn(ctx, nil, clientv3.OpPut(ck.schema.Chunk(m.Epoch, i), string(c))); err != nil {
			return 0, fmt.Errorf("write map chunk %d: %w", i, err)
		}
	}
	key := ck.schema.Partitions()
	resp, err := ls.term.Txn(ctx,
		[]clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(key), "=", ls.curRev)},
		clientv3.OpPut(key, string(enc.Head)),
		clientv3.OpDelete(ck.schema.AllChunksPrefix(), clientv3.WithRange(ck.schema.ChunksPrefix(m.Epoch))),
	)
	if err != nil {
		return 0, fmt.Errorf("write map: %w", err)
	}
	if !resp.Succeeded {
		return 0, errMapChanged
	}
	return resp.Header.Revision, nil
}
