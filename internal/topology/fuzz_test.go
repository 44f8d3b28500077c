package topology

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/clusterkit-go/clusterkit/internal/partition"
	"github.com/clusterkit-go/clusterkit/internal/state"
	"github.com/clusterkit-go/clusterkit/internal/wiretest"
	"github.com/clusterkit-go/clusterkit/pkg/wire"
)

// Fuzz targets for the client's reading of a map: a GET /cluster body, a GET /cluster/map body
// applied to the map the client holds, and a map read from etcd. Each must be refused with an
// error or give a topology a client can route with, never panic; a topology built written out
// again as a GET /cluster body builds the same topology. go test runs the seeds;
// internal/fuzztest fuzzes each target for a short while; run one longer with
//
//	go test ./internal/topology -run '^$' -fuzz '^FuzzFromDelta$' -fuzztime 5m

// fuzzHash is the hash settings of the seeds' maps, of fuzzPartitions partitions.
var fuzzHash = state.HashConfig{Algorithm: state.HashMD5, Modulo: fuzzPartitions, Format: partition.Format}

const fuzzPartitions = 8

// heldMap is the map of the delta seeds: wiretest.ClusterBody's, at epoch 3.
func heldMap(tb testing.TB) *Topology {
	var d wire.Cluster
	if err := json.Unmarshal(wiretest.ClusterBody(3, wiretest.HashConfig(fuzzHash), fuzzPartitions), &d); err != nil {
		tb.Fatal(err)
	}
	t, err := FromCluster(&d, `"c1-3"`)
	if err != nil {
		tb.Fatal(err)
	}
	return t
}

// clusterOf is the GET /cluster body that describes t.
func clusterOf(t *Topology) *wire.Cluster {
	c := wire.Cluster{
		Cluster: wire.ClusterState{ID: t.ClusterID, Name: t.ClusterName, Epoch: t.Epoch,
			Nodes: map[string]wire.Node{}, PartitionMap: map[string]wire.Partition{}, Handoffs: []wire.Handoff{}},
		HashConfig: wire.HashConfig{Algorithm: state.HashMD5, Modulo: len(t.Routes), Format: partition.Format},
	}
	for _, n := range t.Nodes {
		c.Cluster.Nodes[n.ID] = wire.Node{ID: n.ID, IP: n.Addr, Zone: n.Zone, Metadata: n.Metadata}
	}
	for _, r := range t.Routes {
		c.Cluster.PartitionMap[r.Partition] = wire.Partition{ID: r.Partition, PrimaryNode: r.Nodes[0].ID,
			ReplicaNodes: nodeIDs(r.Nodes[1:]), PrimaryEpoch: r.PrimaryEpoch, Epoch: r.Epoch, PendingNodes: nodeIDs(r.Pending)}
	}
	return &c
}

// deltaOf is the GET /cluster/map body that lists the partitions of t, relative to the map of
// epoch since.
func deltaOf(t *Topology, since uint64, listed []int) *wire.MapDelta {
	c := clusterOf(t)
	d := &wire.MapDelta{ID: t.ClusterID, Name: t.ClusterName, Epoch: t.Epoch, Since: since, Full: since == 0,
		Nodes: c.Cluster.Nodes, PartitionCount: len(t.Routes), HashConfig: c.HashConfig, Partitions: []wire.Partition{}}
	for _, i := range listed {
		d.Partitions = append(d.Partitions, c.Cluster.PartitionMap[partition.ID(i)])
	}
	return d
}

// checkTopology checks what a client's Route and Do rely on in a topology built from partitions
// partitions: a route per partition in order, each with at least one holder, holders and
// pending nodes distinct and in the node table with the table's record, a node table sorted by
// ID, and keys routed to their partition.
func checkTopology(t *Topology, partitions int) error {
	if len(t.Routes) != partitions || partitions < 1 {
		return fmt.Errorf("%d routes for %d partitions", len(t.Routes), partitions)
	}
	byID := map[string]Node{}
	for i, n := range t.Nodes {
		if n.Addr == "" || i > 0 && n.ID <= t.Nodes[i-1].ID {
			return fmt.Errorf("node table %v is not sorted by distinct IDs with addresses", nodeIDs(t.Nodes))
		}
		byID[n.ID] = n
	}
	for i, r := range t.Routes {
		if r.Index != i || r.Partition != partition.ID(i) || r.Epoch != t.Epoch || len(r.Nodes) == 0 {
			return fmt.Errorf("route %d: %+v at epoch %d", i, r, t.Epoch)
		}
		all := append(nodeIDs(r.Nodes), nodeIDs(r.Pending)...)
		if len(slices.Compact(slices.Sorted(slices.Values(all)))) != len(all) {
			return fmt.Errorf("route %d names a node twice: %v", i, all)
		}
		for _, n := range append(slices.Clone(r.Nodes), r.Pending...) {
			if m, ok := byID[n.ID]; !ok || !sameNode(m, n) {
				return fmt.Errorf("route %d names node %q, which the node table has as %+v", i, n.ID, m)
			}
		}
	}
	for _, key := range []string{"", "a", "user:42", strings.Repeat("k", 200)} {
		if r := t.Routes[t.Mod.Of(partition.Hash(key))]; r.Index != partition.Index(key, partitions) {
			return fmt.Errorf("%q routes to partition %d; the hash says %d", key, r.Index, partition.Index(key, partitions))
		}
	}
	return nil
}

// sameTopology reports how a and b differ as maps (the tag aside).
func sameTopology(a, b *Topology) error {
	switch {
	case a.ClusterID != b.ClusterID || a.ClusterName != b.ClusterName || a.Epoch != b.Epoch:
		return fmt.Errorf("cluster %q %q epoch %d, then %q %q epoch %d", a.ClusterID, a.ClusterName, a.Epoch, b.ClusterID, b.ClusterName, b.Epoch)
	case !slices.EqualFunc(a.Nodes, b.Nodes, sameNode):
		return fmt.Errorf("nodes %+v, then %+v", a.Nodes, b.Nodes)
	case len(a.Routes) != len(b.Routes):
		return fmt.Errorf("%d routes, then %d", len(a.Routes), len(b.Routes))
	}
	for i := range a.Routes {
		if err := sameRoute(a.Routes[i], b.Routes[i]); err != nil {
			return err
		}
	}
	return nil
}

func sameRoute(a, b Route) error {
	if a.Partition != b.Partition || a.Index != b.Index || a.Epoch != b.Epoch || a.PrimaryEpoch != b.PrimaryEpoch ||
		!slices.EqualFunc(a.Nodes, b.Nodes, sameNode) || !slices.EqualFunc(a.Pending, b.Pending, sameNode) {
		return fmt.Errorf("route %+v, then %+v", a, b)
	}
	return nil
}

// copyTopology is a deep copy of t, to tell whether t was modified.
func copyTopology(t *Topology) *Topology {
	c := *t
	c.Nodes = slices.Clone(t.Nodes)
	c.Routes = slices.Clone(t.Routes)
	for i := range c.Routes {
		c.Routes[i].Nodes = slices.Clone(c.Routes[i].Nodes)
		c.Routes[i].Pending = slices.Clone(c.Routes[i].Pending)
	}
	for i := range c.Nodes {
		c.Nodes[i].Metadata = maps.Clone(c.Nodes[i].Metadata)
	}
	return &c
}

// roundTrip checks that t, written out as a GET /cluster body, builds the same topology.
func roundTrip(t *Topology) error {
	b, err := json.Marshal(clusterOf(t))
	if err != nil {
		return fmt.Errorf("encode: %v", err)
	}
	var d wire.Cluster
	if err := json.Unmarshal(b, &d); err != nil {
		return fmt.Errorf("decode: %v", err)
	}
	again, err := FromCluster(&d, t.ETag)
	if err != nil {
		return fmt.Errorf("%v\n%s", err, b)
	}
	if err := sameTopology(t, again); err != nil {
		return fmt.Errorf("%v\n%s", err, b)
	}
	return nil
}

// A GET /cluster body, decoded as pkg/client's fetch decodes it.
func FuzzFromCluster(f *testing.F) {
	f.Add(wiretest.ClusterBody(1, wiretest.HashConfig(fuzzHash), fuzzPartitions))
	f.Add(wiretest.ClusterBody(7, wiretest.HashConfig{Algorithm: state.HashMD5, Modulo: 1, Format: partition.Format}, 1))
	withPending := clusterOf(heldMap(f))
	p := withPending.Cluster.PartitionMap["partition-2"]
	p.PendingNodes = []string{"c"}
	withPending.Cluster.PartitionMap["partition-2"] = p
	withPending.Cluster.Nodes["c"] = wire.Node{ID: "c", IP: "127.0.0.1:3", Zone: "z2", Metadata: map[string]string{"data_addr": "127.0.0.1:9003"}}
	b, err := json.Marshal(withPending)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add(wiretest.ClusterBody(1, wiretest.HashConfig{Algorithm: "sha1", Modulo: 8, Format: partition.Format}, 8))
	f.Add(wiretest.ClusterBody(1, wiretest.HashConfig{Algorithm: state.HashMD5, Modulo: 9, Format: partition.Format}, 8))
	f.Add([]byte(`{"cluster":{"id":"c1","epoch":1,"nodes":{"a":{"id":"b","ip":"x:1"}},"partition_map":{"partition-0":{"primary_node":"a"}}},"hash_config":{"algorithm":"md5","modulo":1,"format":"partition-%d"}}`))
	f.Add([]byte(`{"cluster":{"id":"c1","epoch":1,"nodes":{"a":{"id":"a","ip":"x:1"}},"partition_map":{"partition-00":{"primary_node":"a"}}},"hash_config":{"algorithm":"md5","modulo":1,"format":"partition-%d"}}`))
	f.Add([]byte(`{"cluster":{"id":"c1","epoch":1,"nodes":{"a":{"id":"a","ip":"x:1"}},"partition_map":{"partition-0":{"primary_node":"a","replica_nodes":["a"]}}},"hash_config":{"algorithm":"md5","modulo":1,"format":"partition-%d"}}`))
	f.Add([]byte(`{"cluster":null}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		var d wire.Cluster
		if err := json.Unmarshal(body, &d); err != nil {
			return
		}
		got, err := FromCluster(&d, `"tag"`)
		if err != nil {
			return
		}
		if err := checkTopology(got, len(d.Cluster.PartitionMap)); err != nil {
			t.Fatal(err)
		}
		if got.ClusterID != d.Cluster.ID || got.Epoch != d.Cluster.Epoch || got.ETag != `"tag"` {
			t.Fatalf("topology of cluster %q epoch %d tag %s from a body of cluster %q epoch %d", got.ClusterID, got.Epoch, got.ETag, d.Cluster.ID, d.Cluster.Epoch)
		}
		if err := roundTrip(got); err != nil {
			t.Fatalf("a topology changes in a round trip: %v", err)
		}
	})
}

// A GET /cluster/map body applied to the map the client holds (built from a GET /cluster body,
// or heldMap's when that one is refused), as pkg/client's fetchDelta applies it. The map held is never
// modified; the map built keeps the routes the answer does not list, and is the map a full
// answer describing it builds.
func FuzzFromDelta(f *testing.F) {
	held := heldMap(f)
	heldBody := wiretest.ClusterBody(3, wiretest.HashConfig(fuzzHash), fuzzPartitions)
	next := copyTopology(held)
	next.Epoch = 4
	for i := range next.Routes {
		next.Routes[i].Epoch = 4
	}
	next.Routes[2].Nodes = []Node{next.Nodes[1], next.Nodes[0]}
	next.Routes[2].PrimaryEpoch = 4
	next.Routes[5].Pending = []Node{{ID: "c", Addr: "127.0.0.1:3"}}
	next.Nodes = append(next.Nodes, Node{ID: "c", Addr: "127.0.0.1:3"})
	for _, d := range []*wire.MapDelta{
		deltaOf(next, 3, []int{2, 5}),
		deltaOf(next, 3, nil),
		deltaOf(next, 0, []int{0, 1, 2, 3, 4, 5, 6, 7}),
		deltaOf(next, 2, []int{2}),
		deltaOf(next, 3, []int{5, 2}),
	} {
		b, err := json.Marshal(d)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(heldBody, b)
	}
	f.Add(heldBody, wiretest.FullMapBody(4, wiretest.HashConfig(fuzzHash), fuzzPartitions))
	moved := deltaOf(next, 3, []int{2})
	moved.Nodes = maps.Clone(moved.Nodes)
	moved.Nodes["b"] = wire.Node{ID: "b", IP: "127.0.0.1:9"}
	delete(moved.Nodes, "a")
	b, err := json.Marshal(moved)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(heldBody, b)
	f.Add([]byte(nil), []byte(`{"id":"c1","epoch":4,"since":3,"partition_count":8,"hash_config":{"algorithm":"md5","modulo":8,"format":"partition-%d"},"partitions":[{"id":"partition--1","primary_node":"a"}]}`))
	// A full answer sized the client's array of entries by its partition count: this one was a
	// fatal out-of-memory error (112 GB asked for).
	f.Add([]byte(nil), []byte(`{"id":"c1","epoch":4,"full":true,"partition_count":2000000000,"hash_config":{"algorithm":"md5","modulo":2000000000,"format":"partition-%d"},"partitions":[]}`))
	f.Fuzz(func(t *testing.T, heldBody, body []byte) {
		held := heldMap(t)
		var c wire.Cluster
		if json.Unmarshal(heldBody, &c) == nil {
			if h, err := FromCluster(&c, `"held"`); err == nil {
				held = h
			}
		}
		before := copyTopology(held)
		var d wire.MapDelta
		if err := json.Unmarshal(body, &d); err != nil {
			return
		}
		got, err := FromDelta(held, &d, `"tag"`)
		if err := sameTopology(before, held); err != nil {
			t.Fatalf("applying a delta modified the map held: %v", err)
		}
		if err != nil {
			return
		}
		if err := checkTopology(got, d.PartitionCount); err != nil {
			t.Fatal(err)
		}
		if got.ClusterID != d.ID || got.Epoch != d.Epoch || got.ETag != `"tag"` {
			t.Fatalf("topology of cluster %q epoch %d tag %s from an answer of cluster %q epoch %d", got.ClusterID, got.Epoch, got.ETag, d.ID, d.Epoch)
		}
		if !d.Full {
			listed := map[int]bool{}
			for _, p := range d.Partitions {
				i, _ := partition.Parse(p.ID, d.PartitionCount)
				listed[i] = true
			}
			for i, r := range got.Routes {
				h := held.Routes[i]
				if !listed[i] && (r.PrimaryEpoch != h.PrimaryEpoch || !slices.Equal(nodeIDs(r.Nodes), nodeIDs(h.Nodes)) || !slices.Equal(nodeIDs(r.Pending), nodeIDs(h.Pending))) {
					t.Fatalf("route %d is not listed but changed: %+v, then %+v", i, h, r)
				}
			}
		}
		if err := roundTrip(got); err != nil {
			t.Fatalf("a topology changes in a round trip: %v", err)
		}
	})
}

// A map read from etcd with the cluster's config, as a client in etcd mode builds its topology:
// the config decoded by state.DecodeConfig and checked by CheckHash, as pkg/client's readEtcd
// does, the map decoded by state.DecodeHead.
func FuzzFromStateMap(f *testing.F) {
	cfg := state.Config{ClusterID: "c1", PartitionCount: fuzzPartitions, ReplicationFactor: 2, Hash: fuzzHash}
	cfgBody, err := json.Marshal(cfg)
	if err != nil {
		f.Fatal(err)
	}
	m := &state.Map{Epoch: 5, Leader: "a", Nodes: map[string]state.Node{
		"a": {ID: "a", IP: "127.0.0.1:1"}, "b": {ID: "b", IP: "127.0.0.1:2", Zone: "z2"}, "c": {ID: "c", IP: "127.0.0.1:3", Metadata: map[string]string{"k": "v"}},
	}}
	for i := range fuzzPartitions {
		e := state.Entry{Holders: []string{"a", "b"}, PrimaryEpoch: 2}
		if i%3 == 0 {
			e.Pending = []state.Pending{{Node: "c", Since: 5, Attempt: 1}}
			e.Target = []string{"c", "b"}
		}
		m.Partitions = append(m.Partitions, e)
	}
	enc, err := state.EncodeNext(nil, m, state.MaxValue)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(cfgBody, enc.Head)
	f.Add(cfgBody, []byte(`{"epoch":1,"nodes":{"a":{"id":"b","ip":"x:1"}},"partitions":[{"holders":["a"],"primary_epoch":1}]}`))
	f.Add([]byte(`{"cluster_id":"c1","partition_count":1,"hash":{"algorithm":"md5","modulo":1,"format":"partition-%d"}}`),
		[]byte(`{"epoch":1,"nodes":{"a":{"id":"a","ip":"x:1"}},"partitions":[{"holders":["a"],"primary_epoch":1}]}`))
	f.Add([]byte(`{"partition_count":8,"hash":{"algorithm":"md5","modulo":8,"format":"partition-%d"}}`), enc.Head)
	f.Add([]byte(`{"cluster_id":"c1","partition_count":0,"hash":{"algorithm":"md5","modulo":0,"format":"partition-%d"}}`), enc.Head)
	f.Fuzz(func(t *testing.T, cfgBody, head []byte) {
		cfg, err := state.DecodeConfig(cfgBody)
		if err != nil {
			return
		}
		if err := CheckHash(cfg.Hash, cfg.PartitionCount); err != nil {
			return
		}
		m, err := state.DecodeHead(head)
		if err != nil {
			return
		}
		got, err := FromStateMap("fuzz", cfg, m)
		if err != nil {
			return
		}
		if err := checkTopology(got, cfg.PartitionCount); err != nil {
			t.Fatal(err)
		}
		if got.ClusterID != cfg.ClusterID || got.Epoch != m.Epoch {
			t.Fatalf("topology of cluster %q epoch %d from cluster %q epoch %d", got.ClusterID, got.Epoch, cfg.ClusterID, m.Epoch)
		}
		if got.ClusterID == "" || got.Epoch == 0 {
			return // etcd mode does without; GET /cluster refuses a map without them
		}
		if err := roundTrip(got); err != nil {
			t.Fatalf("a topology changes in a round trip: %v", err)
		}
	})
}

func nodeIDs(ns []Node) []string {
	var ids []string
	for _, n := range ns {
		ids = append(ids, n.ID)
	}
	return ids
}
