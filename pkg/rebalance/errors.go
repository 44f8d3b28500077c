package rebalance

import "errors"

// Sentinel errors. Compute, Plan and Explain wrap them with the offending value; match them with
// errors.Is.
var (
	// ErrNoNodes means there is no live node to place partitions on.
	ErrNoNodes = errors.New("rebalance: no live nodes")
	// ErrInvalidConfig means a Config field is out of range.
	ErrInvalidConfig = errors.New("rebalance: invalid config")
	// ErrInvalidNode means a node has an empty or duplicate ID or a weight out of range, or a Change
	// names a node that cannot join or leave.
	ErrInvalidNode = errors.New("rebalance: invalid node")
	// ErrInvalidPartition means a partition index is outside [0, Config.Partitions).
	ErrInvalidPartition = errors.New("rebalance: invalid partition")
)
