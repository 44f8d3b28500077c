package clusterkit

import (
	"context"
	"errors"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/clusterkit-go/clusterkit/internal/state"
)

// initialMap is the map read by Start, from which the watch resumes.
type initialMap struct {
	m   *state.Map
	rev int64
}

// watchMap follows the partitions key from the initial read until Stop. It resumes from the
// last revision it saw after any break, and reads the whole map again when that revision has
// been compacted away.
func (ck *ClusterKit) watchMap(initial initialMap) {
	ctx := ck.runCtx
	// When the cluster had no map yet, the first one creates every partition: its hooks fire
	// with no sources. Otherwise the first map is only the baseline to diff against.
	fromEmpty := initial.m == nil
	if initial.m != nil {
		ck.apply(initial.m, initial.rev, false)
	}
	rev := initial.rev
	backoff := 50 * time.Millisecond
	for ctx.Err() == nil {
		wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		wch := ck.client.Watch(wctx, ck.schema.Partitions(), clientv3.WithRev(rev+1))
		for resp := range wch {
			if err := resp.Err(); err != nil {
				if errors.Is(err, rpctypes.ErrCompacted) || resp.CompactRevision > 0 {
					rev = ck.reread(ctx, rev, fromEmpty)
				} else {
					ck.log.Warn("map watch broke, resuming", zap.Int64("from_revision", rev+1), zap.Error(err))
				}
				break
			}
			for _, ev := range resp.Events {
				if ev.Type != clientv3.EventTypePut {
					continue
				}
				m, err := state.DecodeHead(ev.Kv.Value)
				if err == nil {
					err = state.ReadChunks(ctx, ck.client, ck.schema, m, ev.Kv.ModRevision)
				}
				if errors.Is(err, rpctypes.ErrCompacted) {
					rev = ck.reread(ctx, rev, fromEmpty)
					continue
				}
				if err != nil {
					ck.log.Error("ignoring unreadable partition map", zap.Int64("revision", ev.Kv.ModRevision), zap.Error(err))
					continue
				}
				ck.apply(m, ev.Kv.ModRevision, fromEmpty || ck.snap.Load() != nil)
			}
			rev = max(rev, resp.Header.Revision)
			backoff = 50 * time.Millisecond
		}
		cancel()
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
			backoff = min(2*backoff, time.Second)
		}
	}
}

// reread reads the latest map after the watch fell behind compaction. It returns the revision
// to resume from.
func (ck *ClusterKit) reread(ctx context.Context, rev int64, fromEmpty bool) int64 {
	r, err := state.ReadMap(ctx, ck.client, ck.schema, 0)
	if err != nil {
		ck.log.Warn("reading the map after compaction failed", zap.Error(err))
		return rev
	}
	if r.Map != nil {
		ck.apply(r.Map, r.ModRevision, fromEmpty || ck.snap.Load() != nil)
	}
	return r.Revision
}

// apply makes m the node's map if it is newer than the one it holds, and schedules the hook
// events of the difference when fire is set.
func (ck *ClusterKit) apply(m *state.Map, rev int64, fire bool) {
	ck.applyMu.Lock()
	defer ck.applyMu.Unlock()
	old := ck.snap.Load()
	if old != nil && m.Epoch <= old.epoch {
		return // never go back to an older map
	}
	if err := m.Validate(ck.config.PartitionCount); err != nil {
		ck.log.Error("ignoring invalid partition map", zap.Error(err))
		return
	}
	s := newSnapshot(m, rev)
	ck.snap.Store(s)
	if fire {
		ck.dispatch.enqueue(ck.hookJobs(old, s))
	}
	ck.metrics.epoch.Set(float64(m.Epoch))
	ck.enqueued.Store(m.Epoch)
	next := make(chan struct{})
	prev := ck.changed.Swap(&next)
	close(*prev)
	ck.log.Debug("applied partition map", zap.Uint64("epoch", m.Epoch), zap.String("leader", m.Leader))
}

// hookJobs lists the jobs a map change gives the hooks: the OnPartitionChange calls when such
// hooks are registered (and always this node's own copies, which must be acknowledged), and this
// node's Events when OnEvent hooks are registered. Nothing is queued for nobody.
func (ck *ClusterKit) hookJobs(old, s *snapshot) []hookEvent {
	var jobs []hookEvent
	seed := ck.hooks.Load() != nil
	for _, ev := range diffHolders(old, s) {
		if seed || ev.since > 0 && ev.to.ID == ck.opts.NodeID {
			jobs = append(jobs, ev)
		}
	}
	if ck.eventHooks.Load() != nil {
		jobs = append(jobs, diffRoles(old, s, ck.opts.NodeID)...)
	}
	return jobs
}
