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
		Absent: map[string]state.Absent{"d": {Since: at.Add(-time.Second), Zone: "z2", Weight: 3}},
		Partitions: state.Entries{
			{Holders: []string{"a", "b"}, PrimaryEpoch: 3},
			{Holders: []string{"b"}, PrimaryEpoch: 7, Pending: []state.Pending{{Node: "c", Since: 6, Started: at.Add(-1500 * time.Millisecond), Attempt: 2}}},
		},
	}
	ck := &ClusterKit{env: &env{
		clusterName: "default",
		config:      state.Config{ClusterID: "c1", Hash: state.HashConfig{Algorithm: state.HashMD5, Modulo: 2, Format: partition.Format}},
	}}
	s := newSnapshot(m, 1)
	enc := s.encoded(ck, noAdmin)
	const partitions = `"partition_map":{"partition-0":{"id":"partition-0","primary_node":"a","replica_nodes":["b"],"primary_epoch":3,"epoch":7},` +
		`"partition-1":{"id":"partition-1","primary_node":"b","replica_nodes":[],"primary_epoch":7,"epoch":7,"pending_nodes":["c"]}},` +
		`"handoffs":[{"partition":"partition-1","node":"c","from":["b"],"since_epoch":6,"started":"2025-01-02T03:04:03.5Z","attempt":2,"age":"1.5s","overdue":true}]`
	const down = `"down":{"d":{"since":"2025-01-02T03:04:04Z","zone":"z2"}}`
	const want = `{"cluster":{"id":"c1","name":"default","epoch":7,"leader":"a","updated_at":"2025-01-02T03:04:05Z",` +
		`"cause":{"reason":"join","nodes":["c"]},` +
		`"nodes":{"a":{"id":"a","ip":"127.0.0.1:1","zone":"z1","metadata":{"data_addr":"127.0.0.1:9001"},"weight":1},"b":{"id":"b","ip":"127.0.0.1:2","weight":1},` +
		`"c":{"id":"c","ip":"127.0.0.1:3","weight":2,"state":"draining"}},` + partitions + `,` + down + `},` +
		`"hash_config":{"algorithm":"md5","modulo":2,"format":"partition-%d"}}` + "\n"
	if got := string(enc.body.plain(t)); got != want {
		t.Fatalf("GET /cluster body\ngot  %s\nwant %s", got, want)
	}
	if enc.etag != `"c1-7"` {
		t.Fatalf("ETag %s, want \"c1-7\"", enc.etag)
	}

	// With operators' actions: a's weight set, b cordoned, a maintenance; a move shows only
	// through the map. The body shows them, and the ETag names them.
	one := 1
	a := newAdminView([]state.AdminAction{
		{Kind: state.AdminCordon, Node: "b"},
		{Kind: state.AdminMaintenance, Reason: "upgrade", By: "ops", At: at},
		{Kind: state.AdminMove, Node: "a", Partition: &one},
		{Kind: state.AdminWeight, Node: "a", Weight: 3},
	})
	enc = s.encoded(ck, a)
	const wantAdmin = `{"cluster":{"id":"c1","name":"default","epoch":7,"leader":"a","updated_at":"2025-01-02T03:04:05Z",` +
		`"cause":{"reason":"join","nodes":["c"]},` +
		`"nodes":{"a":{"id":"a","ip":"127.0.0.1:1","zone":"z1","metadata":{"data_addr":"127.0.0.1:9001"},"weight":3},"b":{"id":"b","ip":"127.0.0.1:2","weight":1,"state":"cordoned"},` +
		`"c":{"id":"c","ip":"127.0.0.1:3","weight":2,"state":"draining"}},` + partitions + `,` +
		`"maintenance":[{"reason":"upgrade","by":"ops","at":"2025-01-02T03:04:05Z"}],` + down + `},` +
		`"hash_config":{"algorithm":"md5","modulo":2,"format":"partition-%d"}}` + "\n"
	if got := string(enc.body.plain(t)); got != wantAdmin {
		t.Fatalf("GET /cluster body with operators' actions\ngot  %s\nwant %s", got, wantAdmin)
	}
	if want := `"c1-7-` + a.tag + `"`; a.tag == "" || enc.etag != want {
		t.Fatalf("ETag %s, want %s", enc.etag, want)
	}
	if again := s.encoded(ck, noAdmin); again.etag != `"c1-7"` || !strings.Contains(string(again.body.plain(t)), `"b":{"id":"b","ip":"127.0.0.1:2","weight":1}`) {
		t.Fatalf("after the actions ended: ETag %s, body %s", again.etag, again.body.plain(t))
	}
}

// The tag of the operators' actions changes with each action GET /cluster shows, is the same
// for the same actions whatever their order, and ignores what it does not show (moves).
func TestHTTPAdminTag(t *testing.T) {
	at := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	p := 3
	cordon := state.AdminAction{Kind: state.AdminCordon, Node: "b"}
	drain := state.AdminAction{Kind: state.AdminDrain, Node: "b"}
	weight := func(w int) state.AdminAction { return state.AdminAction{Kind: state.AdminWeight, Node: "a", Weight: w} }
	upgrade := state.AdminAction{Kind: state.AdminMaintenance, Reason: "upgrade", By: "ops", At: at}
	move := state.AdminAction{Kind: state.AdminMove, Node: "a", Partition: &p}
	tests := []struct {
		name    string
		actions []state.AdminAction
	}{
		{"cordon", []state.AdminAction{cordon}},
		{"drain", []state.AdminAction{drain}},
		{"weight 2", []state.AdminAction{weight(2)}},
		{"weight 3", []state.AdminAction{weight(3)}},
		{"maintenance", []state.AdminAction{upgrade}},
		{"maintenance by another", []state.AdminAction{{Kind: state.AdminMaintenance, Reason: "upgrade", By: "other", At: at}}},
		{"cordon and weight", []state.AdminAction{cordon, weight(2)}},
	}
	seen := map[string]string{}
	for _, tt := range tests {
		tag := newAdminView(tt.actions).tag
		if tag == "" {
			t.Errorf("%s: no tag", tt.name)
		}
		if other, ok := seen[tag]; ok {
			t.Errorf("%s: the tag of %s", tt.name, other)
		}
		seen[tag] = tt.name
	}
	if a, b := newAdminView([]state.AdminAction{weight(2), cordon}).tag, newAdminView([]state.AdminAction{cordon, weight(2)}).tag; a != b {
		t.Errorf("the same actions in another order: tags %s and %s", a, b)
	}
	if tag := newAdminView([]state.AdminAction{move}).tag; tag != "" {
		t.Errorf("a move alone: tag %q, want none", tag)
	}
	if a, b := newAdminView([]state.AdminAction{cordon, move}).tag, newAdminView([]state.AdminAction{cordon}).tag; a != b {
		t.Errorf("a move beside a cordon changes the tag: %s, %s", a, b)
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
	if err := json.Unmarshal(cur.encoded(ck, noAdmin).body.plain(t), &full); err != nil {
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
	// The same nodes, without the weight and state that follow the operators' actions: a
	// GET /cluster/map answer follows the map alone.
	for id, n := range full.Cluster.Nodes {
		if n.Weight != 1 {
			t.Errorf("GET /cluster: node %s of weight %d, want 1", id, n.Weight)
		}
		n.Weight, n.State = 0, ""
		full.Cluster.Nodes[id] = n
	}
	if !reflect.DeepEqual(d.Nodes, full.Cluster.Nodes) {
		t.Errorf("nodes %v, GET /cluster has %v", d.Nodes, full.Cluster.Nodes)
	}
	// Nothing changed: an empty list, never null.
	if b, _ := json.Marshal(delta(ck, 7, []int{}, mapOf(9, base))); !strings.Contains(string(b), `"partitions":[]`) {
		t.Errorf("an answer without changes: %s", b)
	}
}
