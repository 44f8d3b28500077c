package main

import (
	"context"
	"fmt"
	"io"
	"slices"

	"github.com/spf13/cobra"

	"github.com/clusterkit-go/clusterkit/internal/partition"
)

// routeDoc is the document of clusterkit route.
type routeDoc struct {
	// Epoch is the map's.
	Epoch  uint64     `json:"epoch"`
	Routes []keyRoute `json:"routes"`
}

// keyRoute is where one key goes.
type keyRoute struct {
	Key       string `json:"key"`
	Partition string `json:"partition"`
	Index     int    `json:"index"`
	Primary   string `json:"primary"`
	// Replicas are the other holders; Pending the nodes copying the partition in, which are
	// not routed to yet.
	Replicas     []string `json:"replicas"`
	Pending      []string `json:"pending"`
	PrimaryEpoch uint64   `json:"primary_epoch"`
}

func newRoute(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "route KEY...",
		Short: "Show where keys go: partition, primary, replicas",
		Long: `Show where each key goes: its partition, computed as the nodes and the client library
compute it (md5 of the key, modulo the partition count), the partition's primary and
replicas, the nodes copying it in, its primary epoch (the fencing token) and the map's
epoch.

With -o json:
  {"epoch": 5,
   "routes": [{"key": "user:123", "partition": "partition-48", "index": 48, "primary": "node-2",
               "replicas": ["node-3", "node-1"], "pending": [], "primary_epoch": 2}]}`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usageError("want at least one KEY")
			}
			return nil
		},
		RunE: action(func(cmd *cobra.Command, keys []string) error {
			return g.command(cmd.Context(), func(ctx context.Context, s *session) error {
				snap, err := s.snapshot(ctx)
				if err != nil {
					return err
				}
				m, err := snap.requireMap()
				if err != nil {
					return err
				}
				doc := routeDoc{Epoch: m.Epoch, Routes: []keyRoute{}}
				for _, key := range keys {
					i := partition.Index(key, snap.config.PartitionCount)
					e := &m.Partitions[i]
					r := keyRoute{Key: key, Partition: partition.ID(i), Index: i, Primary: e.Holders[0],
						Replicas: slices.Clone(e.Holders[1:]), Pending: []string{}, PrimaryEpoch: e.PrimaryEpoch}
					for _, p := range e.Pending {
						r.Pending = append(r.Pending, p.Node)
					}
					doc.Routes = append(doc.Routes, r)
				}
				return render(cmd, g, doc, routeTable)
			})
		}),
	}
}

func routeTable(w io.Writer, doc routeDoc) {
	fmt.Fprintf(w, "KEY\tPARTITION\tPRIMARY\tREPLICAS\tPENDING\tPRIMARY EPOCH\tMAP EPOCH\n")
	for _, r := range doc.Routes {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%d\t%d\n", r.Key, r.Partition, r.Primary, list(r.Replicas), list(r.Pending), r.PrimaryEpoch, doc.Epoch)
	}
}
