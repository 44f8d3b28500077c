package follow

import (
	"context"
	"errors"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/clusterkit-go/clusterkit/internal/keys"
	"github.com/clusterkit-go/clusterkit/internal/state"
)

// Map follows a cluster's partition map: the one map follower of the nodes and of pkg/client.
// It reads every published map whole, its chunks at the revision of its head, so that it never
// sees half a map. A map that does not decode is logged and skipped (the next one replaces it);
// a read that fails is retried by resuming the watch before its event.
type Map struct {
	Client *clientv3.Client
	Schema keys.Schema
	Log    *zap.Logger
	// ReadTimeout bounds each read; 0 means DefaultReadTimeout.
	ReadTimeout time.Duration
	// Apply receives each map read, with the revision it was written at, in revision order, on
	// the goroutine of Run. It decides what to do with a map older than the one it has.
	Apply func(m *state.Map, modRevision int64)
}

// Read reads the current map, bounded by the read timeout. Read.Map is nil when the cluster has
// none yet.
func (f *Map) Read(ctx context.Context) (state.Read, error) {
	rctx, cancel := context.WithTimeout(ctx, readTimeout(f.ReadTimeout))
	defer cancel()
	return state.ReadMap(rctx, f.Client, f.Schema, 0)
}

// Run follows the map from revision rev+1 (the Revision of a Read) until ctx ends.
func (f *Map) Run(ctx context.Context, rev int64) {
	watch(ctx, f.Client, f.Log, f.Schema.Partitions(), nil, rev, f.reread, f.handle)
}

func (f *Map) handle(ctx context.Context, resp clientv3.WatchResponse) error {
	for _, ev := range resp.Events {
		if ev.Type != clientv3.EventTypePut {
			continue
		}
		m, err := state.DecodeHead(ev.Kv.Value)
		if err == nil {
			rctx, cancel := context.WithTimeout(ctx, readTimeout(f.ReadTimeout))
			err = state.ReadChunks(rctx, f.Client, f.Schema, m, ev.Kv.ModRevision)
			cancel()
		}
		if errors.Is(err, state.ErrCorrupt) {
			f.Log.Error("ignoring unreadable partition map", zap.Int64("revision", ev.Kv.ModRevision), zap.Error(err))
			continue
		}
		if err != nil {
			// The chunks could not be read (a timeout, the revision compacted): the watch
			// resumes from before this event, or reads the map afresh, so the map is not lost.
			return err
		}
		f.Apply(m, ev.Kv.ModRevision)
	}
	return nil
}

// reread reads the latest map after the watch fell behind compaction.
func (f *Map) reread(ctx context.Context) (int64, error) {
	r, err := f.Read(ctx)
	if err != nil {
		return 0, err
	}
	if r.Map != nil {
		f.Apply(r.Map, r.ModRevision)
	}
	return r.Revision, nil
}
