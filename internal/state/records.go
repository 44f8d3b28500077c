package state

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/clusterkit-go/clusterkit/internal/keys"
	"github.com/clusterkit-go/clusterkit/pkg/rebalance"
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

// Kinds of operators' actions.
const (
	AdminCordon      = "cordon"
	AdminDrain       = "drain"
	AdminMaintenance = "maintenance"
	AdminMove        = "move"
	AdminWeight      = "weight"
)

// AdminAction is an operator's action under admin/<kind>/<name> (clusterkit cordon, drain,
// maintenance, move, weight), which the leader applies to placement until it is deleted.
type AdminAction struct {
	Kind string `json:"kind"`
	// Node is the node the action is about: cordoned, drained, weighted, or the one a moved
	// partition goes to.
	Node string `json:"node,omitempty"`
	// Partition is the partition a move pins.
	Partition *int `json:"partition,omitempty"`
	Weight    int  `json:"weight,omitempty"`
	// Reason says why, for maintenance (each reason is a record: they stack) and for the
	// history.
	Reason string    `json:"reason,omitempty"`
	By     string    `json:"by,omitempty"`
	At     time.Time `json:"at"`
}

// SameSubject reports whether two actions are about the same thing, so that one replaces the
// other whatever their keys: a node's drain, cordon or weight, a partition's pin, a maintenance
// reason.
func (a AdminAction) SameSubject(b AdminAction) bool {
	switch {
	case a.Kind != b.Kind:
		return false
	case a.Kind == AdminMaintenance:
		return a.Reason == b.Reason
	case a.Kind == AdminMove:
		return a.Partition != nil && b.Partition != nil && *a.Partition == *b.Partition
	default:
		return a.Node == b.Node
	}
}

// MaxAdminRecord is the largest admin record the leader reads.
const MaxAdminRecord = 4 << 10

// DecodeAdmin decodes an admin record and checks it: a known kind, with what the kind needs (a
// valid node ID, a partition within partitionCount, a weight within bounds, a reason).
func DecodeAdmin(b []byte, partitionCount int) (AdminAction, error) {
	if len(b) > MaxAdminRecord {
		return AdminAction{}, fmt.Errorf("%w: admin record of %d bytes, more than %d", ErrCorrupt, len(b), MaxAdminRecord)
	}
	var a AdminAction
	if err := json.Unmarshal(b, &a); err != nil {
		return AdminAction{}, fmt.Errorf("%w: admin record: %v", ErrCorrupt, err)
	}
	if err := a.Check(partitionCount); err != nil {
		return AdminAction{}, fmt.Errorf("%w: admin record: %v", ErrCorrupt, err)
	}
	return a, nil
}

// Check reports what an action lacks for its kind.
func (a AdminAction) Check(partitionCount int) error {
	switch a.Kind {
	case AdminCordon, AdminDrain, AdminMove, AdminWeight:
		if err := keys.ValidNodeID(a.Node); err != nil {
			return fmt.Errorf("%s: %w", a.Kind, err)
		}
	case AdminMaintenance:
		if a.Reason == "" || len(a.Reason) > 1024 {
			return fmt.Errorf("maintenance needs a reason of 1 to 1024 bytes")
		}
		return nil
	default:
		return fmt.Errorf("unknown kind %q", a.Kind)
	}
	switch {
	case a.Kind == AdminMove && (a.Partition == nil || *a.Partition < 0 || *a.Partition >= partitionCount):
		return fmt.Errorf("move needs a partition within [0, %d)", partitionCount)
	case a.Kind == AdminWeight && (a.Weight < 1 || a.Weight > rebalance.MaxWeight):
		return fmt.Errorf("weight %d outside [1, %d]", a.Weight, rebalance.MaxWeight)
	}
	return nil
}
