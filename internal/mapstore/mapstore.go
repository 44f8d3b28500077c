// Package mapstore reads and writes the partition map in etcd, as internal/state encodes it,
// and reads the cluster's config. It is the thin edge that turns state's pure encoding and
// decoding into etcd requests: state says which keys to read and what to write, mapstore reads
// and turns writes into operations.
//
// A map is read at one revision: the head under the partitions key, then, for a map stored out
// of line, the chunks, deltas and node table its head names, at the head's revision, so that a
// reader never sees half a map.
package mapstore

import (
	"context"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/clusterkit-go/clusterkit/internal/keys"
	"github.com/clusterkit-go/clusterkit/internal/state"
)

// Read is the result of ReadMap.
type Read struct {
	// Map is nil when no map has been published.
	Map *state.Map
	// Revision is the etcd revision the read was served at.
	Revision int64
	// ModRevision is the revision the map was last written at, 0 when there is none.
	ModRevision int64
}

// ReadMap reads the current map, at revision rev (0 for the latest). When the map cannot be read
// whole (an error wrapping state.ErrCorrupt), Read still has its revisions and a nil Map.
func ReadMap(ctx context.Context, kv clientv3.KV, s keys.Schema, rev int64) (Read, error) {
	var opts []clientv3.OpOption
	if rev > 0 {
		opts = append(opts, clientv3.WithRev(rev))
	}
	resp, err := kv.Get(ctx, s.Partitions(), opts...)
	if err != nil {
		return Read{}, err
	}
	if len(resp.Kvs) == 0 {
		return Read{Revision: resp.Header.Revision}, nil
	}
	read := Read{Revision: resp.Header.Revision, ModRevision: resp.Kvs[0].ModRevision}
	m, err := state.DecodeHead(resp.Kvs[0].Value)
	if err == nil {
		_, err = ReadNext(ctx, kv, s, m, resp.Header.Revision, nil)
	}
	if err != nil {
		// The revisions still say what is stored: a leader replaces a corrupt map with a write
		// guarded by its ModRevision.
		return read, err
	}
	read.Map = m
	return read, nil
}

// ReadNext fills the partitions and node table of h, a head read at revision rev, reading at
// that revision what state.NextReads names, and returns what state.DecodeNext returns: with
// prev, a map the reader holds from an epoch between h's checkpoint and h, only the deltas
// after prev are read, and changed lists the partitions that changed since prev, in order;
// otherwise the checkpoint and every delta since are read, and changed is nil. An inline map
// needs no read. prev is not modified: unchanged entries are shared with it.
func ReadNext(ctx context.Context, kv clientv3.KV, s keys.Schema, h *state.Map, rev int64, prev *state.Map) (changed []int, err error) {
	r := state.NextReads(s, h, prev)
	var kvs []state.KV
	if r.End != "" {
		resp, err := kv.Get(ctx, r.Start, clientv3.WithRange(r.End), clientv3.WithRev(rev))
		if err != nil {
			return nil, fmt.Errorf("read map epoch %d: %w", h.Epoch, err)
		}
		kvs = make([]state.KV, 0, len(resp.Kvs)+1)
		for _, kv := range resp.Kvs {
			kvs = append(kvs, state.KV{Key: string(kv.Key), Value: kv.Value})
		}
	}
	if r.Table != "" {
		resp, err := kv.Get(ctx, r.Table, clientv3.WithRev(rev))
		if err != nil {
			return nil, fmt.Errorf("read map epoch %d: %w", h.Epoch, err)
		}
		for _, kv := range resp.Kvs {
			kvs = append(kvs, state.KV{Key: string(kv.Key), Value: kv.Value})
		}
	}
	return state.DecodeNext(s, h, prev, kvs)
}

// Ops turns the writes of state.Encoded.Writes into etcd operations, in the same order.
func Ops(writes []state.Write) []clientv3.Op {
	if writes == nil {
		return nil
	}
	ops := make([]clientv3.Op, len(writes))
	for i, w := range writes {
		switch {
		case !w.Delete:
			ops[i] = clientv3.OpPut(w.Key, string(w.Value))
		case w.End != "":
			ops[i] = clientv3.OpDelete(w.Key, clientv3.WithRange(w.End))
		default:
			ops[i] = clientv3.OpDelete(w.Key)
		}
	}
	return ops
}

// ReadConfig reads the cluster's fixed settings; nil when the cluster does not exist yet.
func ReadConfig(ctx context.Context, kv clientv3.KV, s keys.Schema) (*state.Config, error) {
	resp, err := kv.Get(ctx, s.Config())
	if err != nil {
		return nil, err
	}
	if len(resp.Kvs) == 0 {
		return nil, nil
	}
	return state.DecodeConfig(resp.Kvs[0].Value)
}
