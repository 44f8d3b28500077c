package clusterkit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/clusterkit-go/clusterkit/internal/fence"
	"github.com/clusterkit-go/clusterkit/internal/follow"
	"github.com/clusterkit-go/clusterkit/internal/mapstore"
	"github.com/clusterkit-go/clusterkit/internal/nextmap"
	"github.com/clusterkit-go/clusterkit/internal/state"
	"github.com/clusterkit-go/clusterkit/pkg/wire"
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
	// held returns the map this node holds (its map follower's), nil before the first: the
	// best state at hand when the stored map is missing, unreadable or older.
	held func() *state.Map
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
	// broken says why the stored map cannot be built on (missing while a node holds one,
	// unreadable, invalid), "" when it can: the next map is then written whole.
	broken string
	// floors are the epochs nodes reported holding (held/<id>).
	floors map[string]uint64
	// skipped holds the ModRevision at which each invalid record was logged, by key, so that
	// one bad record is logged once per revision, not once per read.
	skipped map[string]int64
	// admin are the operators' valid actions, by key, and adminRev the ModRevision of each.
	admin    map[string]state.AdminAction
	adminRev map[string]int64
	// adminBase are the actions that were in force when cur was published, nil until the
	// term's first publish works it out (adminChanges).
	adminBase map[string]state.AdminAction

	lastPublish time.Time
}

// recordKind is the prefix an update comes from.
type recordKind int

const (
	nodeRecords recordKind = iota
	ackRecords
	heldRecords
	adminRecords
)

// update is one read or watch response of the node, acknowledgement or held-epoch prefix.
type update struct {
	kind   recordKind
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
	v := &view{term: term, departed: map[string]bool{}, floors: map[string]uint64{}, skipped: map[string]int64{},
		admin: map[string]state.AdminAction{}, adminRev: map[string]int64{}}
	if err := l.readMap(ctx, v); err != nil {
		return err
	}
	updates := make(chan update)
	wctx, stop := context.WithCancel(ctx)
	var g sync.WaitGroup
	defer func() { stop(); g.Wait() }()
	prefixes := map[recordKind]string{
		nodeRecords:  l.env.schema.NodesPrefix(),
		ackRecords:   l.env.schema.HandoffsPrefix(),
		heldRecords:  l.env.schema.HeldPrefix(),
		adminRecords: l.env.schema.AdminPrefix(),
	}
	for kind, prefix := range prefixes {
		p := &follow.Keys{Client: l.env.client, Log: l.log, ReadTimeout: l.env.opts.LeaseTTL, PrevKV: true,
			Key: prefix, Prefix: true}
		send := func(ctx context.Context, u update) {
			u.kind = kind
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

	haveNodes, haveAcks, haveAdmin := false, false, false
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
		if dirty && haveNodes && haveAcks && haveAdmin {
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
			switch u.kind {
			case heldRecords:
				// A node saw the stored map go back, vanish or break: read what is stored now,
				// and publish above the epoch held when it cannot be built on or is older.
				if l.applyHeld(v, u) {
					if err := l.readMap(ctx, v); err != nil {
						return l.leave(v, err)
					}
					dirty = dirty || v.broken != "" || l.floor(v) > epochOf(v.cur)
				}
			case adminRecords:
				changed := l.applyAdmin(v, u)
				haveAdmin = haveAdmin || u.reset
				dirty = dirty || changed || u.reset
			case nodeRecords:
				l.applyNodes(v, u)
				haveNodes = haveNodes || u.reset
				dirty = true
			default:
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
			if id, n, ok := l.decodeNode(v, kv); ok {
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
		id, n, ok := l.decodeNode(v, ev.Kv)
		if !ok {
			// An invalid record replaces a valid one: the node is out of placement until it
			// writes a valid one again.
			if id, found := l.env.schema.NodeID(string(ev.Kv.Key)); found {
				delete(v.nodes, id)
			}
			continue
		}
		v.nodes[id] = n
		if n.State == state.NodeLeaving {
			v.departed[id] = true
		}
	}
}

// decodeNode decodes a node record; an invalid one is skipped (logged and counted once per
// revision), so that one bad record cannot stop placement for everyone else.
func (l *leader) decodeNode(v *view, kv *mvccpb.KeyValue) (string, state.Node, bool) {
	id, ok := l.env.schema.NodeID(string(kv.Key))
	if !ok {
		return "", state.Node{}, false
	}
	n, err := state.DecodeNode(kv.Value)
	if err == nil && n.ID != id {
		err = fmt.Errorf("record of node %q under the key of %q", n.ID, id)
	}
	if err != nil {
		l.skip(v, "node", kv, err)
		return "", state.Node{}, false
	}
	return id, n, true
}

// skip logs and counts an invalid record once per revision.
func (l *leader) skip(v *view, kind string, kv *mvccpb.KeyValue, err error) {
	key := string(kv.Key)
	if v.skipped[key] == kv.ModRevision {
		return
	}
	v.skipped[key] = kv.ModRevision
	l.env.metrics.invalidRecords.WithLabelValues(kind).Inc()
	l.log.Error("skipping invalid record", zap.String("kind", kind), zap.String("key", key),
		zap.Int64("mod_revision", kv.ModRevision), zap.Error(err))
}

// applyHeld replaces what the view holds of the nodes' held-epoch reports, and reports whether
// u brought a report.
func (l *leader) applyHeld(v *view, u update) bool {
	reported := false
	apply := func(kv *mvccpb.KeyValue, deleted bool) {
		id, ok := l.env.schema.HeldNode(string(kv.Key))
		if !ok {
			return
		}
		delete(v.floors, id)
		if deleted {
			return
		}
		h, err := state.DecodeHeld(kv.Value)
		if err == nil && h.Node != id {
			err = fmt.Errorf("report of node %q under the key of %q", h.Node, id)
		}
		if err != nil {
			l.skip(v, "held", kv, err)
			return
		}
		v.floors[id] = h.Epoch
		reported = true
	}
	if u.reset {
		clear(v.floors)
		for _, kv := range u.kvs {
			apply(kv, false)
		}
	}
	for _, ev := range u.events {
		apply(ev.Kv, ev.Type == clientv3.EventTypeDelete)
	}
	return reported
}

// floor is the highest epoch a live node is known to hold: this node's and the reported ones.
func (l *leader) floor(v *view) uint64 {
	f := epochOf(l.held())
	for _, e := range v.floors {
		f = max(f, e)
	}
	return f
}

func epochOf(m *state.Map) uint64 {
	if m == nil {
		return 0
	}
	return m.Epoch
}

func (l *leader) applyAcks(v *view, u update) {
	if u.reset {
		v.acks = map[nextmap.Ack]uint64{}
		v.acked = map[string][]int{}
		for _, kv := range u.kvs {
			l.applyAck(v, kv, false)
		}
		return
	}
	for _, ev := range u.events {
		l.applyAck(v, ev.Kv, ev.Type == clientv3.EventTypeDelete)
	}
}

// applyAck replaces what the view holds of one node's acknowledgement record.
func (l *leader) applyAck(v *view, kv *mvccpb.KeyValue, deleted bool) {
	id, ok := l.env.schema.HandoffNode(string(kv.Key))
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
	node, acked, err := state.DecodeAcks(kv.Value, l.env.config.PartitionCount)
	if err == nil && node != id {
		err = fmt.Errorf("record of node %q under the key of %q", node, id)
	}
	if err != nil {
		l.skip(v, "handoffs", kv, err)
		return
	}
	ps := make([]int, 0, len(acked))
	for p, since := range acked {
		v.acks[nextmap.Ack{Partition: p, Node: id}] = since
		ps = append(ps, p)
	}
	v.acked[id] = ps
}

// readMap reads the stored map. A map the leader cannot build on (unreadable, invalid, or
// missing while this node holds one) is not an error: v.broken says why, and the next map
// replaces it, written whole.
func (l *leader) readMap(ctx context.Context, v *view) error {
	rctx, cancel := context.WithTimeout(ctx, l.env.opts.LeaseTTL)
	defer cancel()
	r, err := mapstore.ReadMap(rctx, l.env.client, l.env.schema, 0)
	if err != nil && !errors.Is(err, state.ErrCorrupt) {
		return fmt.Errorf("read map: %w", err)
	}
	v.cur, v.curRev, v.broken = r.Map, r.ModRevision, ""
	switch {
	case err != nil:
		v.broken = "unreadable: " + err.Error()
	case r.Map != nil:
		if verr := r.Map.Validate(l.env.config.PartitionCount); verr != nil {
			v.cur, v.broken = nil, "invalid: "+verr.Error()
		}
	case l.held() != nil:
		v.broken = "missing, while this node holds the map of epoch " + strconv.FormatUint(l.held().Epoch, 10)
	}
	if v.broken != "" {
		l.env.metrics.invalidRecords.WithLabelValues("map").Inc()
		l.log.Error("the stored partition map cannot be built on; replacing it", zap.String("why", v.broken),
			zap.Int64("mod_revision", r.ModRevision))
	}
	return nil
}

// recoveryBase is what the next map is computed from when the stored map cannot be built on or
// is older than a map a node holds: the newest valid map at hand (the stored one or this node's),
// at epoch floor, with every primary epoch raised to the epoch about to be published, so that
// neither map nor primary epochs go backwards for any node. Without any map at hand, placement
// starts afresh above floor.
func (l *leader) recoveryBase(v *view, floor uint64) *state.Map {
	base := v.cur
	if h := l.held(); h != nil && len(h.Partitions) == l.env.config.PartitionCount && (base == nil || h.Epoch > base.Epoch) {
		base = h
	}
	if base == nil {
		return &state.Map{Epoch: floor}
	}
	m := *base
	m.Epoch = floor
	m.Partitions = slices.Clone(base.Partitions)
	for i := range m.Partitions {
		m.Partitions[i].PrimaryEpoch = floor + 1
	}
	return &m
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
	base, floor := v.cur, l.floor(v)
	recovering := v.broken != "" || floor > epochOf(v.cur)
	if recovering {
		base = l.recoveryBase(v, max(floor, epochOf(v.cur)))
	}
	admin := v.adminChanges()
	computeStart := time.Now()
	res, err := nextmap.Next(nextmap.Input{
		Current: base, Nodes: v.nodes, Departed: v.departed, Acks: v.acks,
		Leader: o.NodeID, Leaving: leaving,
		PartitionCount: l.env.config.PartitionCount, ReplicationFactor: l.env.config.ReplicationFactor,
		HandoffTimeout: o.HandoffTimeout, CrashGracePeriod: o.CrashGracePeriod, Now: start.UTC(),
		MaxHandoffsPerNode: o.MaxHandoffsPerNode, MaxHandoffs: o.MaxHandoffs, Admin: v.constraints(), AdminChanges: admin,
	})
	if err != nil || res.Map == nil {
		return err
	}
	computed := time.Since(computeStart)
	next := res.Map
	if !recovering && v.cur != nil && v.cur.SamePlacement(next) {
		return nil
	}
	for _, r := range res.Retries {
		l.log.Warn("handoff timed out, asking again", zap.String("partition", PartitionID(r.Partition)),
			zap.String("node", r.Node), zap.Int("attempt", r.Attempt), zap.Duration("timeout", o.HandoffTimeout))
	}
	rec := nextmap.Summary(base, next, admin)
	rec.ComputeMillis = float64(computed.Microseconds()) / 1000
	rev, err := l.writeMap(ctx, v, next, recovering, rec)
	if err != nil {
		return err
	}
	if recovering {
		l.env.metrics.mapRecoveries.Inc()
		why := v.broken
		if why == "" {
			why = fmt.Sprintf("older (epoch %d) than a map a node holds (epoch %d)", epochOf(v.cur), floor)
		}
		l.log.Warn("replaced the stored partition map", zap.String("why", why), zap.Uint64("epoch", next.Epoch))
		v.broken = ""
	}
	l.env.metrics.observePublish(base, next, l.env.config.ReplicationFactor, time.Since(start))
	l.log.Info("published partition map", zap.Uint64("epoch", next.Epoch), zap.String("reason", next.Cause.Reason),
		zap.Strings("about", next.Cause.Nodes), zap.Int("nodes", len(next.Nodes)), zap.Int("handoffs_pending", nextmap.Pending(next)))
	v.cur, v.curRev = next, rev
	v.adminBase = maps.Clone(v.admin)
	v.lastPublish = time.Now()
	clear(v.departed)
	return nil
}

// historyRecords is how many records of published maps the cluster keeps under history/ (a
// variable for tests).
var historyRecords uint64 = 1000

// writeMap publishes m as state.Encoded.Writes says: every transaction guarded by the leader
// key, the head's also by the map's revision. The head's transaction also writes rec, the map's
// history record, and deletes the records that fall out of the last historyRecords. It returns
// the new revision of the partitions key.
func (l *leader) writeMap(ctx context.Context, v *view, m *state.Map, whole bool, rec wire.HistoryRecord) (int64, error) {
	prev := v.cur
	if whole {
		prev = nil
	}
	enc, err := state.EncodeNext(prev, m, maxMapValue)
	if err != nil {
		return 0, err
	}
	before, head := enc.Writes(l.env.schema, m.Epoch, maxMapValue)
	for _, op := range mapstore.Ops(before) {
		if _, err := v.term.Txn(ctx, nil, op); err != nil {
			return 0, fmt.Errorf("write map epoch %d: %w", m.Epoch, err)
		}
	}
	rec.Bytes = enc.Bytes()
	hist, err := json.Marshal(rec)
	if err != nil {
		return 0, err
	}
	ops := append(mapstore.Ops(head), clientv3.OpPut(l.env.schema.History(m.Epoch), string(hist)))
	if m.Epoch > historyRecords {
		ops = append(ops, clientv3.OpDelete(l.env.schema.HistoryPrefix(), clientv3.WithRange(l.env.schema.History(m.Epoch-historyRecords+1))))
	}
	key := l.env.schema.Partitions()
	resp, err := v.term.Txn(ctx, []clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(key), "=", v.curRev)}, ops...)
	if err != nil {
		return 0, fmt.Errorf("write map: %w", err)
	}
	if !resp.Succeeded {
		return 0, errMapChanged
	}
	l.env.metrics.observeMapWrite(enc)
	return resp.Header.Revision, nil
}
