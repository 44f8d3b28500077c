package main

import (
	"context"
	"fmt"
	"io"
	"maps"
	"math"
	"slices"

	"github.com/spf13/cobra"

	"github.com/clusterkit-go/clusterkit/internal/keys"
	"github.com/clusterkit-go/clusterkit/internal/nextmap"
	"github.com/clusterkit-go/clusterkit/internal/partition"
	"github.com/clusterkit-go/clusterkit/internal/state"
	"github.com/clusterkit-go/clusterkit/pkg/rebalance"
)

// planDoc is the document of clusterkit plan join and plan leave.
type planDoc struct {
	// Epoch is the map the change is planned against.
	Epoch uint64 `json:"epoch"`
	// Change is "join" or "leave"; Node the node that joins or leaves.
	Change         string   `json:"change"`
	Node           planNode `json:"node"`
	PartitionCount int      `json:"partition_count"`
	// PartitionsMoving counts the partitions whose holders change, ReplicaCopies the copies to
	// new holders, ReplicasReleased the holders dropped, PrimaryMoves the partitions whose
	// primary changes.
	PartitionsMoving int `json:"partitions_moving"`
	ReplicaCopies    int `json:"replica_copies"`
	ReplicasReleased int `json:"replicas_released"`
	PrimaryMoves     int `json:"primary_moves"`
	// Nodes are every node of the map before or after, by ID.
	Nodes []planLoad `json:"nodes"`
	// Moves are the partitions whose holders or primary change.
	Moves []planMove `json:"moves"`
}

// planNode is the node of a planned change.
type planNode struct {
	ID     string `json:"id"`
	Zone   string `json:"zone"`
	Weight int    `json:"weight"`
}

// planLoad is a node's share before and after the change: the copies it makes (CopiesIn) and
// the replicas it gives up (Released).
type planLoad struct {
	ID              string `json:"id"`
	Zone            string `json:"zone"`
	ReplicasBefore  int    `json:"replicas_before"`
	Replicas        int    `json:"replicas"`
	CopiesIn        int    `json:"copies_in"`
	Released        int    `json:"released"`
	PrimariesBefore int    `json:"primaries_before"`
	Primaries       int    `json:"primaries"`
}

// planMove is one partition's placement before and after, primary first.
type planMove struct {
	Partition string   `json:"partition"`
	Index     int      `json:"index"`
	Before    []string `json:"before"`
	After     []string `json:"after"`
}

const planJSON = `With -o json:
  {"epoch": 5, "change": "join", "node": {"id": "node-4", "zone": "", "weight": 1},
   "partition_count": 64, "partitions_moving": 48, "replica_copies": 48,
   "replicas_released": 48, "primary_moves": 16,
   "nodes": [{"id": "node-1", "zone": "", "replicas_before": 64, "replicas": 48,
              "copies_in": 0, "released": 16, "primaries_before": 22, "primaries": 16}],
   "moves": [{"partition": "partition-0", "index": 0,
              "before": ["node-1", "node-2", "node-3"], "after": ["node-4", "node-2", "node-3"]}]}
(moves is listed in JSON with or without -v)`

func newPlan(g *globals) *cobra.Command {
	var verbose bool
	plan := &cobra.Command{
		Use:   "plan",
		Short: "Dry-run a join or a leave: what would move",
		Long: `Dry-run a membership change with the placement code the leader runs (nextmap.Next,
which calls rebalance.Compute) on the current map, with the node added to or removed
from the map's node table and the operators' actions in force: how many partitions would move, each node's replicas and
primaries before and after and the copies it would make or give, and with -v the
partitions that move. Nothing is written.

` + planJSON,
	}
	plan.PersistentFlags().BoolVarP(&verbose, "verbose", "v", false, "list the partitions that move")

	var zone string
	var w int
	join := &cobra.Command{
		Use:   "join NODE [--zone Z] [--weight W]",
		Short: "What would move if NODE joined",
		Long: `What would move if NODE joined the cluster with the given zone and weight.

` + planJSON,
		Args: args(1, "one NODE"),
		RunE: action(func(cmd *cobra.Command, a []string) error {
			if err := keys.ValidNodeID(a[0]); err != nil {
				return usageError("%v", err)
			}
			if w < 1 || w > rebalance.MaxWeight {
				return usageError("--weight %d: want 1 to %d", w, rebalance.MaxWeight)
			}
			n := state.Node{ID: a[0], IP: "planned", Zone: zone, Weight: w}
			return g.planCommand(cmd, verbose, "join", n)
		}),
	}
	join.Flags().StringVar(&zone, "zone", "", "the node's failure domain")
	join.Flags().IntVar(&w, "weight", 1, "the node's relative capacity")

	leave := &cobra.Command{
		Use:   "leave NODE",
		Short: "What would move if NODE left",
		Long: `What would move if NODE left the cluster (a leave, or a crash without a grace period).

` + planJSON,
		Args: args(1, "one NODE"),
		RunE: action(func(cmd *cobra.Command, a []string) error {
			return g.planCommand(cmd, verbose, "leave", state.Node{ID: a[0]})
		}),
	}
	plan.AddCommand(join, leave)
	return plan
}

func (g *globals) planCommand(cmd *cobra.Command, verbose bool, change string, n state.Node) error {
	return g.command(cmd.Context(), func(ctx context.Context, s *session) error {
		snap, err := s.snapshot(ctx)
		if err != nil {
			return err
		}
		m, err := snap.requireMap()
		if err != nil {
			return err
		}
		doc, err := snap.plan(m, change, n)
		if err != nil {
			return err
		}
		return render(cmd, g, doc, func(w io.Writer, doc planDoc) { planTable(w, doc, verbose) })
	})
}

// plan computes the map that would follow m if n joined or left, as the leader computes it,
// and compares the placements.
func (snap *snapshot) plan(m *state.Map, change string, n state.Node) (planDoc, error) {
	nodes := maps.Clone(m.Nodes)
	departed := map[string]bool{}
	_, known := m.Nodes[n.ID]
	switch {
	case change == "join" && known:
		return planDoc{}, stateError("node %q is already in the map of epoch %d", n.ID, m.Epoch)
	case change == "join":
		nodes[n.ID] = n
	case !known:
		return planDoc{}, stateError("node %q is not in the map of epoch %d (its nodes: %s)", n.ID, m.Epoch, list(m.Members()))
	default:
		n = m.Nodes[n.ID]
		delete(nodes, n.ID)
		departed[n.ID] = true
	}
	// No deadline passes in a dry run: no copy times out and absent nodes keep their places.
	res, err := nextmap.Next(nextmap.Input{
		Current:           m,
		Nodes:             nodes,
		Departed:          departed,
		Leader:            m.Leader,
		PartitionCount:    snap.config.PartitionCount,
		ReplicationFactor: snap.config.ReplicationFactor,
		HandoffTimeout:    math.MaxInt64,
		CrashGracePeriod:  math.MaxInt64,
		Admin:             snap.constraints(),
		Now:               snap.now,
	})
	if err != nil {
		return planDoc{}, stateError("placing the partitions: %v", err)
	}
	if res.Map == nil {
		return planDoc{}, stateError("no node would be left to hold the partitions")
	}
	before, after := placement(m), placement(res.Map)
	moves, primaryMoves := rebalance.Moves(before, after), rebalance.PrimaryMoves(before, after)
	doc := planDoc{
		Epoch: m.Epoch, Change: change, Node: planNode{ID: n.ID, Zone: n.Zone, Weight: weight(n.Weight)},
		PartitionCount: len(m.Partitions), PrimaryMoves: len(primaryMoves), Moves: []planMove{},
	}
	loads := map[string]*planLoad{}
	load := func(id string) *planLoad {
		if l, ok := loads[id]; ok {
			return l
		}
		l := &planLoad{ID: id}
		if rec, ok := m.Nodes[id]; ok {
			l.Zone = rec.Zone
		} else if rec, ok := nodes[id]; ok {
			l.Zone = rec.Zone
		}
		loads[id] = l
		return l
	}
	for id := range m.Nodes {
		load(id)
	}
	for id := range nodes {
		load(id)
	}
	for i := range before {
		for k, id := range before[i] {
			load(id).ReplicasBefore++
			if k == 0 {
				load(id).PrimariesBefore++
			}
		}
		for k, id := range after[i] {
			load(id).Replicas++
			if k == 0 {
				load(id).Primaries++
			}
		}
		if !slices.Equal(before[i], after[i]) {
			doc.Moves = append(doc.Moves, planMove{Partition: partition.ID(i), Index: i, Before: before[i], After: after[i]})
		}
	}
	moving := map[int]bool{}
	for _, mv := range moves {
		moving[mv.Partition] = true
		if mv.To != "" {
			doc.ReplicaCopies++
			load(mv.To).CopiesIn++
		}
		if mv.From != "" {
			doc.ReplicasReleased++
			load(mv.From).Released++
		}
	}
	doc.PartitionsMoving = len(moving)
	for _, id := range slices.Sorted(maps.Keys(loads)) {
		doc.Nodes = append(doc.Nodes, *loads[id])
	}
	return doc, nil
}

// placement is where every partition of m is meant to be: its target while it moves, else its
// holders.
func placement(m *state.Map) rebalance.Map {
	out := make(rebalance.Map, len(m.Partitions))
	for i := range m.Partitions {
		out[i] = m.Partitions[i].Placement()
	}
	return out
}

func planTable(w io.Writer, doc planDoc, verbose bool) {
	if doc.Change == "join" {
		fmt.Fprintf(w, "Plan:\t%s joins (zone %s, weight %d) the map of epoch %d; nothing is written\n",
			doc.Node.ID, orDash(doc.Node.Zone), doc.Node.Weight, doc.Epoch)
	} else {
		fmt.Fprintf(w, "Plan:\t%s leaves the map of epoch %d; nothing is written\n", doc.Node.ID, doc.Epoch)
	}
	fmt.Fprintf(w, "Moves:\t%d of %d partitions change holders: %d replica copies, %d replicas released; %d primaries change\n",
		doc.PartitionsMoving, doc.PartitionCount, doc.ReplicaCopies, doc.ReplicasReleased, doc.PrimaryMoves)
	fmt.Fprintf(w, "\nNODE\tZONE\tREPLICAS\tAFTER\tCOPIES IN\tRELEASED\tPRIMARIES\tAFTER\n")
	for _, l := range doc.Nodes {
		fmt.Fprintf(w, "%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\n", l.ID, orDash(l.Zone), l.ReplicasBefore, l.Replicas,
			l.CopiesIn, l.Released, l.PrimariesBefore, l.Primaries)
	}
	if !verbose {
		return
	}
	fmt.Fprintf(w, "\nPARTITION\tNOW\tAFTER\n")
	for _, mv := range doc.Moves {
		fmt.Fprintf(w, "%s\t%s\t%s\n", mv.Partition, list(mv.Before), list(mv.After))
	}
}
