package clusterkit

import (
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/clusterkit-go/clusterkit/internal/partition"
	"github.com/clusterkit-go/clusterkit/internal/state"
	"github.com/clusterkit-go/clusterkit/pkg/wire"
)

// The GET /cluster body of a map is fixed to the byte: field names, their order, omitempty.
// Clients in other languages parse it, so any change to it is a change of the API.
func TestHTTPClusterBodyBytes(t *testing.T) {
	at := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	m := &state.Map{
		Epoch:     7,
		Leader:    "a",
		UpdatedAt: at,
		Cause:     state.Cause{Reason: state.ReasonJoin, Nodes: []string{"c"}},
		Nodes: map[string]state.Node{
			"a": {ID: "a", IP: "127.0.0.1:1", Zone: "z1", Metadata: map[string]string{"data_addr": "127.0.0.1:9001"}},
			"b": {ID: "b", IP: "127.0.0.1:2"},
			"c": {ID: "c", IP: "127.0.0.1:3", Weight: 2, State: state.NodeDraining},
		},
		Partitions: state.Entries{
			{Holders: []string{"a", "b"}, PrimaryEpoch: 3},
			{Holders: []string{"b"}, PrimaryEpoch: 7, Pending: []state.Pending{{Node: "c", Since: 6, Started: at.Add(-1500 * time.Millisecond), Attempt: 2}}},
		},
	}
	ck := &ClusterKit{env: &env{
		clusterName: "default",
		config:      state.Config{ClusterID: "c1", Hash: state.HashConfig{Algorithm: state.HashMD5, Modulo: 2, Format: partition.Format}},
	}}
	enc := newSnapshot(m, 1).encoded(ck)
	const want = `{"cluster":{"id":"c1","name":"default","epoch":7,"leader":"a","updated_at":"2025-01-02T03:04:05Z",` +
		`"cause":{"reason":"join","nodes":["c"]},` +
		`"nodes":{"a":{"id":"a","ip":"127.0.0.1:1","zone":"z1","metadata":{"data_addr":"127.0.0.1:9001"}},"b":{"id":"b","ip":"127.0.0.1:2"},"c":{"id":"c","ip":"127.0.0.1:3"}},` +
		`"partition_map":{"partition-0":{"id":"partition-0","primary_node":"a","replica_nodes":["b"],"primary_epoch":3,"epoch":7},` +
		`"partition-1":{"id":"partition-1","primary_node":"b","replica_nodes":[],"primary_epoch":7,"epoch":7,"pending_nodes":["c"]}},` +
		`"handoffs":[{"partition":"partition-1","node":"c","from":["b"],"since_epoch":6,"started":"2025-01-02T03:04:03.5Z","attempt":2,"age":"1.5s","overdue":true}]},` +
		`"hash_config":{"algorithm":"md5","modulo":2,"format":"partition-%d"}}` + "\n"
	if got := string(enc.body.plain(t)); got != want {
		t.Fatalf("GET /cluster body\ngot  %s\nwant %s", got, want)
	}
	if enc.etag != `"c1-7"` {
		t.Fatalf("ETag %s, want \"c1-7\"", enc.etag)
	}
}

// Node and Partition marshal as GET /cluster lists them: a program that encodes the values
// ClusterKit hands out writes the documents of pkg/wire.
func TestHTTPTypesMarshalAsWire(t *testing.T) {
	tests := []struct {
		name       string
		ours, wire any
	}{
		{"node", Node{ID: "a", IP: "127.0.0.1:1", Zone: "z", Metadata: map[string]string{"k": "v"}},
			wire.Node{ID: "a", IP: "127.0.0.1:1", Zone: "z", Metadata: map[string]string{"k": "v"}}},
		{"bare node", Node{ID: "a"}, wire.Node{ID: "a"}},
		{"partition", Partition{ID: "partition-1", PrimaryNode: "a", ReplicaNodes: []string{"b"}, PrimaryEpoch: 2, Epoch: 3, PendingNodes: []string{"c"}, index: 1},
			wire.Partition{ID: "partition-1", PrimaryNode: "a", ReplicaNodes: []string{"b"}, PrimaryEpoch: 2, Epoch: 3, PendingNodes: []string{"c"}}},
		{"bare partition", Partition{}, wire.Partition{}},
	}
	for _, tt := range tests {
		ours, _ := json.Marshal(tt.ours)
		theirs, _ := json.Marshal(tt.wire)
		if string(ours) != string(theirs) {
			t.Errorf("%s: %s, wire %s", tt.name, ours, theirs)
		}
	}
}

// A GET /cluster/map answer lists a partition when what GET /cluster shows of it differs from
// the base map: holders and their order, primary epoch, pending nodes. What only the leader
// uses (targets, times and attempts of copies) does not count; without a base, every partition
// is listed, in the shape and with the values of GET /cluster.
func TestHTTPMapDelta(t *testing.T) {
	at := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	pending := func(node string, attempt int) []state.Pending {
		return []state.Pending{{Node: node, Since: 6, Started: at.Add(time.Duration(attempt) * time.Second), Attempt: attempt}}
	}
	base := state.Entry{Holders: []string{"a", "b"}, PrimaryEpoch: 3, Pending: pending("c", 1)}
	tests := []struct {
		name   string
		edit   func(e *state.Entry)
		listed bool
	}{
		{"unchanged", func(e *state.Entry) {}, false},
		{"replicas reordered", func(e *state.Entry) { e.Holders = []string{"b", "a"} }, true},
		{"holder added", func(e *state.Entry) { e.Holders = []string{"a", "b", "c"}; e.Pending = nil }, true},
		{"primary epoch", func(e *state.Entry) { e.PrimaryEpoch = 8 }, true},
		{"pending done", func(e *state.Entry) { e.Pending = nil }, true},
		{"another pending node", func(e *state.Entry) { e.Pending = pending("d", 1) }, true},
		{"copy retried", func(e *state.Entry) { e.Pending = pending("c", 2) }, false},
		{"target set", func(e *state.Entry) { e.Target = []string{"a", "c"} }, false},
	}
	nodes := map[string]state.Node{"a": {ID: "a", IP: "127.0.0.1:1"}, "b": {ID: "b", IP: "127.0.0.1:2"}, "c": {ID: "c", IP: "127.0.0.1:3"}, "d": {ID: "d", IP: "127.0.0.1:4"}}
	ck := &ClusterKit{env: &env{
		clusterName: "default",
		config:      state.Config{ClusterID: "c1", Hash: state.HashConfig{Algorithm: state.HashMD5, Modulo: 2, Format: partition.Format}},
	}}
	// Partition 0 stays as it is; partition 1 gets the edit.
	mapOf := func(epoch uint64, second state.Entry) *snapshot {
		first := state.Entry{Holders: []string{"b", "a"}, PrimaryEpoch: 2}
		return newSnapshot(&state.Map{Epoch: epoch, Leader: "a", UpdatedAt: at, Nodes: nodes, Partitions: state.Entries{first, second}}, 1)
	}
	old := mapOf(7, base)
	for _, tt := range tests {
		e := base
		e.Pending = slices.Clone(base.Pending)
		tt.edit(&e)
		first := state.Entry{Holders: []string{"b", "a"}, PrimaryEpoch: 2}
		next := nextSnapshot(old, &state.Map{Epoch: 8, Leader: "a", UpdatedAt: at, Nodes: nodes, Partitions: state.Entries{first, e}}, 1, []int{1})
		d := delta(ck, 7, visibleChanges(old, next), next)
		if d.Full || d.Since != 7 || d.Epoch != 8 || d.PartitionCount != 2 || len(d.Nodes) != 4 || d.ID != "c1" {
			t.Fatalf("%s: head %+v", tt.name, d)
		}
		if got := len(d.Partitions) == 1 && d.Partitions[0].ID == "partition-1"; got != tt.listed || len(d.Partitions) > 1 {
			t.Errorf("%s: listed %v, want partition-1 listed %v", tt.name, d.Partitions, tt.listed)
		}
	}

	// Without a base: every partition, as GET /cluster shows it.
	cur := mapOf(8, base)
	d := delta(ck, 0, nil, cur)
	var full wire.Cluster
	if err := json.Unmarshal(cur.encoded(ck).body.plain(t), &full); err != nil {
		t.Fatal(err)
	}
	if !d.Full || d.Since != 0 || len(d.Partitions) != 2 || d.Partitions == nil {
		t.Fatalf("full answer %+v", d)
	}
	for _, p := range d.Partitions {
		if want := full.Cluster.PartitionMap[p.ID]; !reflect.DeepEqual(p, want) {
			t.Errorf("%s: %+v, GET /cluster has %+v", p.ID, p, want)
		}
	}
	if !reflect.DeepEqual(d.Nodes, full.Cluster.Nodes) {
		t.Errorf("nodes %v, GET /cluster has %v", d.Nodes, full.Cluster.Nodes)
	}
	// Nothing changed: an empty list, never null.
	if b, _ := json.Marshal(delta(ck, 7, []int{}, mapOf(9, base))); !strings.Contains(string(b), `"partitions":[]`) {
		t.Errorf("an answer without changes: %s", b)
	}
}
