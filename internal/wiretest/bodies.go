package wiretest

import (
	"encoding/json"

	"github.com/clusterkit-go/clusterkit/internal/partition"
)

// ClusterBody is a GET /cluster body of a 2-node cluster (c1, named default, nodes a and b) at
// epoch with the given hash settings and partitions partitions, each held by a then b. It is
// written field by field rather than with pkg/wire, which the client reads it with.
func ClusterBody(epoch uint64, hash HashConfig, partitions int) []byte {
	doc := map[string]any{}
	pm := map[string]any{}
	for i := 0; i < partitions; i++ {
		pm[partition.ID(i)] = map[string]any{"id": partition.ID(i), "primary_node": "a", "replica_nodes": []string{"b"}, "primary_epoch": epoch}
	}
	doc["cluster"] = map[string]any{
		"id": "c1", "name": "default", "epoch": epoch,
		"nodes":         map[string]any{"a": map[string]string{"id": "a", "ip": "127.0.0.1:1"}, "b": map[string]string{"id": "b", "ip": "127.0.0.1:2"}},
		"partition_map": pm,
	}
	doc["hash_config"] = map[string]any{"algorithm": hash.Algorithm, "modulo": hash.Modulo, "format": hash.Format}
	b, _ := json.Marshal(doc)
	return b
}

// FullMapBody is the full GET /cluster/map answer of the map ClusterBody gives.
func FullMapBody(epoch uint64, hash HashConfig, partitions int) []byte {
	var ps []map[string]any
	for i := 0; i < partitions; i++ {
		ps = append(ps, map[string]any{"id": partition.ID(i), "primary_node": "a", "replica_nodes": []string{"b"}, "primary_epoch": epoch})
	}
	b, _ := json.Marshal(map[string]any{
		"id": "c1", "name": "default", "epoch": epoch, "since": 0, "full": true, "partition_count": partitions,
		"nodes":       map[string]any{"a": map[string]string{"id": "a", "ip": "127.0.0.1:1"}, "b": map[string]string{"id": "b", "ip": "127.0.0.1:2"}},
		"hash_config": map[string]any{"algorithm": hash.Algorithm, "modulo": hash.Modulo, "format": hash.Format},
		"partitions":  ps,
	})
	return b
}
