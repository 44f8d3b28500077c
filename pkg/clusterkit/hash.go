package clusterkit

import (
	"fmt"

	"github.com/clusterkit-go/clusterkit/internal/partition"
)

// PartitionID returns the ID of partition index i.
func PartitionID(i int) string { return partition.ID(i) }

// parsePartitionID returns the index in "partition-<n>", checking it against the count.
func parsePartitionID(id string, partitionCount int) (int, error) {
	n, err := partition.Parse(id, partitionCount)
	if err != nil {
		return 0, fmt.Errorf("%w: %w", ErrUnknownPartition, err)
	}
	return n, nil
}
