package main

import (
	"context"
	"fmt"
	"io"
	"maps"
	"slices"

	"github.com/spf13/cobra"

	"github.com/clusterkit-go/clusterkit/internal/nextmap"
	"github.com/clusterkit-go/clusterkit/internal/state"
)

// Node states, as clusterkit nodes shows them.
const (
	stateServing   = "serving"    // in the map, with a lease
	stateDrained   = "drained"    // serving, and an operator's drain record gives it nothing
	stateCordoned  = "cordoned"   // serving, and an operator's cordon record gives it nothing new
	stateDraining  = "draining"   // handing its partitions over
	stateLeaving   = "leaving"    // in the instant before it revokes its lease
	stateAbsent    = "absent"     // crashed; the map keeps its places during the grace period
	stateNotInMap  = "not-in-map" // has a lease, the map does not list it yet
	stateLeaseGone = "lease-gone" // in the map, its lease is gone
)

// nodesDoc is the document of clusterkit nodes.
type nodesDoc struct {
	// Epoch is the map's, 0 without a map.
	Epoch uint64     `json:"epoch"`
	Nodes []nodeInfo `json:"nodes"`
}

// nodeInfo is one node of the map or of the node records.
type nodeInfo struct {
	ID      string `json:"id"`
	Address string `json:"address"`
	Zone    string `json:"zone"`
	Weight  int    `json:"weight"`
	State   string `json:"state"`
	// InMap says the map lists the node (absent nodes are not listed), Lease that it has a
	// record.
	InMap bool `json:"in_map"`
	Lease bool `json:"lease"`
	// Primaries and Replicas count the partitions the node serves as primary and as replica,
	// PendingIn the copies it is asked to make, Queued the copies into it the map holds back
	// (MaxHandoffsPerNode or MaxHandoffs): partitions whose target lists it, not asked yet.
	Primaries int `json:"primaries"`
	Replicas  int `json:"replicas"`
	PendingIn int `json:"pending_in"`
	Queued    int `json:"queued"`
}

func newNodes(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "nodes",
		Short: "List the nodes of the map and of the node records",
		Long: `List every node that the map lists or that has a record (a live lease), with its
address, zone, weight in placement (an operator's, set with clusterkit weight, in place
of its own) and state, the partitions it serves as primary and as replica,
the copies it is asked to make (pending in), and the copies into it the map holds back
for a free slot (queued: MaxHandoffsPerNode or MaxHandoffs of the leader; read from the
partitions' targets in the stored map, as GET /cluster's "queued" is).

States: serving (in the map, with a lease), drained and cordoned (serving, with an
operator's drain or cordon record: see clusterkit drain and cordon), draining (handing
its partitions over as it stops), leaving (in the instant before it revokes its lease),
absent (crashed; the map keeps its places during the grace period), not-in-map (has a
lease; the leader has not published a map with it yet), lease-gone (in the map; its
lease ended and the leader has not published a map without it yet).

With -o json:
  {"epoch": 5,
   "nodes": [{"id": "node-1", "address": "127.0.0.1:8080", "zone": "", "weight": 1,
              "state": "serving", "in_map": true, "lease": true,
              "primaries": 22, "replicas": 42, "pending_in": 0, "queued": 0}]}`,
		Args: args(0, "no argument"),
		RunE: action(func(cmd *cobra.Command, _ []string) error {
			return g.command(cmd.Context(), func(ctx context.Context, s *session) error {
				snap, err := s.snapshot(ctx)
				if err != nil {
					return err
				}
				snap.warnSkipped(cmd.ErrOrStderr())
				return render(cmd, g, snap.nodes(), nodesTable)
			})
		}),
	}
}

// nodes lists the map's nodes, its absent ones and the node records, by ID.
func (snap *snapshot) nodes() nodesDoc {
	doc := nodesDoc{Nodes: []nodeInfo{}}
	c := snap.constraints()
	byID := map[string]*nodeInfo{}
	get := func(id string) *nodeInfo {
		if n, ok := byID[id]; ok {
			return n
		}
		n := &nodeInfo{ID: id}
		byID[id] = n
		return n
	}
	if m := snap.m; m != nil {
		doc.Epoch = m.Epoch
		for id, rec := range m.Nodes {
			n := get(id)
			n.InMap = true
			n.Address, n.Zone, n.Weight = rec.IP, rec.Zone, rec.Weight
		}
		for id, a := range m.Absent {
			n := get(id)
			n.Zone, n.Weight = a.Zone, a.Weight
		}
		for i := range m.Partitions {
			e := &m.Partitions[i]
			for k, h := range e.Holders {
				if k == 0 {
					get(h).Primaries++
				} else {
					get(h).Replicas++
				}
			}
			for _, p := range e.Pending {
				get(p.Node).PendingIn++
			}
		}
		for id, q := range nextmap.Queued(m) {
			get(id).Queued = q
		}
	}
	for id, rec := range snap.records {
		n := get(id)
		n.Lease = true
		n.Address, n.Zone, n.Weight = rec.IP, rec.Zone, rec.Weight
	}
	for _, id := range slices.Sorted(maps.Keys(byID)) {
		n := byID[id]
		n.Weight = c.Weight(id, n.Weight)
		n.State = snap.nodeState(id, n, c)
		doc.Nodes = append(doc.Nodes, *n)
	}
	return doc
}

func (snap *snapshot) nodeState(id string, n *nodeInfo, c nextmap.Constraints) string {
	rec, lease := snap.records[id]
	switch {
	case lease && rec.State == state.NodeDraining:
		return stateDraining
	case lease && rec.State == state.NodeLeaving:
		return stateLeaving
	case lease && n.InMap && c.Drained[id]:
		return stateDrained
	case lease && n.InMap && c.Cordoned[id]:
		return stateCordoned
	case lease && n.InMap:
		return stateServing
	case lease:
		return stateNotInMap
	case n.InMap:
		return stateLeaseGone
	default:
		return stateAbsent
	}
}

func nodesTable(w io.Writer, doc nodesDoc) {
	fmt.Fprintf(w, "NODE\tADDRESS\tZONE\tWEIGHT\tSTATE\tPRIMARY\tREPLICA\tPENDING IN\tQUEUED\n")
	for _, n := range doc.Nodes {
		fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%s\t%d\t%d\t%d\t%d\n", n.ID, orDash(n.Address), orDash(n.Zone), n.Weight, n.State,
			n.Primaries, n.Replicas, n.PendingIn, n.Queued)
	}
}

// warnSkipped tells of the node and admin records that could not be read.
func (snap *snapshot) warnSkipped(w io.Writer) {
	for _, s := range snap.skipped {
		fmt.Fprintf(w, "clusterkit: skipping an unreadable record: %s\n", s)
	}
}
