package topology

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/clusterkit-go/clusterkit/internal/partition"
	"github.com/clusterkit-go/clusterkit/internal/wiretest"
	"github.com/clusterkit-go/clusterkit/pkg/wire"
)

// A GET /cluster/map answer replaces exactly the partitions it lists, moves every route to its
// epoch, follows a node's new record into routes it does not list, and is refused when it does
// not fit the map held.
func TestFromDelta(t *testing.T) {
	md5 := wire.HashConfig{Algorithm: "md5", Modulo: 8, Format: "partition-%d"}
	var d0 wire.Cluster
	if err := json.Unmarshal(wiretest.ClusterBody(3, wiretest.HashConfig(md5), 8), &d0); err != nil {
		t.Fatal(err)
	}
	held, err := FromCluster(&d0, `"c1-3"`)
	if err != nil {
		t.Fatal(err)
	}
	nodes := func() map[string]wire.Node {
		return map[string]wire.Node{"a": {ID: "a", IP: "127.0.0.1:1"}, "b": {ID: "b", IP: "127.0.0.1:2"}, "c": {ID: "c", IP: "127.0.0.1:3"}}
	}
	moved := func(id string) wire.Partition {
		return wire.Partition{ID: id, PrimaryNode: "c", ReplicaNodes: []string{"a"}, PrimaryEpoch: 4, Epoch: 4, PendingNodes: []string{"b"}}
	}
	delta := func(edit func(d *wire.MapDelta)) *wire.MapDelta {
		d := &wire.MapDelta{ID: "c1", Name: "default", Epoch: 4, Since: 3, Nodes: nodes(), PartitionCount: 8, HashConfig: md5,
			Partitions: []wire.Partition{moved("partition-2"), moved("partition-5")}}
		edit(d)
		return d
	}
	tests := []struct {
		name  string
		d     *wire.MapDelta
		check func(t *Topology) error
		says  string
	}{
		{"two partitions moved", delta(func(*wire.MapDelta) {}), func(t *Topology) error {
			for i, r := range t.Routes {
				want := []string{"a", "b"}
				if i == 2 || i == 5 {
					want = []string{"c", "a"}
					if got := nodeIDs(r.Pending); !slices.Equal(got, []string{"b"}) || r.PrimaryEpoch != 4 {
						return fmt.Errorf("%s: pending %v, primary epoch %d", r.Partition, got, r.PrimaryEpoch)
					}
				}
				if got := nodeIDs(r.Nodes); !slices.Equal(got, want) || r.Epoch != 4 || r.Partition != partition.ID(i) || r.Index != i {
					return fmt.Errorf("route %d: %+v, want holders %v at epoch 4", i, r, want)
				}
			}
			return nil
		}, ""},
		{"a node's new address", delta(func(d *wire.MapDelta) { d.Nodes["b"] = wire.Node{ID: "b", IP: "127.0.0.1:9"} }), func(t *Topology) error {
			for _, r := range t.Routes {
				for _, n := range append(slices.Clone(r.Nodes), r.Pending...) {
					if n.ID == "b" && n.Addr != "127.0.0.1:9" {
						return fmt.Errorf("%s still routes to b at %s", r.Partition, n.Addr)
					}
				}
			}
			return nil
		}, ""},
		{"nothing changed but the epoch", delta(func(d *wire.MapDelta) { d.Partitions = nil }), func(t *Topology) error {
			if r := t.Routes[7]; r.Epoch != 4 || !slices.Equal(nodeIDs(r.Nodes), []string{"a", "b"}) {
				return fmt.Errorf("route 7: %+v", r)
			}
			return nil
		}, ""},
		{"relative to another map", delta(func(d *wire.MapDelta) { d.Since = 2 }), nil, "relative to epoch 2, the client holds 3"},
		{"not newer", delta(func(d *wire.MapDelta) { d.Epoch = 3 }), nil, "relative to epoch 3"},
		{"out of order", delta(func(d *wire.MapDelta) { d.Partitions[0], d.Partitions[1] = d.Partitions[1], d.Partitions[0] }), nil, "out of index order"},
		{"a node gone from routes not listed", delta(func(d *wire.MapDelta) { delete(d.Nodes, "b"); d.Partitions = nil }), nil, `holder "b" is unknown`},
		{"another partition count", delta(func(d *wire.MapDelta) { d.PartitionCount, d.HashConfig.Modulo = 16, 16 }), nil, "16 partitions, the client's map has 8"},
		{"a full answer lacking a partition", delta(func(d *wire.MapDelta) { d.Full, d.Since = true, 0 }), nil, "2 of 8 partitions"},
	}
	for _, tt := range tests {
		got, err := FromDelta(held, tt.d, `"c1-4"`)
		switch {
		case tt.says != "":
			if err == nil || !strings.Contains(err.Error(), tt.says) {
				t.Errorf("%s: %v, want an error saying %q", tt.name, err, tt.says)
			}
		case err != nil:
			t.Errorf("%s: %v", tt.name, err)
		case got.Epoch != 4 || got.ETag != `"c1-4"` || len(got.Nodes) != 3:
			t.Errorf("%s: epoch %d, tag %s, nodes %v", tt.name, got.Epoch, got.ETag, got.Nodes)
		default:
			if err := tt.check(got); err != nil {
				t.Errorf("%s: %v", tt.name, err)
			}
		}
	}
	// The map held is left as it was.
	if r := held.Routes[2]; r.Epoch != 3 || !slices.Equal(nodeIDs(r.Nodes), []string{"a", "b"}) {
		t.Fatalf("the held map changed: %+v", r)
	}
}
