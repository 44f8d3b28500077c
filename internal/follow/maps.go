package follow

import (
	"context"
	"errors"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/clusterkit-go/clusterkit/internal/keys"
	"github.com/clusterkit-go/clusterkit/internal/mapstore"
	"github.com/clusterkit-go/clusterkit/internal/state"
)

// Map follows a cluster's partition map: the one map follower of the nodes and of pkg/client.
// It reads every published map at the revision of its head, so that it never sees half a map,
// and reads only what changed since the map it read before (see mapstore.ReadNext). A map that
// does not decode is logged and skipped (the next one replaces it); a read that fails is retried
// by resuming the watch before its event.
type Map struct {
	Client *clientv3.Client
	Schema keys.Schema
	Log    *zap.Logger
	// ReadTimeout bounds each read; 0 means DefaultReadTimeout.
	ReadTimeout time.Duration
	// Apply receives each map read, in revision order, on the goroutine of Run. It decides what
	// to do with a map older than the one it has. The map shares its unchanged entries with the
	// one before: neither may be modified.
	Apply func(u Update)
	// Broken, when set, is told of a head that was deleted or cannot be read, with its
	// revision; the map given to Apply before stays the one to read the next against.
	Broken func(rev int64, err error)

	// last is the map read before, which the next is read against (Run's goroutine only).
	last *state.Map
}

// Update is one map read by Map.
type Update struct {
	Map *state.Map
	// Revision is the etcd revision the map was written at.
	Revision int64
	// Changed lists, in order, the partitions that differ from the map of epoch Since, the one
	// given to Apply before; nil when the map was read whole (any partition may differ).
	Since   uint64
	Changed []int
}

// Read reads the current map, bounded by the read timeout. Read.Map is nil when the cluster has
// none yet.
func (f *Map) Read(ctx context.Context) (mapstore.Read, error) {
	rctx, cancel := context.WithTimeout(ctx, readTimeout(f.ReadTimeout))
	defer cancel()
	return mapstore.ReadMap(rctx, f.Client, f.Schema, 0)
}

// Run follows the map from revision rev+1 (the Revision of a Read) until ctx ends. With from,
// the map that Read returned, the first map after it is read as a change to it.
func (f *Map) Run(ctx context.Context, rev int64, from *state.Map) {
	f.last = from
	watch(ctx, f.Client, f.Log, f.Schema.Partitions(), nil, rev, f.reread, f.handle)
}

func (f *Map) handle(ctx context.Context, resp clientv3.WatchResponse) error {
	for _, ev := range resp.Events {
		if ev.Type != clientv3.EventTypePut {
			if f.Broken != nil {
				f.Broken(ev.Kv.ModRevision, errors.New("deleted"))
			}
			continue
		}
		m, err := state.DecodeHead(ev.Kv.Value)
		var changed []int
		if err == nil {
			rctx, cancel := context.WithTimeout(ctx, readTimeout(f.ReadTimeout))
			changed, err = mapstore.ReadNext(rctx, f.Client, f.Schema, m, ev.Kv.ModRevision, f.last)
			cancel()
		}
		if errors.Is(err, state.ErrCorrupt) {
			f.Log.Error("ignoring unreadable partition map", zap.Int64("revision", ev.Kv.ModRevision), zap.Error(err))
			if f.Broken != nil {
				f.Broken(ev.Kv.ModRevision, err)
			}
			continue
		}
		if err != nil {
			// The chunks could not be read (a timeout, the revision compacted): the watch
			// resumes from before this event, or reads the map afresh, so the map is not lost.
			return err
		}
		u := Update{Map: m, Revision: ev.Kv.ModRevision}
		if changed != nil {
			u.Since, u.Changed = f.last.Epoch, changed
		}
		f.last = m
		f.Apply(u)
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
		f.last = r.Map
		f.Apply(Update{Map: r.Map, Revision: r.ModRevision})
	}
	return r.Revision, nil
}
