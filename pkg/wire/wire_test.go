package wire_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/clusterkit-go/clusterkit/pkg/wire"
)

// The documents are a contract with programs in any language: their JSON is fixed to the byte,
// empty values included.
func TestJSON(t *testing.T) {
	at := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		name string
		v    any
		want string
	}{
		{"cluster", wire.Cluster{
			Cluster: wire.ClusterState{
				ID: "c1", Name: "default", Epoch: 7, Leader: "a", UpdatedAt: at,
				Cause: wire.Cause{Reason: "join", Nodes: []string{"b"}},
				Nodes: map[string]wire.Node{
					"a": {ID: "a", IP: "127.0.0.1:1", Zone: "z1", Metadata: map[string]string{"data_addr": "127.0.0.1:9001"}},
					"b": {ID: "b", IP: "127.0.0.1:2"},
				},
				PartitionMap: map[string]wire.Partition{
					"partition-0": {ID: "partition-0", PrimaryNode: "a", ReplicaNodes: []string{}, PrimaryEpoch: 3, Epoch: 7, PendingNodes: []string{"b"}},
				},
				Handoffs: []wire.Handoff{{Partition: "partition-0", Node: "b", From: []string{"a"}, Since: 6, Started: at, Attempt: 2, Age: "1.5s", Overdue: true}},
			},
			HashConfig: wire.HashConfig{Algorithm: "md5", Modulo: 1, Format: "partition-%d"},
		}, `{"cluster":{"id":"c1","name":"default","epoch":7,"leader":"a","updated_at":"2025-01-02T03:04:05Z",` +
			`"cause":{"reason":"join","nodes":["b"]},` +
			`"nodes":{"a":{"id":"a","ip":"127.0.0.1:1","zone":"z1","metadata":{"data_addr":"127.0.0.1:9001"}},"b":{"id":"b","ip":"127.0.0.1:2"}},` +
			`"partition_map":{"partition-0":{"id":"partition-0","primary_node":"a","replica_nodes":[],"primary_epoch":3,"epoch":7,"pending_nodes":["b"]}},` +
			`"handoffs":[{"partition":"partition-0","node":"b","from":["a"],"since_epoch":6,"started":"2025-01-02T03:04:05Z","attempt":2,"age":"1.5s","overdue":true}]},` +
			`"hash_config":{"algorithm":"md5","modulo":1,"format":"partition-%d"}}`},
		{"cluster with operators' actions", wire.Cluster{
			Cluster: wire.ClusterState{
				ID: "c1", Name: "default", Epoch: 7, Leader: "a", UpdatedAt: at, Cause: wire.Cause{Reason: "rebalance"},
				Nodes: map[string]wire.Node{
					"a": {ID: "a", IP: "127.0.0.1:1", Weight: 3},
					"b": {ID: "b", IP: "127.0.0.1:2", Weight: 1, State: "cordoned"},
					"c": {ID: "c", IP: "127.0.0.1:3", Weight: 1, State: "draining"},
				},
				PartitionMap: map[string]wire.Partition{},
				Handoffs:     []wire.Handoff{},
				Queued:       map[string]int{"a": 2},
				Maintenance:  []wire.Maintenance{{Reason: "upgrade", By: "ops", At: at}, {Reason: "zone b power", At: at}},
				Down:         map[string]wire.DownNode{"d": {Since: at, Zone: "z2"}, "e": {Since: at}},
			},
			HashConfig: wire.HashConfig{Algorithm: "md5", Modulo: 1, Format: "partition-%d"},
		}, `{"cluster":{"id":"c1","name":"default","epoch":7,"leader":"a","updated_at":"2025-01-02T03:04:05Z",` +
			`"cause":{"reason":"rebalance"},` +
			`"nodes":{"a":{"id":"a","ip":"127.0.0.1:1","weight":3},"b":{"id":"b","ip":"127.0.0.1:2","weight":1,"state":"cordoned"},` +
			`"c":{"id":"c","ip":"127.0.0.1:3","weight":1,"state":"draining"}},` +
			`"partition_map":{},"handoffs":[],"queued":{"a":2},` +
			`"maintenance":[{"reason":"upgrade","by":"ops","at":"2025-01-02T03:04:05Z"},{"reason":"zone b power","at":"2025-01-02T03:04:05Z"}],` +
			`"down":{"d":{"since":"2025-01-02T03:04:05Z","zone":"z2"},"e":{"since":"2025-01-02T03:04:05Z"}}},` +
			`"hash_config":{"algorithm":"md5","modulo":1,"format":"partition-%d"}}`},
		{"cluster nodes", wire.ClusterNodes{ID: "c1", Name: "default", Epoch: 7,
			Nodes:       map[string]wire.Node{"a": {ID: "a", IP: "127.0.0.1:1", Weight: 2, State: "draining"}},
			Maintenance: []wire.Maintenance{{Reason: "upgrade", By: "ops", At: at}},
			Down:        map[string]wire.DownNode{"b": {Since: at}}},
			`{"id":"c1","name":"default","epoch":7,"nodes":{"a":{"id":"a","ip":"127.0.0.1:1","weight":2,"state":"draining"}},` +
				`"maintenance":[{"reason":"upgrade","by":"ops","at":"2025-01-02T03:04:05Z"}],"down":{"b":{"since":"2025-01-02T03:04:05Z"}}}`},
		{"empty cluster nodes", wire.ClusterNodes{},
			`{"id":"","name":"","epoch":0,"nodes":null}`},
		{"empty cluster", wire.Cluster{},
			`{"cluster":{"id":"","name":"","epoch":0,"leader":"","updated_at":"0001-01-01T00:00:00Z","cause":{"reason":""},"nodes":null,"partition_map":null,"handoffs":null},"hash_config":{"algorithm":"","modulo":0,"format":""}}`},
		{"map delta", wire.MapDelta{
			ID: "c1", Name: "default", Epoch: 8, Since: 7, Leader: "a", UpdatedAt: at,
			Nodes:          map[string]wire.Node{"a": {ID: "a", IP: "127.0.0.1:1"}},
			PartitionCount: 4,
			HashConfig:     wire.HashConfig{Algorithm: "md5", Modulo: 4, Format: "partition-%d"},
			Partitions:     []wire.Partition{{ID: "partition-2", PrimaryNode: "a", ReplicaNodes: []string{}, PrimaryEpoch: 8, Epoch: 8}},
		}, `{"id":"c1","name":"default","epoch":8,"since":7,"full":false,"leader":"a","updated_at":"2025-01-02T03:04:05Z",` +
			`"nodes":{"a":{"id":"a","ip":"127.0.0.1:1"}},"partition_count":4,"hash_config":{"algorithm":"md5","modulo":4,"format":"partition-%d"},` +
			`"partitions":[{"id":"partition-2","primary_node":"a","replica_nodes":[],"primary_epoch":8,"epoch":8}]}`},
		{"empty map delta", wire.MapDelta{},
			`{"id":"","name":"","epoch":0,"since":0,"full":false,"leader":"","updated_at":"0001-01-01T00:00:00Z","nodes":null,"partition_count":0,"hash_config":{"algorithm":"","modulo":0,"format":""},"partitions":null}`},
		{"empty handoff", wire.Handoff{},
			`{"partition":"","node":"","from":null,"since_epoch":0,"started":"0001-01-01T00:00:00Z","attempt":0,"age":"","overdue":false}`},
		{"join", wire.JoinInfo{ClusterName: "default", ClusterID: "c1", EtcdEndpoints: []string{"http://127.0.0.1:2379"}, PartitionCount: 64, ReplicationFactor: 3},
			`{"cluster_name":"default","cluster_id":"c1","etcd_endpoints":["http://127.0.0.1:2379"],"partition_count":64,"replication_factor":3}`},
		{"empty join", wire.JoinInfo{},
			`{"cluster_name":"","cluster_id":"","etcd_endpoints":null,"partition_count":0,"replication_factor":0}`},
		{"health", wire.Health{Status: "ok", NodeID: "node-1", Epoch: 7, Leader: "node-2", Fenced: true, LeaseValidFor: "1.5s"},
			`{"status":"ok","node_id":"node-1","epoch":7,"leader":"node-2","is_leader":false,"fenced":true,"lease_valid_for":"1.5s"}`},
		{"empty health", wire.Health{},
			`{"status":"","node_id":"","epoch":0,"leader":"","is_leader":false,"fenced":false,"lease_valid_for":""}`},
		{"claims", wire.Claims{NodeID: "node-1", Epoch: 7, Primaries: map[string]uint64{"partition-3": 5, "partition-1": 2}},
			`{"node_id":"node-1","epoch":7,"fenced":false,"primaries":{"partition-1":2,"partition-3":5}}`},
		{"empty claims", wire.Claims{},
			`{"node_id":"","epoch":0,"fenced":false,"primaries":null}`},
		{"history", wire.History{Oldest: 6, Records: []wire.HistoryRecord{{Epoch: 7, UpdatedAt: at, Leader: "a",
			Cause: wire.Cause{Reason: "handoff"}, Nodes: 3, Changed: 5, PrimariesMoved: 1, CopiesStarted: 0, CopiesDone: 5,
			Pending: 0, ComputeMillis: 1.25, Bytes: 420}}},
			`{"records":[{"epoch":7,"updated_at":"2025-01-02T03:04:05Z","leader":"a","cause":{"reason":"handoff"},"nodes":3,` +
				`"changed":5,"primaries_moved":1,"copies_started":0,"copies_done":5,"pending":0,"compute_ms":1.25,"bytes":420}],"oldest":6}`},
		{"error", wire.Error{Error: "no partition map yet"},
			`{"error":"no partition map yet"}`},
	}
	for _, tt := range tests {
		b, err := json.Marshal(tt.v)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if string(b) != tt.want {
			t.Errorf("%s:\ngot  %s\nwant %s", tt.name, b, tt.want)
		}
	}
}
