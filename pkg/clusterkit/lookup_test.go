package clusterkit

import (
	"testing"

	"github.com/clusterkit-go/clusterkit/internal/partition"
)

// The key -> partition hash is a wire contract (vectors from DESIGN.md); internal/partition
// tests the hash itself, this tests that GetPartition follows it.
func TestPartitionHashGoldenVectors(t *testing.T) {
	ck, _ := lookupFixture(t)
	for key, want := range map[string]string{"user:123": "partition-48", "order:100": "partition-46", "product:abc": "partition-18", "test-key": "partition-49"} {
		p, err := ck.GetPartition(key)
		if err != nil || p.ID != want || p.Index() != partition.Index(key, 64) {
			t.Errorf("GetPartition(%q) = %v, %v; want %s", key, p, err, want)
		}
	}
}
