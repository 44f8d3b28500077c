package state

import (
	"context"
	"encoding/json"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/clusterkit-go/clusterkit/internal/keys"
)

// MaxValue is the largest value ClusterKit writes in one put: etcd refuses requests over 1.5 MiB
// by default, and the rest of the request needs room too.
const MaxValue = 1 << 20

// Read is the result of ReadMap.
type Read struct {
	// Map is nil when no map has been published.
	Map *Map
	// Revision is the etcd revision the read was served at.
	Revision int64
	// ModRevision is the revision the map was last written at, 0 when there is none.
	ModRevision int64
}

// ReadMap reads the current map, at revision rev (0 for the latest).
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
	m, err := DecodeHead(resp.Kvs[0].Value)
	if err != nil {
		return Read{}, err
	}
	if _, err := ReadNext(ctx, kv, s, m, resp.Header.Revision, nil); err != nil {
		return Read{}, err
	}
	return Read{Map: m, Revision: resp.Header.Revision, ModRevision: resp.Kvs[0].ModRevision}, nil
}

// ReadConfig reads the cluster's fixed settings; nil when the cluster does not exist yet.
func ReadConfig(ctx context.Context, kv clientv3.KV, s keys.Schema) (*Config, error) {
	resp, err := kv.Get(ctx, s.Config())
	if err != nil {
		return nil, err
	}
	if len(resp.Kvs) == 0 {
		return nil, nil
	}
	var c Config
	if err := json.Unmarshal(resp.Kvs[0].Value, &c); err != nil {
		return nil, fmt.Errorf("%w: config: %v", ErrCorrupt, err)
	}
	return &c, nil
}

// DecodeNode decodes a node record.
func DecodeNode(b []byte) (Node, error) {
	var n Node
	if err := json.Unmarshal(b, &n); err != nil {
		return Node{}, fmt.Errorf("%w: node record: %v", ErrCorrupt, err)
	}
	return n, nil
}
