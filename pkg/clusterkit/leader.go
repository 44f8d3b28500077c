package clusterkit

import (
	"context"
	"encoding/json"
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

// ackKey names one acknowledgement: node copied partition in.
type ackKey struct {
	partition int
	node      string
}

// ack is the value of a handoff acknowledgement.
type ack struct {
	Since uint64 `json:"since"`
}

// leaderState is what the leader knows while it leads.
type leaderState struct {
	term *fence.Term
	// nodes are the node records in etcd, leaving and draining ones included.
	nodes map[string]state.Node
	// departed are nodes seen leaving on purpose since the last published map.
	departed map[string]bool
	acks     map[ackKey]uint64
	cur      *state.Map
	curRev   int64 // ModRevision of the partitions key, 0 when there is no map

	lastPublish time.Time
}

// prefixWatch follows one key prefix for the leader. It lives as long as the term: a watch
// created at a revision the store has passed is served by etcd's catch-up loop, which runs only
// every 100ms, so re-creating it after every map write would delay every change.
type prefixWatch struct {
	prefix string
	cancel context.CancelFunc
	ch     clientv3.WatchChan
}

func (ck *ClusterKit) watchPrefix(ctx context.Context, prefix string, fromRev int64) *prefixWatch {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	return &prefixWatch{prefix: prefix, cancel: cancel, ch: ck.client.Watch(wctx, prefix,
		clientv3.WithPrefix(), clientv3.WithPrevKV(), clientv3.WithRev(fromRev))}
}

// lead does the leader's work for one term: it publishes a new map whenever the live nodes
// change, a handoff is acknowledged or times out, or a crashed node's grace period ends, until
// the term ends. Changes that arrive within CoalesceWindow of the last map are published
// together; a change after a quiet period is published at once. When the node is leaving, it
// publishes a last map without itself before returning, so that the others switch at once.
func (ck *ClusterKit) lead(term *fence.Term) error {
	ctx := term.Context()
	ls := &leaderState{term: term, departed: map[string]bool{}}
	nodesRev, err := ck.readNodes(ctx, ls)
	if err != nil {
		return err
	}
	acksRev, err := ck.readAcks(ctx, ls)
	if err != nil {
		return err
	}
	if err := ck.readLeaderMap(ctx, ls); err != nil {
		return err
	}
	nw := ck.watchPrefix(ctx, ck.schema.NodesPrefix(), nodesRev+1)
	aw := ck.watchPrefix(ctx, ck.schema.HandoffsPrefix(), acksRev+1)
	defer func() { nw.cancel(); aw.cancel() }()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()

	dirty := true
	for {
		wake := ck.nextWake(ls)
		if dirty {
			if wait := ck.opts.CoalesceWindow - time.Since(ls.lastPublish); wait > 0 {
				wake = min(wake, wait)
			} else {
				err := ck.publish(ctx, ls, false)
				if errors.Is(err, errMapChanged) {
					if err := ck.readLeaderMap(ctx, ls); err != nil {
						return ck.leave(ls, err)
					}
					continue
				}
				if err != nil {
					return ck.leave(ls, err)
				}
				dirty = false
				wake = ck.nextWake(ls)
			}
		}
		timer.Reset(wake)
		select {
		case <-ctx.Done():
			return ck.leave(ls, ctx.Err())
		case <-timer.C:
			dirty = true
		case resp, ok := <-nw.ch:
			if err := ck.leaderEvents(ctx, ls, &nw, resp, ok); err != nil {
				return ck.leave(ls, err)
			}
			dirty = true
		case resp, ok := <-aw.ch:
			if err := ck.leaderEvents(ctx, ls, &aw, resp, ok); err != nil {
				return ck.leave(ls, err)
			}
			dirty = true
		}
	}
}

// nextWake is how long until the next handoff deadline or grace-period end.
func (ck *ClusterKit) nextWake(ls *leaderState) time.Duration {
	wake := time.Hour
	if ls.cur == nil {
		return wake
	}
	for _, a := range ls.cur.Absent {
		wake = min(wake, time.Until(a.Since.Add(ck.opts.CrashGracePeriod)))
	}
	for i := range ls.cur.Partitions {
		for _, p := range ls.cur.Partitions[i].Pending {
			wake = min(wake, time.Until(p.Started.Add(ck.opts.HandoffTimeout)))
		}
	}
	return max(wake, time.Millisecond)
}

// leaderEvents applies one watch response of the node or acknowledgement prefix. A broken
// watch is re-created; after a compaction the prefix is read afresh.
func (ck *ClusterKit) leaderEvents(ctx context.Context, ls *leaderState, w **prefixWatch, resp clientv3.WatchResponse, ok bool) error {
	if ok && resp.Err() == nil {
		for _, ev := range resp.Events {
			if (*w).prefix == ck.schema.NodesPrefix() {
				ck.applyNodeEvent(ls, ev)
			} else {
				ck.applyAckEvent(ls, ev)
			}
		}
		return nil
	}
	(*w).cancel()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	var err error
	if !ok {
		err = errors.New("watch closed")
	} else {
		err = resp.Err()
	}
	if !errors.Is(err, rpctypes.ErrCompacted) {
		ck.log.Warn("leader watch broke, watching again", zap.String("prefix", (*w).prefix), zap.Error(err))
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	var rev int64
	if (*w).prefix == ck.schema.NodesPrefix() {
		rev, err = ck.readNodes(ctx, ls)
	} else {
		rev, err = ck.readAcks(ctx, ls)
	}
	if err != nil {
		return err
	}
	*w = ck.watchPrefix(ctx, (*w).prefix, rev+1)
	return nil
}

func (ck *ClusterKit) readNodes(ctx context.Context, ls *leaderState) (int64, error) {
	resp, err := ck.client.Get(ctx, ck.schema.NodesPrefix(), clientv3.WithPrefix())
	if err != nil {
		return 0, fmt.Errorf("read nodes: %w", err)
	}
	ls.nodes = make(map[string]state.Node, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		if id, n, ok := ck.decodeNodeKV(kv.Key, kv.Value); ok {
			ls.nodes[id] = n
		}
	}
	return resp.Header.Revision, nil
}

func (ck *ClusterKit) decodeNodeKV(key, value []byte) (string, state.Node, bool) {
	id, ok := ck.schema.NodeID(string(key))
	if !ok {
		return "", state.Node{}, false
	}
	n, err := state.DecodeNode(value)
	if err != nil || n.ID != id {
		ck.log.Error("ignoring unreadable node record", zap.String("key", string(key)), zap.Error(err))
		return "", state.Node{}, false
	}
	return id, n, true
}

func (ck *ClusterKit) applyNodeEvent(ls *leaderState, ev *clientv3.Event) {
	if ev.Type == clientv3.EventTypeDelete {
		id, ok := ck.schema.NodeID(string(ev.Kv.Key))
		if !ok {
			return
		}
		delete(ls.nodes, id)
		// A record deleted right after it said "leaving" is a Stop, not a crash.
		if ev.PrevKv != nil {
			if prev, err := state.DecodeNode(ev.PrevKv.Value); err == nil && prev.State == state.NodeLeaving {
				ls.departed[id] = true
			}
		}
		return
	}
	if id, n, ok := ck.decodeNodeKV(ev.Kv.Key, ev.Kv.Value); ok {
		ls.nodes[id] = n
		if n.State == state.NodeLeaving {
			ls.departed[id] = true
		}
	}
}

func (ck *ClusterKit) readAcks(ctx context.Context, ls *leaderState) (int64, error) {
	resp, err := ck.client.Get(ctx, ck.schema.HandoffsPrefix(), clientv3.WithPrefix())
	if err != nil {
		return 0, fmt.Errorf("read handoffs: %w", err)
	}
	ls.acks = make(map[ackKey]uint64, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		ck.applyAck(ls, kv.Key, kv.Value, false)
	}
	return resp.Header.Revision, nil
}

func (ck *ClusterKit) applyAckEvent(ls *leaderState, ev *clientv3.Event) {
	ck.applyAck(ls, ev.Kv.Key, ev.Kv.Value, ev.Type == clientv3.EventTypeDelete)
}

func (ck *ClusterKit) applyAck(ls *leaderState, key, value []byte, deleted bool) {
	p, id, ok := ck.schema.ParseHandoff(string(key))
	if !ok {
		return
	}
	k := ackKey{partition: p, node: id}
	if deleted {
		delete(ls.acks, k)
		return
	}
	var a ack
	if err := json.Unmarshal(value, &a); err != nil {
		ck.log.Error("ignoring unreadable handoff acknowledgement", zap.String("key", string(key)), zap.Error(err))
		return
	}
	ls.acks[k] = a.Since
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

// publish computes the next map and writes it if it differs from the current one. With
// leaving, this node is left out.
func (ck *ClusterKit) publish(ctx context.Context, ls *leaderState, leaving bool) error {
	start := time.Now()
	next, err := ck.nextMap(ls, leaving, start.UTC())
	if err != nil || next == nil {
		return err
	}
	if ls.cur != nil && ls.cur.SamePlacement(next) {
		return nil
	}
	rev, err := ck.writeMap(ctx, ls, next)
	if err != nil {
		return err
	}
	ck.metrics.observePublish(next, time.Since(start))
	ck.log.Info("published partition map", zap.Uint64("epoch", next.Epoch), zap.String("reason", next.Cause.Reason),
		zap.Strings("about", next.Cause.Nodes), zap.Int("nodes", len(next.Nodes)), zap.Int("handoffs_pending", pendingCount(next)))
	ls.cur, ls.curRev = next, rev
	ls.lastPublish = time.Now()
	clear(ls.departed)
	ck.dropAcks(ctx, ls)
	return nil
}

func pendingCount(m *state.Map) int {
	n := 0
	for i := range m.Partitions {
		n += len(m.Partitions[i].Pending)
	}
	return n
}

// nextMap computes the map that follows ls.cur. The placement (pkg/rebalance) says where each
// partition should end up; the map keeps routing to the current holders until every newcomer
// has acknowledged its copy (handoff), promotes a surviving holder at once when the primary is
// gone, and keeps a crashed node's places during the grace period.
func (ck *ClusterKit) nextMap(ls *leaderState, leaving bool, now time.Time) (*state.Map, error) {
	self := ck.opts.NodeID
	live := make(map[string]state.Node, len(ls.nodes))
	for id, n := range ls.nodes {
		if n.State == state.NodeLeaving || leaving && id == self {
			continue
		}
		live[id] = n
	}
	if len(live) == 0 {
		return nil, nil // nobody to hold anything: keep the last map
	}
	cur := ls.cur
	if cur != nil && len(cur.Partitions) != ck.config.PartitionCount {
		cur = nil // unreadable map: place from scratch
	}
	var cause causeBuilder
	absent := map[string]state.Absent{}
	if cur != nil {
		for id, a := range cur.Absent {
			if _, ok := live[id]; !ok && now.Sub(a.Since) < ck.opts.CrashGracePeriod {
				absent[id] = a
			}
		}
		for id, n := range cur.Nodes {
			if _, ok := live[id]; ok {
				continue
			}
			if ls.departed[id] || leaving && id == self {
				cause.add(state.ReasonLeave, id)
				continue
			}
			cause.add(state.ReasonCrash, id)
			if ck.opts.CrashGracePeriod > 0 {
				absent[id] = state.Absent{Since: now, Zone: n.Zone, Weight: n.Weight}
			}
		}
		for id, n := range live {
			old, known := cur.Nodes[id]
			switch {
			case !known:
				cause.add(state.ReasonJoin, id)
			case n.State == state.NodeDraining && old.State != state.NodeDraining:
				cause.add(state.ReasonDrain, id)
			}
		}
	}

	// Draining nodes keep serving but are given nothing new; absent nodes keep their places.
	var placed []rebalance.Node
	for _, id := range slices.Sorted(maps.Keys(live)) {
		if n := live[id]; n.State != state.NodeDraining {
			placed = append(placed, rebalance.Node{ID: id, Zone: n.Zone, Weight: n.Weight})
		}
	}
	hasLive := len(placed) > 0
	for _, id := range slices.Sorted(maps.Keys(absent)) {
		a := absent[id]
		placed = append(placed, rebalance.Node{ID: id, Zone: a.Zone, Weight: a.Weight})
	}
	if !hasLive {
		// Every live node is draining: they keep what they have.
		placed = placed[:0]
		for _, id := range slices.Sorted(maps.Keys(live)) {
			n := live[id]
			placed = append(placed, rebalance.Node{ID: id, Zone: n.Zone, Weight: n.Weight})
		}
	}
	var prev rebalance.Map
	epoch := uint64(1)
	if cur != nil {
		prev = make(rebalance.Map, len(cur.Partitions))
		for i := range cur.Partitions {
			prev[i] = cur.Partitions[i].Placement()
		}
		epoch = cur.Epoch + 1
	}
	target, err := rebalance.Compute(prev, placed, rebalance.Config{
		Partitions:        ck.config.PartitionCount,
		ReplicationFactor: ck.config.ReplicationFactor,
	})
	if err != nil {
		return nil, fmt.Errorf("compute placement: %w", err)
	}

	next := &state.Map{
		Epoch:      epoch,
		Leader:     self,
		UpdatedAt:  now.Truncate(time.Millisecond),
		Nodes:      live,
		Partitions: make([]state.Entry, len(target)),
	}
	if len(absent) > 0 {
		next.Absent = absent
	}
	if cur == nil {
		for i, t := range target {
			next.Partitions[i] = state.Entry{Holders: t, PrimaryEpoch: epoch}
		}
		next.Cause = state.Cause{Reason: state.ReasonCreate}
		return next, nil
	}
	for i, t := range target {
		e, completed, retried := ck.nextEntry(&cur.Partitions[i], i, t, live, ls.acks, epoch, now)
		next.Partitions[i] = e
		if completed {
			cause.add(state.ReasonHandoff, "")
		}
		if retried {
			cause.add(state.ReasonTimeout, "")
		}
	}
	next.Cause = cause.cause()
	return next, nil
}

// nextEntry moves one partition a step towards its target t.
func (ck *ClusterKit) nextEntry(old *state.Entry, p int, t []string, live map[string]state.Node, acks map[ackKey]uint64, epoch uint64, now time.Time) (e state.Entry, completed, retried bool) {
	isLive := func(id string) bool { _, ok := live[id]; return ok }
	var serving []string
	for _, h := range old.Holders {
		if isLive(h) {
			serving = append(serving, h)
		}
	}
	for _, pd := range old.Pending {
		if isLive(pd.Node) && slices.Contains(t, pd.Node) && acks[ackKey{p, pd.Node}] == pd.Since && !slices.Contains(serving, pd.Node) {
			serving = append(serving, pd.Node)
			completed = true
		}
	}
	var want []string // the target's live nodes
	for _, n := range t {
		if isLive(n) {
			want = append(want, n)
		}
	}
	var missing []string
	for _, n := range want {
		if !slices.Contains(serving, n) {
			missing = append(missing, n)
		}
	}
	switch {
	case len(serving) == 0 || len(missing) == 0:
		// Either every holder is gone (nothing to copy from: the target serves at once), or
		// every newcomer has its copy: switch to the target and release the others.
		e.Holders = want
		if len(e.Holders) == 0 {
			e.Holders = serving
		}
	default:
		e.Holders = orderServing(serving, t, old.Holders)
		e.Target = t
		for _, n := range missing {
			pd, ok := old.PendingFor(n)
			switch {
			case !ok:
				pd = state.Pending{Node: n, Since: epoch, Started: now, Attempt: 1}
			case now.Sub(pd.Started) >= ck.opts.HandoffTimeout:
				ck.log.Warn("handoff timed out, asking again", zap.String("partition", PartitionID(p)),
					zap.String("node", n), zap.Int("attempt", pd.Attempt), zap.Duration("timeout", ck.opts.HandoffTimeout))
				pd = state.Pending{Node: n, Since: epoch, Started: now, Attempt: pd.Attempt + 1}
				retried = true
			}
			e.Pending = append(e.Pending, pd)
		}
	}
	if len(old.Holders) > 0 && e.Holders[0] == old.Holders[0] {
		e.PrimaryEpoch = old.PrimaryEpoch
	} else {
		e.PrimaryEpoch = epoch
	}
	return e, completed, retried
}

// orderServing puts the primary first while a partition moves: the target's primary if it
// already serves, else the current primary if it still serves, else the first serving node of
// the target (a survivor promoted without copying). The rest follow the target's order, then
// the holders that will be released.
func orderServing(serving, t, oldHolders []string) []string {
	primary := ""
	switch {
	case slices.Contains(serving, t[0]):
		primary = t[0]
	case len(oldHolders) > 0 && slices.Contains(serving, oldHolders[0]):
		primary = oldHolders[0]
	default:
		for _, n := range t {
			if slices.Contains(serving, n) {
				primary = n
				break
			}
		}
		if primary == "" {
			primary = serving[0]
		}
	}
	out := []string{primary}
	for _, n := range t {
		if n != primary && slices.Contains(serving, n) {
			out = append(out, n)
		}
	}
	for _, n := range serving {
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out
}

// causeBuilder picks the reason of a map by precedence and collects the nodes it is about.
type causeBuilder struct {
	reasons map[string][]string
}

func (c *causeBuilder) add(reason, node string) {
	if c.reasons == nil {
		c.reasons = map[string][]string{}
	}
	list := c.reasons[reason]
	if node != "" {
		list = append(list, node)
	}
	c.reasons[reason] = list
}

func (c *causeBuilder) cause() state.Cause {
	for _, r := range []string{state.ReasonCrash, state.ReasonLeave, state.ReasonDrain, state.ReasonJoin, state.ReasonHandoff, state.ReasonTimeout} {
		if nodes, ok := c.reasons[r]; ok {
			slices.Sort(nodes)
			return state.Cause{Reason: r, Nodes: nodes}
		}
	}
	return state.Cause{Reason: state.ReasonRebalance}
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

// dropAcks deletes the acknowledgements the current map no longer waits for, in batches.
// Failing to delete them is harmless: a stale acknowledgement never matches a later request,
// whose epoch differs.
func (ck *ClusterKit) dropAcks(ctx context.Context, ls *leaderState) {
	var ops []clientv3.Op
	flush := func() {
		if len(ops) == 0 {
			return
		}
		if _, err := ls.term.Txn(ctx, nil, ops...); err != nil {
			ck.log.Debug("dropping handoff acknowledgements failed", zap.Error(err))
		}
		ops = ops[:0]
	}
	for k, since := range ls.acks {
		if k.partition < len(ls.cur.Partitions) {
			if pd, ok := ls.cur.Partitions[k.partition].PendingFor(k.node); ok && pd.Since == since {
				continue
			}
		}
		ops = append(ops, clientv3.OpDelete(ck.schema.Handoff(k.partition, k.node)))
		if len(ops) == 100 {
			flush()
		}
	}
	flush()
}
