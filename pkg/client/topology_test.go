package client

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"go.uber.org/zap"

	"github.com/clusterkit-go/clusterkit/internal/partition"
	"github.com/clusterkit-go/clusterkit/internal/state"
	"github.com/clusterkit-go/clusterkit/pkg/wire"
)

// A client applies only newer maps, and refuses a node of another cluster.
func TestNeverGoesBack(t *testing.T) {
	md5 := state.HashConfig{Algorithm: "md5", Modulo: 8, Format: "partition-%d"}
	c := &Client{log: zap.NewNop()}
	build := func(epoch uint64) *topology {
		var d wire.Cluster
		if err := json.Unmarshal(servedMap(epoch, md5, 8), &d); err != nil {
			t.Fatal(err)
		}
		top, err := fromCluster(&d, fmt.Sprintf(`"c1-%d"`, epoch))
		if err != nil {
			t.Fatal(err)
		}
		return top
	}
	for _, tt := range []struct {
		epoch   uint64
		applied bool
		want    uint64
	}{{5, true, 5}, {4, false, 5}, {5, false, 5}, {7, true, 7}, {1, false, 7}} {
		if got := c.apply(build(tt.epoch)); got != tt.applied || c.Epoch() != tt.want {
			t.Fatalf("apply epoch %d: applied %v, client at %d; want %v, %d", tt.epoch, got, c.Epoch(), tt.applied, tt.want)
		}
	}
	other := servedMap(9, md5, 8)
	other = []byte(strings.Replace(string(other), `"id":"c1"`, `"id":"c2"`, 1))
	c.httpc = http.DefaultClient
	if _, err := c.fetch(context.Background(), serve(t, other), "", 0); err == nil || !strings.Contains(err.Error(), "another cluster") {
		t.Fatalf("fetch from another cluster: %v", err)
	}
}

// A GET /cluster/map answer replaces exactly the partitions it lists, moves every route to its
// epoch, follows a node's new record into routes it does not list, and is refused when it does
// not fit the map held.
func TestFromDelta(t *testing.T) {
	md5 := wire.HashConfig{Algorithm: "md5", Modulo: 8, Format: "partition-%d"}
	var d0 wire.Cluster
	if err := json.Unmarshal(servedMap(3, state.HashConfig(md5), 8), &d0); err != nil {
		t.Fatal(err)
	}
	held, err := fromCluster(&d0, `"c1-3"`)
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
		check func(t *topology) error
		says  string
	}{
		{"two partitions moved", delta(func(*wire.MapDelta) {}), func(t *topology) error {
			for i, r := range t.routes {
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
		{"a node's new address", delta(func(d *wire.MapDelta) { d.Nodes["b"] = wire.Node{ID: "b", IP: "127.0.0.1:9"} }), func(t *topology) error {
			for _, r := range t.routes {
				for _, n := range append(slices.Clone(r.Nodes), r.Pending...) {
					if n.ID == "b" && n.Addr != "127.0.0.1:9" {
						return fmt.Errorf("%s still routes to b at %s", r.Partition, n.Addr)
					}
				}
			}
			return nil
		}, ""},
		{"nothing changed but the epoch", delta(func(d *wire.MapDelta) { d.Partitions = nil }), func(t *topology) error {
			if r := t.routes[7]; r.Epoch != 4 || !slices.Equal(nodeIDs(r.Nodes), []string{"a", "b"}) {
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
		got, err := fromDelta(held, tt.d, `"c1-4"`)
		switch {
		case tt.says != "":
			if err == nil || !strings.Contains(err.Error(), tt.says) {
				t.Errorf("%s: %v, want an error saying %q", tt.name, err, tt.says)
			}
		case err != nil:
			t.Errorf("%s: %v", tt.name, err)
		case got.epoch != 4 || got.etag != `"c1-4"` || len(got.nodes) != 3:
			t.Errorf("%s: epoch %d, tag %s, nodes %v", tt.name, got.epoch, got.etag, got.nodes)
		default:
			if err := tt.check(got); err != nil {
				t.Errorf("%s: %v", tt.name, err)
			}
		}
	}
	// The map held is left as it was.
	if r := held.routes[2]; r.Epoch != 3 || !slices.Equal(nodeIDs(r.Nodes), []string{"a", "b"}) {
		t.Fatalf("the held map changed: %+v", r)
	}
}
