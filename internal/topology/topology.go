// Package topology is the map a client routes with: one partition map, built and checked from a
// GET /cluster answer, a GET /cluster/map answer applied to the map held, or a map read from
// etcd. Every check that keeps routing from panicking or misrouting on a bad answer is here:
// every partition has a holder, every holder and pending node is a known node with an address,
// no node is listed twice, and the hash is the one the client implements.
//
// It is pkg/client's, which exports Node and Route as its own; it is a package of its own so
// that its decoders are fuzzed without linking the etcd client.
package topology

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/clusterkit-go/clusterkit/internal/partition"
	"github.com/clusterkit-go/clusterkit/internal/state"
	"github.com/clusterkit-go/clusterkit/pkg/wire"
)

// Node is a member of the cluster as the client sees it. Values handed out by the client
// share their Metadata map with its snapshot of the topology: do not modify it.
type Node struct {
	// ID is the node's unique name.
	ID string
	// Addr is the host:port of the node's ClusterKit HTTP API (the "ip" of GET /cluster).
	Addr string
	// Zone is the node's failure domain, if it has one.
	Zone string
	// Metadata is what the application published for the node, for example the address of
	// its own data service.
	Metadata map[string]string
}

// Route is where a key goes: its partition and the nodes that serve it.
type Route struct {
	// Partition is the partition's ID, "partition-<Index>".
	Partition string
	Index     int
	// Epoch is the epoch of the map the route comes from.
	Epoch uint64
	// PrimaryEpoch is the map epoch at which the current primary took the role: the fencing
	// token to stamp writes with (replicas refuse writes stamped with an older one).
	PrimaryEpoch uint64
	// Nodes are the partition's routable holders, primary first, then the replicas. Nodes
	// still copying the partition in are never listed. It is shared with the client's
	// snapshot: do not modify it.
	Nodes []Node
	// Pending are nodes copying the partition in: not routable yet, but a write that must
	// survive the handoff goes to them too (a node's copy may have been taken before the
	// write). Shared with the client's snapshot: do not modify it.
	Pending []Node
}

// Primary returns the partition's primary: the first of Nodes.
func (r Route) Primary() Node {
	if len(r.Nodes) == 0 {
		return Node{}
	}
	return r.Nodes[0]
}

// Topology is one partition map, immutable once built: lookups read it through an atomic
// pointer, without a lock. Routes[Mod.Of(partition.Hash(key))] is where key goes.
type Topology struct {
	ClusterID string
	// ClusterName is known in both modes (GET /cluster says it; etcd mode is given it).
	ClusterName string
	Epoch       uint64
	// ETag is the tag GET /cluster or GET /cluster/map served the map with; empty in etcd mode.
	ETag   string
	Mod    partition.Modulo
	Routes []Route
	// Nodes are sorted by ID.
	Nodes []Node
}

// entry is one partition as the sources describe it: holders, primary first.
type entry struct {
	holders      []string
	pending      []string
	primaryEpoch uint64
}

// maxPartitions is the most partitions a cluster has (clusterkit.MaxPartitionCount). A larger
// count in an answer is refused before it sizes anything.
const maxPartitions = 1 << 16

// ErrUnsupportedHash is returned when the cluster publishes a key hash this client does not
// implement: routing with another hash would send keys to the wrong nodes. pkg/client exports it.
var ErrUnsupportedHash = errors.New("clusterkit: unsupported hash configuration")

// CheckHash refuses a hash configuration this client cannot follow: anything but md5 modulo the
// partition count, partitions named partition-<index>, and at most 65536 partitions.
func CheckHash(h wire.HashConfig, partitions int) error {
	if h.Algorithm != state.HashMD5 {
		return fmt.Errorf("%w: the cluster hashes keys with %q; this client implements only %q", ErrUnsupportedHash, h.Algorithm, state.HashMD5)
	}
	if h.Format != partition.Format {
		return fmt.Errorf("%w: the cluster names partitions %q; this client implements only %q", ErrUnsupportedHash, h.Format, partition.Format)
	}
	if h.Modulo <= 0 || h.Modulo != partitions {
		return fmt.Errorf("%w: modulo %d for a map of %d partitions", ErrUnsupportedHash, h.Modulo, partitions)
	}
	if partitions > maxPartitions {
		return fmt.Errorf("%w: %d partitions, more than the %d a cluster can have", ErrUnsupportedHash, partitions, maxPartitions)
	}
	return nil
}

// newTopology checks a map (every partition has holders, every holder is a known node with an
// address, no node twice) and builds its routes. The caller has checked the hash.
func newTopology(clusterID, clusterName string, epoch uint64, nodes map[string]Node, entries []entry) (*Topology, error) {
	t, err := topologyHead(clusterID, clusterName, epoch, nodes, len(entries))
	if err != nil {
		return nil, err
	}
	t.Routes = make([]Route, len(entries))
	total := 0
	for _, e := range entries {
		total += len(e.holders) + len(e.pending)
	}
	// One backing array for every route keeps the snapshot compact.
	backing := make([]Node, 0, total)
	for i, e := range entries {
		if t.Routes[i], backing, err = newRoute(i, partition.ID(i), epoch, e, nodes, backing); err != nil {
			return nil, err
		}
	}
	return t, nil
}

// topologyHead returns a topology of partitions partitions without routes, with its node table
// checked (every node listed under its ID, with an address) and sorted.
func topologyHead(clusterID, clusterName string, epoch uint64, nodes map[string]Node, partitions int) (*Topology, error) {
	t := &Topology{
		ClusterID:   clusterID,
		ClusterName: clusterName,
		Epoch:       epoch,
		Mod:         partition.NewModulo(partitions),
	}
	for id, n := range nodes {
		if n.ID != id || n.Addr == "" {
			return nil, fmt.Errorf("map epoch %d: node %q is listed as %q with address %q", epoch, id, n.ID, n.Addr)
		}
		t.Nodes = append(t.Nodes, n)
	}
	slices.SortFunc(t.Nodes, func(a, b Node) int { return strings.Compare(a.ID, b.ID) })
	return t, nil
}

// newRoute checks partition i's entry against nodes and returns its route, whose nodes are
// appended to backing (returned grown).
func newRoute(i int, id string, epoch uint64, e entry, nodes map[string]Node, backing []Node) (Route, []Node, error) {
	if len(e.holders) == 0 {
		return Route{}, nil, fmt.Errorf("map epoch %d: %s has no holder", epoch, id)
	}
	start := len(backing)
	for j, h := range e.holders {
		n, ok := nodes[h]
		if !ok || slices.Contains(e.holders[:j], h) {
			return Route{}, nil, fmt.Errorf("map epoch %d: %s holder %q is unknown or listed twice", epoch, id, h)
		}
		backing = append(backing, n)
	}
	held := len(backing)
	for _, p := range e.pending {
		n, ok := nodes[p]
		if !ok || slices.Contains(e.holders, p) {
			return Route{}, nil, fmt.Errorf("map epoch %d: %s pending node %q is unknown or a holder", epoch, id, p)
		}
		backing = append(backing, n)
	}
	r := Route{
		Partition:    id,
		Index:        i,
		Epoch:        epoch,
		PrimaryEpoch: e.primaryEpoch,
		Nodes:        backing[start:held:held],
	}
	if held < len(backing) {
		r.Pending = backing[held:len(backing):len(backing)]
	}
	return r, backing, nil
}

// FromStateMap builds the topology of a map read from etcd, with the cluster's config.
func FromStateMap(clusterName string, cfg *state.Config, m *state.Map) (*Topology, error) {
	if err := CheckHash(cfg.Hash, cfg.PartitionCount); err != nil {
		return nil, err
	}
	if err := m.Validate(cfg.PartitionCount); err != nil {
		return nil, err
	}
	nodes := make(map[string]Node, len(m.Nodes))
	for id, n := range m.Nodes {
		nodes[id] = Node{ID: n.ID, Addr: n.IP, Zone: n.Zone, Metadata: maps.Clone(n.Metadata)}
	}
	entries := make([]entry, len(m.Partitions))
	for i := range m.Partitions {
		e := &m.Partitions[i]
		entries[i] = entry{holders: e.Holders, primaryEpoch: e.PrimaryEpoch}
		for _, pd := range e.Pending {
			entries[i].pending = append(entries[i].pending, pd.Node)
		}
	}
	return newTopology(cfg.ClusterID, clusterName, m.Epoch, nodes, entries)
}

// FromCluster builds the topology of a GET /cluster answer, served with etag.
func FromCluster(d *wire.Cluster, etag string) (*Topology, error) {
	c := &d.Cluster
	if c.ID == "" || c.Epoch == 0 {
		return nil, fmt.Errorf("not a ClusterKit map: cluster id %q, epoch %d", c.ID, c.Epoch)
	}
	if err := CheckHash(d.HashConfig, len(c.PartitionMap)); err != nil {
		return nil, err
	}
	nodes := make(map[string]Node, len(c.Nodes))
	for id, n := range c.Nodes {
		nodes[id] = Node{ID: n.ID, Addr: n.IP, Zone: n.Zone, Metadata: n.Metadata}
	}
	entries := make([]entry, len(c.PartitionMap))
	for i := range entries {
		p, ok := c.PartitionMap[partition.ID(i)]
		if !ok {
			return nil, fmt.Errorf("map epoch %d lacks %s", c.Epoch, partition.ID(i))
		}
		entries[i] = entryOf(&p)
	}
	t, err := newTopology(c.ID, c.Name, c.Epoch, nodes, entries)
	if err != nil {
		return nil, err
	}
	t.ETag = etag
	return t, nil
}

// entryOf is the entry of a partition as GET /cluster and /cluster/map list it.
func entryOf(p *wire.Partition) entry {
	return entry{holders: append([]string{p.PrimaryNode}, p.ReplicaNodes...), pending: p.PendingNodes, primaryEpoch: p.PrimaryEpoch}
}

// FromDelta builds the topology a GET /cluster/map answer d, served with etag, describes. A full
// answer is built as a GET /cluster answer is. Any other must be relative to held, the map the
// client holds: the routes of held are copied, and only the partitions d lists (and those that
// name a node whose record changed) are built again, each on a backing array of its own so
// that no route keeps an older map's array alive. held is not modified.
func FromDelta(held *Topology, d *wire.MapDelta, etag string) (*Topology, error) {
	if d.ID == "" || d.Epoch == 0 {
		return nil, fmt.Errorf("not a ClusterKit map: cluster id %q, epoch %d", d.ID, d.Epoch)
	}
	if err := CheckHash(d.HashConfig, d.PartitionCount); err != nil {
		return nil, err
	}
	nodes := make(map[string]Node, len(d.Nodes))
	for id, n := range d.Nodes {
		nodes[id] = Node{ID: n.ID, Addr: n.IP, Zone: n.Zone, Metadata: n.Metadata}
	}
	count := d.PartitionCount
	if d.Full {
		entries := make([]entry, count)
		listed := 0
		for _, p := range d.Partitions {
			i, err := partition.Parse(p.ID, count)
			if err != nil || len(entries[i].holders) > 0 {
				return nil, fmt.Errorf("map epoch %d: partition %q is not one of %d or is listed twice", d.Epoch, p.ID, count)
			}
			entries[i] = entryOf(&p)
			listed++
		}
		if listed != count {
			return nil, fmt.Errorf("map epoch %d: %d of %d partitions listed in a full answer", d.Epoch, listed, count)
		}
		t, err := newTopology(d.ID, d.Name, d.Epoch, nodes, entries)
		if err != nil {
			return nil, err
		}
		t.ETag = etag
		return t, nil
	}
	switch {
	case d.Since != held.Epoch || d.Epoch <= d.Since:
		return nil, fmt.Errorf("map epoch %d: the answer is relative to epoch %d, the client holds %d", d.Epoch, d.Since, held.Epoch)
	case count != len(held.Routes):
		return nil, fmt.Errorf("map epoch %d: %d partitions, the client's map has %d", d.Epoch, count, len(held.Routes))
	}
	t, err := topologyHead(d.ID, d.Name, d.Epoch, nodes, count)
	if err != nil {
		return nil, err
	}
	t.ETag = etag
	t.Routes = slices.Clone(held.Routes)
	for i := range t.Routes {
		t.Routes[i].Epoch = d.Epoch
	}
	listed := make([]int, 0, len(d.Partitions))
	for _, p := range d.Partitions {
		i, err := partition.Parse(p.ID, count)
		if err != nil || (len(listed) > 0 && i <= listed[len(listed)-1]) {
			return nil, fmt.Errorf("map epoch %d: partition %q is not one of %d or out of index order", d.Epoch, p.ID, count)
		}
		e := entryOf(&p)
		if t.Routes[i], _, err = newRoute(i, held.Routes[i].Partition, d.Epoch, e, nodes, make([]Node, 0, len(e.holders)+len(e.pending))); err != nil {
			return nil, err
		}
		listed = append(listed, i)
	}
	// The routes the answer does not list still carry the held node records: build again those
	// that name a node whose record changed (a node that went away must have been listed).
	var changed []string
	for _, n := range held.Nodes {
		if m, ok := nodes[n.ID]; !ok || !sameNode(n, m) {
			changed = append(changed, n.ID)
		}
	}
	if len(changed) == 0 {
		return t, nil
	}
	next := 0
	for i := range t.Routes {
		if next < len(listed) && listed[next] == i {
			next++
			continue
		}
		r := &t.Routes[i]
		if !names(r.Nodes, changed) && !names(r.Pending, changed) {
			continue
		}
		e := entry{holders: ids(r.Nodes), pending: ids(r.Pending), primaryEpoch: r.PrimaryEpoch}
		if *r, _, err = newRoute(i, r.Partition, d.Epoch, e, nodes, make([]Node, 0, len(e.holders)+len(e.pending))); err != nil {
			return nil, fmt.Errorf("%w (not listed as changed since epoch %d)", err, d.Since)
		}
	}
	return t, nil
}

// sameNode reports whether a and b are the same record.
func sameNode(a, b Node) bool {
	return a.ID == b.ID && a.Addr == b.Addr && a.Zone == b.Zone && maps.Equal(a.Metadata, b.Metadata)
}

// names reports whether any of ns has one of the IDs.
func names(ns []Node, ids []string) bool {
	for _, n := range ns {
		if slices.Contains(ids, n.ID) {
			return true
		}
	}
	return false
}

// ids returns the IDs of ns.
func ids(ns []Node) []string {
	out := make([]string, len(ns))
	for i, n := range ns {
		out[i] = n.ID
	}
	return out
}
