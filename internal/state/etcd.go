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

// ReadMap reads the current map, at revision rev (0 for the latest). When the map cannot be read
// whole (an error wrapping ErrCorrupt), Read still has its revisions and a nil Map.
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
	m, err := DecodeHead(resp.Kvs[0].Value)
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

// MaxNodeRecord is the largest node record, in bytes: a node refuses to register a larger one
// (its Metadata is what grows), and a leader skips a larger one.
const MaxNodeRecord = 16 << 10

// DecodeNode decodes a node record and checks it (Node.Check).
func DecodeNode(b []byte) (Node, error) {
	if len(b) > MaxNodeRecord {
		return Node{}, fmt.Errorf("%w: node record of %d bytes, more than %d", ErrCorrupt, len(b), MaxNodeRecord)
	}
	var n Node
	if err := json.Unmarshal(b, &n); err != nil {
		return Node{}, fmt.Errorf("%w: node record: %v", ErrCorrupt, err)
	}
	if err := n.Check(); err != nil {
		return Node{}, fmt.Errorf("%w: node record: %v", ErrCorrupt, err)
	}
	return n, nil
}

// Held is a node's report under held/<id>: the epoch of the map it holds, written when the map
// stored in etcd is older, missing or unreadable, so that the leader publishes above it.
type Held struct {
	Node  string `json:"node"`
	Epoch uint64 `json:"epoch"`
	// Reason says what the node saw, for etcdctl readers.
	Reason string `json:"reason,omitempty"`
}

// DecodeHeld decodes a held-epoch report.
func DecodeHeld(b []byte) (Held, error) {
	var h Held
	if err := json.Unmarshal(b, &h); err != nil {
		return Held{}, fmt.Errorf("%w: held-epoch report: %v", ErrCorrupt, err)
	}
	if h.Node == "" || h.Epoch == 0 {
		return Held{}, fmt.Errorf("%w: held-epoch report without node or epoch", ErrCorrupt)
	}
	return h, nil
}
