package state

import (
	"encoding/json"
	"fmt"
)

// MaxValue is the largest value ClusterKit writes in one put: etcd refuses requests over 1.5 MiB
// by default, and the rest of the request needs room too.
const MaxValue = 1 << 20

// DecodeConfig decodes the value of the config key. It does not check it (Config.Check).
func DecodeConfig(b []byte) (*Config, error) {
	var c Config
	if err := json.Unmarshal(b, &c); err != nil {
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
