package clusterkit

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/clusterkit-go/clusterkit/internal/partition"
)

// PartitionID returns the ID of partition index i.
func PartitionID(i int) string { return partition.ID(i) }

// parsePartitionID returns the index in "partition-<n>", checking it against the count.
func parsePartitionID(id string, partitionCount int) (int, error) {
	s, ok := strings.CutPrefix(id, "partition-")
	if !ok {
		return 0, fmt.Errorf("%w: %q is not of the form partition-<n>", ErrUnknownPartition, id)
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 || n >= partitionCount || strconv.Itoa(n) != s {
		return 0, fmt.Errorf("%w: %q (the cluster has partition-0 to partition-%d)", ErrUnknownPartition, id, partitionCount-1)
	}
	return n, nil
}
