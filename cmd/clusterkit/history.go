package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/spf13/cobra"

	"github.com/clusterkit-go/clusterkit/internal/state"
	"github.com/clusterkit-go/clusterkit/pkg/wire"
)

// maxHistory is the most records history prints at once: the cluster keeps the last 1000.
const maxHistory = 1000

func newHistory(g *globals) *cobra.Command {
	var since uint64
	var limit int
	cmd := &cobra.Command{
		Use:   "history [--since EPOCH] [--limit N]",
		Short: "List the maps published, what each changed and why",
		Long: `List the records the leader writes under history/<epoch> with each map it publishes
(the cluster keeps the last 1000): when and by which leader it was published, why, its
nodes, the partitions it changed and the primaries it moved, the copies it asked for,
completed and left in flight, the time the leader took to compute it and the bytes it
wrote. Without --since, the last --limit maps; with it, the first --limit maps after
that epoch.

With -o json, the document of GET /cluster/history on a node:
  {"records": [{"epoch": 12, "updated_at": "2026-...Z", "leader": "node-1",
                "cause": {"reason": "join", "nodes": ["node-4"]}, "nodes": 4, "changed": 48,
                "primaries_moved": 0, "copies_started": 48, "copies_done": 0, "pending": 48,
                "compute_ms": 0.4, "bytes": 3181},
               {"epoch": 13, ..., "cause": {"reason": "admin", "nodes": ["node-3"]}, ...,
                "admin": [{"action": "drain", "kind": "drain", "node": "node-3",
                           "reason": "disk swap", "by": "ops@host-1", "at": "2026-...Z"}]},
               {"epoch": 16, ..., "cause": {"reason": "admin", "nodes": ["node-3"]}, ...,
                "admin": [{"action": "uncordon", "kind": "drain", "removed": true,
                           "node": "node-3", "reason": "disk swap", "by": "ops@host-1",
                           "at": "2026-...Z"}]}],
   "oldest": 1}                (the oldest epoch kept, 0 when none is)

A map an operator's action caused (cordon, drain, uncordon, maintenance, move, weight) has
the cause "admin". Every record lists under "admin" the actions that came into force or
ended since the map before it, whatever its cause (an action that moves nothing waits for
the next map): the command ("uncordon", "maintenance off", "move --clear" and
"weight --clear" for a record deleted, with "removed": true), what it is about, and who
wrote the record and when (for a deleted record, still its writer: etcd keeps no author
of a deletion). A record lists at most 10 actions; "admin_more" counts the others. The
table shows them in its last column, ACTION.`,
		Args: args(0, "no argument"),
		RunE: action(func(cmd *cobra.Command, _ []string) error {
			if limit < 1 || limit > maxHistory {
				return usageError("--limit %d: want 1 to %d", limit, maxHistory)
			}
			return g.command(cmd.Context(), func(ctx context.Context, s *session) error {
				doc, skipped, err := s.history(ctx, since, cmd.Flags().Changed("since"), limit)
				if err != nil {
					return err
				}
				for _, sk := range skipped {
					fmt.Fprintf(cmd.ErrOrStderr(), "clusterkit: skipping an unreadable record: %s\n", sk)
				}
				return render(cmd, g, doc, historyTable)
			})
		}),
	}
	cmd.Flags().Uint64Var(&since, "since", 0, "list the maps published after this epoch")
	cmd.Flags().IntVar(&limit, "limit", 20, fmt.Sprintf("the most maps to list (1 to %d)", maxHistory))
	return cmd
}

// history reads the records of the maps after since (with after), else the last limit, and the
// oldest epoch kept, at one revision.
func (s *session) history(ctx context.Context, since uint64, after bool, limit int) (wire.History, []string, error) {
	prefix := s.schema.HistoryPrefix()
	end := clientv3.GetPrefixRangeEnd(prefix)
	records := clientv3.OpGet(prefix, clientv3.WithRange(end), clientv3.WithLimit(int64(limit)),
		clientv3.WithSort(clientv3.SortByKey, clientv3.SortDescend))
	if after {
		records = clientv3.OpGet(s.schema.History(since+1), clientv3.WithRange(end), clientv3.WithLimit(int64(limit)))
	}
	resp, err := s.cli.Txn(ctx).Then(records,
		clientv3.OpGet(prefix, clientv3.WithRange(end), clientv3.WithLimit(1), clientv3.WithKeysOnly())).Commit()
	if err != nil {
		return wire.History{}, nil, s.readError("history", err)
	}
	doc := wire.History{Records: []wire.HistoryRecord{}}
	if oldest := resp.Responses[1].GetResponseRange().Kvs; len(oldest) > 0 {
		doc.Oldest, _ = strconv.ParseUint(strings.TrimPrefix(string(oldest[0].Key), prefix), 10, 64)
	}
	var skipped []string
	for _, kv := range resp.Responses[0].GetResponseRange().Kvs {
		var rec wire.HistoryRecord
		if err := json.Unmarshal(kv.Value, &rec); err != nil {
			skipped = append(skipped, fmt.Sprintf("%s: %v", kv.Key, err))
			continue
		}
		doc.Records = append(doc.Records, rec)
	}
	if !after {
		slices.Reverse(doc.Records)
	}
	return doc, skipped, nil
}

func historyTable(w io.Writer, doc wire.History) {
	fmt.Fprintf(w, "EPOCH\tTIME\tLEADER\tCAUSE\tNODES\tCHANGED\tPRIMARIES MOVED\tCOPIES STARTED\tDONE\tPENDING\tCOMPUTE\tBYTES\tACTION\n")
	for _, r := range doc.Records {
		fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%.1fms\t%s\t%s\n", r.Epoch,
			r.UpdatedAt.UTC().Format("2006-01-02T15:04:05.000Z07:00"), orDash(r.Leader),
			causeWord(r.Cause), r.Nodes, r.Changed, r.PrimariesMoved,
			r.CopiesStarted, r.CopiesDone, r.Pending, r.ComputeMillis, size(int64(r.Bytes)), adminChanges(r))
	}
}

// adminChanges prints the operators' actions of a history record on one line, "-" for none:
// "drain node-3 (disk swap) by ops@host-1; uncordon node-2 (ends the cordon written by
// ops@host-1); and 3 more". A deletion has no author of its own: the record's is printed as
// its writer's.
func adminChanges(r wire.HistoryRecord) string {
	if len(r.Admin) == 0 {
		return "-"
	}
	parts := make([]string, 0, len(r.Admin)+1)
	for _, c := range r.Admin {
		s := c.Action
		switch {
		case c.Kind == state.AdminMove:
			s += " " + c.Partition
			if !c.Removed {
				s += " to " + c.Node
			}
		case c.Kind == state.AdminWeight && !c.Removed:
			s += fmt.Sprintf(" %s %d", c.Node, c.Weight)
		case c.Node != "":
			s += " " + c.Node
		}
		switch {
		case c.Removed:
			s += " (ends the " + c.Kind + " written by " + orDash(c.By)
			if c.Reason != "" {
				s += ": " + c.Reason
			}
			s += ")"
		default:
			if c.Reason != "" {
				s += " (" + c.Reason + ")"
			}
			if c.By != "" {
				s += " by " + c.By
			}
		}
		parts = append(parts, s)
	}
	if r.AdminMore > 0 {
		parts = append(parts, fmt.Sprintf("and %d more", r.AdminMore))
	}
	return strings.Join(parts, "; ")
}
