package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/clusterkit-go/clusterkit/internal/partition"
	"github.com/clusterkit-go/clusterkit/internal/state"
)

// partitionsDoc is the document of clusterkit partitions.
type partitionsDoc struct {
	Epoch      uint64          `json:"epoch"`
	Partitions []partitionInfo `json:"partitions"`
}

// partitionInfo is one partition's entry in the map.
type partitionInfo struct {
	Partition string `json:"partition"`
	Index     int    `json:"index"`
	// Holders serve the partition, primary first.
	Holders      []string `json:"holders"`
	PrimaryEpoch uint64   `json:"primary_epoch"`
	// Pending are the nodes copying the partition in.
	Pending []pendingCopy `json:"pending"`
	// Target is where the partition is moving to; empty when it is not moving.
	Target []string `json:"target"`
}

// pendingCopy is a node asked to copy a partition in.
type pendingCopy struct {
	Node string `json:"node"`
	// Since is the epoch of the map that asked for the copy.
	Since   uint64    `json:"since"`
	Started time.Time `json:"started"`
	Attempt int       `json:"attempt"`
}

func newPartitions(g *globals) *cobra.Command {
	var node string
	cmd := &cobra.Command{
		Use:   "partitions [--node ID]",
		Short: "List the partitions: holders, primary epoch, copies in progress, target",
		Long: `List every partition of the map, or with --node the ones the node holds, copies in or
is a target of: its holders (primary first), the epoch at which its primary took the
role, the nodes copying it in (node@epoch of the map that asked), and the placement
it is moving to.

With -o json:
  {"epoch": 5,
   "partitions": [{"partition": "partition-0", "index": 0, "holders": ["node-1", "node-2", "node-3"],
                   "primary_epoch": 2, "pending": [], "target": []},
                  {"partition": "partition-1", "index": 1, "holders": ["node-2", "node-3", "node-1"],
                   "primary_epoch": 2,
                   "pending": [{"node": "node-4", "since": 5, "started": "2026-...Z", "attempt": 1}],
                   "target": ["node-2", "node-3", "node-4"]}]}`,
		Args: args(0, "no argument (the node goes in --node)"),
		RunE: action(func(cmd *cobra.Command, _ []string) error {
			return g.command(cmd.Context(), func(ctx context.Context, s *session) error {
				snap, err := s.snapshot(ctx)
				if err != nil {
					return err
				}
				m, err := snap.requireMap()
				if err != nil {
					return err
				}
				if node != "" {
					_, inMap := m.Nodes[node]
					_, absent := m.Absent[node]
					_, lease := snap.records[node]
					if !inMap && !absent && !lease {
						return stateError("node %q is not in the map of epoch %d and has no lease", node, m.Epoch)
					}
				}
				doc := partitionsDoc{Epoch: m.Epoch, Partitions: []partitionInfo{}}
				for i := range m.Partitions {
					if node == "" || concerns(&m.Partitions[i], node) {
						doc.Partitions = append(doc.Partitions, newPartitionInfo(i, &m.Partitions[i]))
					}
				}
				return render(cmd, g, doc, partitionsTable)
			})
		}),
	}
	cmd.Flags().StringVar(&node, "node", "", "only the partitions this node holds, copies in or is a target of")
	return cmd
}

// concerns reports whether node holds the partition, copies it in or is in its target.
func concerns(e *state.Entry, node string) bool {
	_, pending := e.PendingFor(node)
	return pending || slices.Contains(e.Holders, node) || slices.Contains(e.Target, node)
}

func newPartitionInfo(i int, e *state.Entry) partitionInfo {
	p := partitionInfo{
		Partition:    partition.ID(i),
		Index:        i,
		Holders:      slices.Clone(e.Holders),
		PrimaryEpoch: e.PrimaryEpoch,
		Pending:      []pendingCopy{},
		Target:       []string{},
	}
	for _, pd := range e.Pending {
		p.Pending = append(p.Pending, pendingCopy{Node: pd.Node, Since: pd.Since, Started: pd.Started, Attempt: pd.Attempt})
	}
	if e.Target != nil {
		p.Target = slices.Clone(e.Target)
	}
	return p
}

func partitionsTable(w io.Writer, doc partitionsDoc) {
	fmt.Fprintf(w, "PARTITION\tHOLDERS\tPRIMARY EPOCH\tPENDING\tTARGET\n")
	for _, p := range doc.Partitions {
		fmt.Fprintf(w, "%s\t%s\t%d\t%s\t%s\n", p.Partition, list(p.Holders), p.PrimaryEpoch, pendingList(p.Pending), list(p.Target))
	}
}

// pendingList prints copies as node@since.
func pendingList(ps []pendingCopy) string {
	var out []string
	for _, p := range ps {
		out = append(out, p.Node+"@"+strconv.FormatUint(p.Since, 10))
	}
	return list(out)
}

// parsePartition reads a partition given as its index or its ID (5 or partition-5) and checks
// it against the cluster's partition count.
func parsePartition(arg string, count int) (int, error) {
	i, err := strconv.Atoi(arg)
	if err != nil {
		// The range is checked below, with the message that names it.
		if i, err = partition.Parse(arg, math.MaxInt32); err != nil {
			return 0, usageError("partition %s: want its number or its ID, like 5 or %s", strings.TrimSpace(err.Error()), partition.ID(5))
		}
	}
	if i < 0 || i >= count {
		return 0, usageError("partition %d out of range 0..%d", i, count-1)
	}
	return i, nil
}
