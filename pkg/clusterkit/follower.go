package clusterkit

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/clusterkit-go/clusterkit/internal/backoff"
	"github.com/clusterkit-go/clusterkit/internal/follow"
	"github.com/clusterkit-go/clusterkit/internal/mapstore"
	"github.com/clusterkit-go/clusterkit/internal/state"
)

// mapFollower owns the node's view of the partition map: the immutable snapshot lookups read,
// and the channel closed whenever a newer map is applied. Run follows the map in etcd (through
// follow.Map, shared with pkg/client) on the goroutine that calls it; catchUp applies a map read
// outside the watch. A map is applied only when its epoch is above the one held; the hooks of
// the difference are handed to onApply.
type mapFollower struct {
	env *env
	// onApply schedules the hook events from old (nil for the first map) to s; fire is false
	// for the baseline map read at start.
	onApply func(old, s *snapshot, fire bool)

	snap atomic.Pointer[snapshot]
	// changed is closed and replaced every time a map is applied.
	changed atomic.Pointer[chan struct{}]
	// mu serialises apply between Run and catchUp.
	mu sync.Mutex
	// fromEmpty is set when the cluster had no map at start: the first map then creates every
	// partition, and its hooks fire with no sources.
	fromEmpty bool
	// initial is the map given to begin, which run reads the next map against.
	initial *state.Map
	// recent says what changed in the last maps applied, oldest first (guarded by mu), so that
	// a client holding one of them can be sent only what changed since.
	recent []mapChange
	// lease is the node's current lease, which its held-epoch report is attached to.
	lease func() clientv3.LeaseID
	// reported is the held epoch last reported (guarded by mu).
	reported uint64
}

// mapChange is what changed from the map of epoch since to the map of epoch epoch: changed
// lists the partitions whose GET /cluster shape differs (nil: any may).
type mapChange struct {
	epoch, since uint64
	changed      []int
}

// keptChanges is how many recent changes a node keeps for incremental answers.
const keptChanges = 64

// init prepares f in place (the facade holds it by value).
func (f *mapFollower) init(e *env, onApply func(old, s *snapshot, fire bool), lease func() clientv3.LeaseID) {
	f.env, f.onApply, f.lease = e, onApply, lease
	ch := make(chan struct{})
	f.changed.Store(&ch)
}

// snapshot is the map held now, nil before the first.
func (f *mapFollower) snapshot() *snapshot { return f.snap.Load() }

// changes returns a channel closed when the next map is applied. Take it before reading the
// snapshot, so that a map applied in between is not missed.
func (f *mapFollower) changes() <-chan struct{} { return *f.changed.Load() }

// source is the follow.Map of this node's cluster.
func (f *mapFollower) source() *follow.Map {
	return &follow.Map{Client: f.env.client, Schema: f.env.schema, Log: f.env.log, ReadTimeout: f.env.opts.LeaseTTL,
		Apply: func(u follow.Update) { f.apply(u, true) },
		Broken: func(rev int64, err error) {
			f.mu.Lock()
			defer f.mu.Unlock()
			f.reportHeld(rev, fmt.Sprintf("stored map at revision %d: %v", rev, err))
		}}
}

// read reads the current map; Start does so before registering, so that the map that adds
// this node is a change the watch sees. A read that fails is tried again with backoff until
// ctx ends: a node starting under load can take longer to read a large map than one read's
// timeout allows.
func (f *mapFollower) read(ctx context.Context) (mapstore.Read, error) {
	retry := backoff.Backoff{Min: 100 * time.Millisecond, Max: 2 * time.Second}
	for {
		r, err := f.source().Read(ctx)
		if err == nil {
			return r, nil
		}
		if ctx.Err() != nil {
			return mapstore.Read{}, fmt.Errorf("%w (last error: %v)", ctx.Err(), err)
		}
		wait := retry.Next()
		f.env.log.Warn("reading the partition map failed; retrying", zap.Duration("backoff", wait), zap.Error(err))
		select {
		case <-ctx.Done():
			return mapstore.Read{}, fmt.Errorf("%w (last error: %v)", ctx.Err(), err)
		case <-time.After(wait):
		}
	}
}

// begin takes initial, the map read at start, as the baseline to diff the next maps against.
// It runs before Run's goroutine starts.
func (f *mapFollower) begin(initial mapstore.Read) {
	f.fromEmpty = initial.Map == nil
	f.initial = initial.Map
	if initial.Map != nil {
		f.apply(follow.Update{Map: initial.Map, Revision: initial.ModRevision}, false)
	}
}

// run follows the map from revision rev+1 (the revision of the map given to begin) until ctx
// ends.
func (f *mapFollower) run(ctx context.Context, rev int64) {
	from := f.initial
	f.initial = nil // held by the follower from here on, and dropped when it moves on
	f.source().Run(ctx, rev, from)
}

// catchUp reads and applies the current map, with its hooks.
func (f *mapFollower) catchUp(ctx context.Context) error {
	r, err := f.source().Read(ctx)
	if err != nil {
		return err
	}
	if r.Map != nil {
		f.apply(follow.Update{Map: r.Map, Revision: r.ModRevision}, true)
	}
	return nil
}

// apply makes u's map the node's map if it is newer than the one it holds. With fire, the
// hooks of the difference are scheduled, unless this is the first map of a node that joined a
// cluster which already had one (that map is only the baseline). When u says what changed since
// the map held, only that is rebuilt and diffed.
func (f *mapFollower) apply(u follow.Update, fire bool) {
	m := u.Map
	f.mu.Lock()
	defer f.mu.Unlock()
	old := f.snap.Load()
	if old != nil && m.Epoch <= old.epoch {
		// Never go back to an older map. One older than the map held means the stored map went
		// back (deleted and republished, or etcd restored from an older backup): the leader is
		// told, and publishes above the epoch held.
		if m.Epoch < old.epoch {
			f.reportHeld(u.Revision, fmt.Sprintf("stored map has epoch %d", m.Epoch))
		}
		return
	}
	changed := u.Changed
	var base *state.Map
	if old == nil || u.Since != old.epoch {
		changed = nil
	} else {
		base = old.raw
	}
	if err := m.ValidateChange(f.env.config.PartitionCount, base, changed); err != nil {
		f.env.log.Error("ignoring invalid partition map", zap.Error(err))
		f.reportHeld(u.Revision, fmt.Sprintf("stored map of epoch %d is invalid: %v", m.Epoch, err))
		return
	}
	s := nextSnapshot(old, m, u.Revision, changed)
	f.snap.Store(s)
	if len(f.recent) == keptChanges {
		f.recent = append(f.recent[:0], f.recent[1:]...)
	}
	f.recent = append(f.recent, mapChange{epoch: s.epoch, since: s.since, changed: visibleChanges(old, s)})
	f.onApply(old, s, fire && (old != nil || f.fromEmpty))
	f.env.metrics.epoch.Set(float64(m.Epoch))
	next := make(chan struct{})
	prev := f.changed.Swap(&next)
	close(*prev)
	f.env.log.Debug("applied partition map", zap.Uint64("epoch", m.Epoch), zap.String("leader", m.Leader))
}

// reportHeld writes held/<id>, the epoch of the map this node holds, under its lease, once per
// epoch held, when what was written at revision rev is behind it: the leader then publishes a
// map above it (leader.recoveryBase). f.mu must be held.
func (f *mapFollower) reportHeld(rev int64, reason string) {
	s := f.snap.Load()
	lease := clientv3.NoLease
	if f.lease != nil {
		lease = f.lease()
	}
	// Only a write after the map held says the stored map went back: a watch that lags behind
	// a read (after a lost lease) delivers older maps written before it.
	if s == nil || rev <= s.revision || s.epoch <= f.reported || lease == clientv3.NoLease {
		return
	}
	f.env.log.Warn("the stored partition map is behind the map this node holds; telling the leader",
		zap.Uint64("held_epoch", s.epoch), zap.String("why", reason))
	b, err := json.Marshal(state.Held{Node: f.env.opts.NodeID, Epoch: s.epoch, Reason: reason})
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), f.env.opts.LeaseTTL)
	defer cancel()
	if _, err := f.env.client.Put(ctx, f.env.schema.Held(f.env.opts.NodeID), string(b), clientv3.WithLease(lease)); err != nil {
		f.env.log.Warn("reporting the held map epoch failed", zap.Error(err))
		f.env.failed(err)
		return
	}
	f.reported = s.epoch
}

// wait blocks until cond holds for the map held (cond receives nil before the first map), or
// ctx ends.
func (f *mapFollower) wait(ctx context.Context, cond func(*snapshot) bool) error {
	for {
		ch := f.changes()
		if cond(f.snap.Load()) {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// changedSince returns the partitions that may differ between the map of epoch e and the map
// of epoch cur, in order, when the node applied both and knows what changed in between; false
// otherwise.
func (f *mapFollower) changedSince(e, cur uint64) ([]int, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var lists [][]int
	for i := len(f.recent) - 1; i >= 0 && cur > e; i-- {
		c := f.recent[i]
		if c.epoch > cur {
			continue
		}
		if c.epoch != cur || c.changed == nil || c.since < e {
			return nil, false
		}
		lists = append(lists, c.changed)
		cur = c.since
	}
	if cur != e {
		return nil, false
	}
	var out []int
	for _, l := range lists {
		out = append(out, l...)
	}
	slices.Sort(out)
	return slices.Compact(out), true
}

// epoch is the epoch of the map held, 0 before the first.
func (f *mapFollower) epoch() uint64 {
	if s := f.snap.Load(); s != nil {
		return s.epoch
	}
	return 0
}
