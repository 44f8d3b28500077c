package main

import (
	"context"
	"fmt"
	"io"
	"maps"
	"math"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/clusterkit-go/clusterkit/internal/nextmap"
	"github.com/clusterkit-go/clusterkit/internal/partition"
	"github.com/clusterkit-go/clusterkit/internal/state"
)

// explainDoc is the document of clusterkit explain.
type explainDoc struct {
	Epoch     uint64 `json:"epoch"`
	Partition string `json:"partition"`
	Index     int    `json:"index"`
	// Holders, PrimaryEpoch, Pending and Target are the partition's entry in the map.
	Holders      []string       `json:"holders"`
	PrimaryEpoch uint64         `json:"primary_epoch"`
	Pending      []pendingSince `json:"pending"`
	Target       []string       `json:"target"`
	// Moving says the partition is moving: From are the holders the move releases, To the
	// nodes it adds (copying in).
	Moving    bool          `json:"moving"`
	From      []string      `json:"from"`
	To        []string      `json:"to"`
	Placement placementView `json:"placement"`
	// Constraints are the decisions the operators' actions took about the partition, as the
	// leader takes them. Never null.
	Constraints []constraintView `json:"constraints"`
}

// constraintView is one decision of an operator's action about the partition (nextmap.Note),
// with the records in force that made it.
type constraintView struct {
	nextmap.Note
	// Records are the admin records behind the decision: the pin, the cordon, the drain, or
	// every maintenance; none for a node draining as it stops. Never null.
	Records []adminRecord `json:"records"`
}

// pendingSince is a copy in progress and how long it has been going on.
type pendingSince struct {
	pendingCopy
	// MapsSince counts the maps published since the one that asked for the copy.
	MapsSince uint64 `json:"maps_since"`
	// Age is the time since the copy was asked for, as a Go duration.
	Age string `json:"age"`
}

// placementView is where the placement code puts the partition now, given the live nodes.
type placementView struct {
	// LiveNodes are the node records the placement starts from (draining ones hold nothing new).
	LiveNodes []string `json:"live_nodes"`
	// Holders are where the leader aims the partition, the operators' constraints applied;
	// BalanceHolders where the placement alone puts it, before them.
	Holders        []string `json:"holders"`
	BalanceHolders []string `json:"balance_holders"`
	// SameAsMap says the map already aims there: its target, or its holders when the partition
	// is not moving (absent nodes aside).
	SameAsMap bool `json:"same_as_map"`
	// Rule and Steps are rebalance.Explain's: the spread rule and balance targets in force, and
	// the decisions of the placement alone that touched the partition.
	Rule  string   `json:"rule"`
	Steps []string `json:"steps"`
}

func newExplain(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "explain PARTITION",
		Short: "Explain why a partition is where it is, and where the placement puts it now",
		Long: `Explain one partition, given as its number or its ID (5 or partition-5): its entry in
the map (holders, primary epoch, copies in progress since which map and for how long,
target), and where the placement code (rebalance.Compute, as the leader runs it) puts
it now given the nodes that hold a lease (drained ones and operators' weights applied),
with the rule and the decisions that led there.
Nodes whose lease is gone are left out, as without a crash grace period (the default);
absent nodes keep their places.

Then the operators' actions, applied as the leader applies them (the same code), and
what each decided about the partition, with the records behind it:
  move         placed: its node holds the partition, or takes the place of its last
               replica; blocked: its node may not take it (not-live, draining, drained,
               cordoned, or spread: the zone spread rule would break), so the pin waits
  cordon       kept-away: the placement moved it onto the cordoned node, undone;
               gave-way: the node takes a place no usable node can keep
  maintenance  held-back: the placement would move it, and waits; standing: it would not
               move anyway; repair: a holder is gone, and is replaced
  drain        emptying: the partition moves off the drained (or draining) node;
               gave-way: the node keeps it (no node may be used, or maintenance stands)

With -o json:
  {"epoch": 6, "partition": "partition-5", "index": 5,
   "holders": ["node-2", "node-1", "node-3"], "primary_epoch": 2,
   "pending": [{"node": "node-4", "since": 6, "started": "2026-...Z", "attempt": 1,
                "maps_since": 0, "age": "1.2s"}],
   "target": ["node-2", "node-1", "node-4"],
   "moving": true, "from": ["node-3"], "to": ["node-4"],
   "placement": {"live_nodes": ["node-1", "node-2", "node-3", "node-4"],
                 "holders": ["node-2", "node-1", "node-4"],
                 "balance_holders": ["node-2", "node-1", "node-3"], "same_as_map": true,
                 "rule": "3 holders per partition ...", "steps": ["..."]},
   "constraints": [{"constraint": "move", "effect": "placed", "node": "node-4",
                    "why": "pinned to node-4, which takes the place of node-3, its last replica",
                    "records": [{"key": "/clusterkit/default/admin/move/5", "revision": 812,
                                 "kind": "move", "node": "node-4", "partition": 5,
                                 "by": "ops@host-1", "at": "2026-...Z"}]}]}
A pin that waits has "effect": "blocked" and "blocked": "not-live", "draining",
"drained", "cordoned" or "spread".`,
		Args: args(1, "one PARTITION"),
		RunE: action(func(cmd *cobra.Command, a []string) error {
			return g.command(cmd.Context(), func(ctx context.Context, s *session) error {
				p, err := parsePartition(a[0], s.config.PartitionCount)
				if err != nil {
					return err
				}
				snap, err := s.snapshot(ctx)
				if err != nil {
					return err
				}
				m, err := snap.requireMap()
				if err != nil {
					return err
				}
				doc, err := snap.explain(m, p)
				if err != nil {
					return err
				}
				return render(cmd, g, doc, explainTable)
			})
		}),
	}
}

func (snap *snapshot) explain(m *state.Map, p int) (explainDoc, error) {
	e := &m.Partitions[p]
	info := newPartitionInfo(p, e)
	doc := explainDoc{
		Epoch: m.Epoch, Partition: info.Partition, Index: p,
		Holders: info.Holders, PrimaryEpoch: e.PrimaryEpoch, Pending: []pendingSince{}, Target: info.Target,
		Moving: e.Target != nil || len(e.Pending) > 0, From: []string{}, To: []string{},
	}
	for _, pd := range info.Pending {
		doc.Pending = append(doc.Pending, pendingSince{pendingCopy: pd, MapsSince: m.Epoch - min(pd.Since, m.Epoch),
			Age: max(snap.now.Sub(pd.Started), 0).Round(100 * time.Millisecond).String()})
		doc.To = append(doc.To, pd.Node)
	}
	if e.Target != nil {
		for _, h := range e.Holders {
			if !slices.Contains(e.Target, h) {
				doc.From = append(doc.From, h)
			}
		}
	}
	// The placement as the leader would compute it now from the live records. Nodes of the map
	// whose lease is gone count as gone; absent nodes keep their places.
	departed := map[string]bool{}
	for _, id := range snap.leaseGone() {
		departed[id] = true
	}
	ex, err := nextmap.Explain(nextmap.Input{
		Current:           m,
		Nodes:             snap.records,
		Departed:          departed,
		Leader:            m.Leader,
		PartitionCount:    snap.config.PartitionCount,
		ReplicationFactor: snap.config.ReplicationFactor,
		CrashGracePeriod:  math.MaxInt64,
		Admin:             snap.constraints(),
		Now:               snap.now,
	}, p)
	if err != nil {
		return explainDoc{}, stateError("placing %s: %v", partition.ID(p), err)
	}
	// An absent node keeps its place in the placement but not in the map's entry.
	routed := slices.DeleteFunc(slices.Clone(ex.Target), func(id string) bool {
		_, absent := m.Absent[id]
		_, live := snap.records[id]
		return absent && !live
	})
	doc.Placement = placementView{
		LiveNodes:      slices.Sorted(maps.Keys(snap.records)),
		Holders:        ex.Target,
		BalanceHolders: ex.Holders,
		SameAsMap:      slices.Equal(routed, e.Placement()),
		Rule:           ex.Rule,
		Steps:          ex.Steps,
	}
	doc.Constraints = make([]constraintView, 0, len(ex.Notes))
	for _, n := range ex.Notes {
		doc.Constraints = append(doc.Constraints, constraintView{Note: n, Records: snap.adminMatching(func(a state.AdminAction) bool {
			switch n.Constraint {
			case state.AdminMove:
				return a.Kind == state.AdminMove && *a.Partition == p
			case state.AdminMaintenance:
				return a.Kind == state.AdminMaintenance
			}
			return a.Kind == n.Constraint && a.Node == n.Node
		})})
	}
	return doc, nil
}

func explainTable(w io.Writer, doc explainDoc) {
	fmt.Fprintf(w, "Partition:\t%s, in the map of epoch %d\n", doc.Partition, doc.Epoch)
	holders := slices.Clone(doc.Holders)
	holders[0] += " (primary)"
	fmt.Fprintf(w, "Holders:\t%s\n", strings.Join(holders, ", "))
	fmt.Fprintf(w, "Primary epoch:\t%d\n", doc.PrimaryEpoch)
	if !doc.Moving {
		fmt.Fprintf(w, "Moving:\tno\n")
	} else {
		fmt.Fprintf(w, "Moving:\tfrom %s to %s (target %s)\n", list(doc.From), list(doc.To), list(doc.Target))
	}
	for _, p := range doc.Pending {
		fmt.Fprintf(w, "Pending:\t%s, asked by the map of epoch %d (%d maps since), %s ago, attempt %d\n",
			p.Node, p.Since, p.MapsSince, p.Age, p.Attempt)
	}
	where := "where the map already aims it"
	if !doc.Placement.SameAsMap {
		where = "not where the map aims it: the live nodes are not the map's"
	}
	fmt.Fprintf(w, "Placement now:\t%s, %s\n", list(doc.Placement.Holders), where)
	fmt.Fprintf(w, "Live nodes:\t%s\n", list(doc.Placement.LiveNodes))
	fmt.Fprintf(w, "Rule:\t%s\n", doc.Placement.Rule)
	fmt.Fprintf(w, "Steps:\n")
	for _, s := range doc.Placement.Steps {
		fmt.Fprintf(w, "  - %s\n", s)
	}
	if len(doc.Constraints) == 0 {
		fmt.Fprintf(w, "Operator actions:\tnone decides anything about it\n")
		return
	}
	if !slices.Equal(doc.Placement.Holders, doc.Placement.BalanceHolders) {
		fmt.Fprintf(w, "Placement alone:\t%s, before the operators' actions\n", list(doc.Placement.BalanceHolders))
	}
	fmt.Fprintf(w, "Operator actions:\n")
	for _, c := range doc.Constraints {
		effect := c.Effect
		if c.Blocked != "" {
			effect += " (" + c.Blocked + ")"
		}
		fmt.Fprintf(w, "  - %s %s: %s", c.Constraint, effect, c.Why)
		for _, r := range c.Records {
			fmt.Fprintf(w, "; admin/%s/%s by %s at %s", r.Kind, path.Base(r.Key), orDash(r.By), r.At.Format(time.RFC3339))
		}
		fmt.Fprintln(w)
	}
}
