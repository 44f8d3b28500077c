package main

// The commands of operators' actions: cordon, uncordon, drain, maintenance, move and weight
// write and delete records under admin/<kind>/<name>, which the leader applies to the maps it
// publishes until they are deleted (internal/nextmap.Constraints says how).

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/clusterkit-go/clusterkit/internal/keys"
	"github.com/clusterkit-go/clusterkit/internal/partition"
	"github.com/clusterkit-go/clusterkit/internal/state"
	"github.com/clusterkit-go/clusterkit/pkg/rebalance"
)

// adminWriteHelp is the part of every writing command's help about how it writes.
const adminWriteHelp = `A NODE must be in the current map or have a record under nodes/ (a live lease), a
PARTITION within the partition count: anything else is refused, --force or not.

The action is checked against the cluster as read from etcd, then written in a
transaction that holds only if no map was published and no node or admin record was
written in between; when something was, it is checked and written again, once. The
record carries who wrote it (--by, by default user@host, with the etcd user of --user
when given) and when. The command prints
what it wrote, the etcdctl command that shows it and the command that undoes it.

With -o json, the record written, with its key and revision:
  {"key": "/clusterkit/default/admin/drain/node-3", "revision": 812, "kind": "drain",
   "node": "node-3", "reason": "disk swap", "by": "ops@host-1", "at": "2026-...Z"}`

// adminDeleteHelp is the part of every deleting command's help about its output.
const adminDeleteHelp = `Deleting needs no check. With -o json, the records deleted and the revision of the
deletion (0 when there was nothing to delete):
  {"deleted": [{"key": "/clusterkit/default/admin/drain/node-3", "revision": 812,
                "kind": "drain", "node": "node-3", "by": "ops@host-1", "at": "2026-...Z"}],
   "revision": 830}`

func newCordon(g *globals) *cobra.Command {
	return newNodeAction(g, state.AdminCordon, "Give a node no partition another node can keep", `Cordon NODE: the leader gives it no partition that another node can keep. It keeps
what it holds and may still take the place of a lost holder; a join may still take
partitions from it. clusterkit uncordon NODE ends it.

Refused when it would leave fewer usable nodes (live, not draining, drained or
cordoned) than the replication factor, or than the live nodes when they are fewer;
--force writes it anyway.`,
		func(node string) string {
			return node + " takes no partition another node can keep; it keeps what it holds"
		})
}

func newDrain(g *globals) *cobra.Command {
	return newNodeAction(g, state.AdminDrain, "Move every partition off a node, and keep it empty", `Drain NODE: the leader gives it no partition, and moves what it holds to the other
nodes by handoff (it serves each partition until the copy is done). The node stays in
the cluster, empty, until clusterkit uncordon NODE.

Refused when it would leave fewer usable nodes (live, not draining, drained or
cordoned) than the replication factor, or than the live nodes when they are fewer;
--force writes it anyway.`,
		func(node string) string {
			return fmt.Sprintf("%s is given no partition: the leader moves what it holds to the other nodes, by handoff (clusterkit partitions --node %s shows what is left)", node, node)
		})
}

// newNodeAction is cordon or drain.
func newNodeAction(g *globals, kind, short, long string, effect func(node string) string) *cobra.Command {
	var f adminFlags
	cmd := &cobra.Command{
		Use:   kind + " NODE [--reason R] [--force]",
		Short: short,
		Long:  long + "\n\n" + adminWriteHelp,
		Args:  args(1, "one NODE"),
		RunE: action(func(cmd *cobra.Command, a []string) error {
			node := a[0]
			if err := keys.ValidNodeID(node); err != nil {
				return usageError("%v", err)
			}
			reason, err := checkReason(f.reason, false)
			if err != nil {
				return err
			}
			return g.write(cmd, &f, func(snap *snapshot) (adminWrite, error) {
				w := adminWrite{kind: kind, name: node, action: state.AdminAction{Node: node, Reason: reason},
					effect: effect(node), undo: "clusterkit uncordon " + node}
				if err := snap.checkKnown(node); err != nil {
					return w, err
				}
				return w, f.refuse(&w, snap.unusableRefusal(kind, node))
			})
		}),
	}
	f.register(cmd, "why, for the record and the operators after you",
		"write it even when it leaves fewer usable nodes than the placement needs")
	return cmd
}

func newUncordon(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "uncordon NODE",
		Short: "End a node's cordon and drain",
		Long: `Delete the cordon and drain records of NODE (whatever their names under admin/): the
leader may give it partitions again, and rebalances onto it.

` + adminDeleteHelp,
		Args: args(1, "one NODE"),
		RunE: action(func(cmd *cobra.Command, a []string) error {
			node := a[0]
			if err := keys.ValidNodeID(node); err != nil {
				return usageError("%v", err)
			}
			return g.remove(cmd, func(snap *snapshot) ([]adminRecord, string, string, error) {
				recs := snap.adminMatching(func(a state.AdminAction) bool {
					return (a.Kind == state.AdminCordon || a.Kind == state.AdminDrain) && a.Node == node
				})
				return recs, fmt.Sprintf("%s is neither cordoned nor drained", node), "", nil
			})
		}),
	}
}

func newMaintenance(g *globals) *cobra.Command {
	m := &cobra.Command{
		Use:   "maintenance",
		Short: "Hold placement still while operators work: on, off, list",
		Long: `While any maintenance stands, a partition's placement changes only when one of its
nodes is gone: lost holders are replaced; joins, drains and rebalancing wait; copies
already in flight finish. Maintenances stack: each reason is a record of its own, under
admin/maintenance/<a slug and a hash of the reason>, and placement resumes when the last
is off.`,
	}
	var on adminFlags
	onCmd := &cobra.Command{
		Use:   "on --reason TEXT",
		Short: "Start a maintenance, for a reason",
		Long: `Start a maintenance for the reason given. The same reason twice is one record (the
second write replaces the first); another reason is another maintenance.

` + adminWriteHelp,
		Args: args(0, "no argument (the reason goes in --reason)"),
		RunE: action(func(cmd *cobra.Command, _ []string) error {
			reason, err := checkReason(on.reason, true)
			if err != nil {
				return err
			}
			return g.write(cmd, &on, func(snap *snapshot) (adminWrite, error) {
				return adminWrite{kind: state.AdminMaintenance, name: maintenanceName(reason),
					action: state.AdminAction{Reason: reason},
					effect: "while any maintenance stands, a partition's placement changes only when one of its nodes is gone: joins, drains and rebalancing wait",
					undo:   "clusterkit maintenance off --reason " + strconv.Quote(reason)}, nil
			})
		}),
	}
	on.register(onCmd, "why (required): each reason is a maintenance of its own", "")

	var reason string
	var all bool
	offCmd := &cobra.Command{
		Use:   "off --reason TEXT | --all",
		Short: "End the maintenance of a reason, or every maintenance",
		Long: `End the maintenance of the reason given (the same text as it was started with), or
with --all every maintenance. The command says which maintenances still stand.

` + adminDeleteHelp,
		Args: args(0, "no argument (the reason goes in --reason)"),
		RunE: action(func(cmd *cobra.Command, _ []string) error {
			if all == (reason != "") {
				return usageError("want --reason TEXT or --all")
			}
			r, err := checkReason(reason, !all)
			if err != nil {
				return err
			}
			return g.remove(cmd, func(snap *snapshot) ([]adminRecord, string, string, error) {
				recs := snap.adminMatching(func(a state.AdminAction) bool {
					return a.Kind == state.AdminMaintenance && (all || a.Reason == r)
				})
				none := fmt.Sprintf("no maintenance has the reason %q", r)
				if all {
					none = "no maintenance stands"
				}
				left := snap.adminMatching(func(a state.AdminAction) bool {
					return a.Kind == state.AdminMaintenance && !all && a.Reason != r
				})
				note := "Maintenance:\tnone stands: placement follows the cluster again"
				if len(left) > 0 {
					var reasons []string
					for _, l := range left {
						reasons = append(reasons, strconv.Quote(l.Reason))
					}
					note = fmt.Sprintf("Maintenance:\tstill standing: %s", strings.Join(reasons, ", "))
				}
				return recs, none, note, nil
			})
		}),
	}
	offCmd.Flags().StringVar(&reason, "reason", "", "the reason of the maintenance to end")
	offCmd.Flags().BoolVar(&all, "all", false, "end every maintenance")

	listCmd := &cobra.Command{
		Use:   "list",
		Short: "List the maintenances that stand",
		Long: `List the maintenances that stand: the name of each record, who started it, when, and
why.

With -o json:
  {"maintenance": [{"key": "/clusterkit/default/admin/maintenance/kernel-upgrade-5d41402a",
                    "revision": 815, "kind": "maintenance", "reason": "kernel upgrade",
                    "by": "ops@host-1", "at": "2026-...Z"}]}`,
		Args: args(0, "no argument"),
		RunE: action(func(cmd *cobra.Command, _ []string) error {
			return g.command(cmd.Context(), func(ctx context.Context, s *session) error {
				snap, err := s.snapshot(ctx)
				if err != nil {
					return err
				}
				snap.warnSkipped(cmd.ErrOrStderr())
				doc := maintenanceDoc{Maintenance: snap.adminMatching(func(a state.AdminAction) bool { return a.Kind == state.AdminMaintenance })}
				return render(cmd, g, doc, func(w io.Writer, doc maintenanceDoc) {
					if len(doc.Maintenance) == 0 {
						fmt.Fprintln(w, "No maintenance stands.")
						return
					}
					fmt.Fprintf(w, "NAME\tBY\tAT\tREASON\n")
					for _, r := range doc.Maintenance {
						fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", strings.TrimPrefix(r.Key, s.schema.Admin(state.AdminMaintenance, "")),
							orDash(r.By), r.At.Format(time.RFC3339), r.Reason)
					}
				})
			})
		}),
	}
	m.AddCommand(onCmd, offCmd, listCmd)
	return m
}

// maintenanceDoc is the document of clusterkit maintenance list.
type maintenanceDoc struct {
	Maintenance []adminRecord `json:"maintenance"`
}

func newMove(g *globals) *cobra.Command {
	var f adminFlags
	var to string
	var clear bool
	cmd := &cobra.Command{
		Use:   "move PARTITION --to NODE [--reason R] [--force] | --clear",
		Short: "Pin a partition to a node, or end the pin",
		Long: `Pin PARTITION (5 or partition-5) to NODE: the leader puts the node among its holders,
in place of its last replica, by handoff, as long as the node is live, not draining,
drained or cordoned, and the partition's holders keep to the zone spread rule with it
(otherwise the pin waits; clusterkit explain PARTITION says why); --clear ends the pin
(the placement may then move it back).

Refused when NODE is not live, is draining, drained or cordoned, or when the
replication factor is 1 and the move would take the partition from its only holder
(the copy on NODE would then be the only one); --force writes it anyway. An unknown
node or a partition out of range is always refused.

` + adminWriteHelp + `

With --clear: ` + adminDeleteHelp,
		Args: args(1, "one PARTITION"),
		RunE: action(func(cmd *cobra.Command, a []string) error {
			if clear == (to != "") {
				return usageError("want --to NODE or --clear")
			}
			if clear {
				if f.reason != "" || f.force {
					return usageError("--clear takes no --reason or --force")
				}
				return g.remove(cmd, func(snap *snapshot) ([]adminRecord, string, string, error) {
					p, err := parsePartition(a[0], snap.config.PartitionCount)
					if err != nil {
						return nil, "", "", err
					}
					recs := snap.adminMatching(func(a state.AdminAction) bool { return a.Kind == state.AdminMove && *a.Partition == p })
					return recs, partition.ID(p) + " is not pinned", "", nil
				})
			}
			if err := keys.ValidNodeID(to); err != nil {
				return usageError("--to: %v", err)
			}
			reason, err := checkReason(f.reason, false)
			if err != nil {
				return err
			}
			return g.write(cmd, &f, func(snap *snapshot) (adminWrite, error) {
				p, err := parsePartition(a[0], snap.config.PartitionCount)
				if err != nil {
					return adminWrite{}, err
				}
				effect := fmt.Sprintf("the leader puts %s on %s, in place of its last replica, by handoff (clusterkit explain %d shows it)", partition.ID(p), to, p)
				if h := snap.m.Partitions[p].Holders; slices.Contains(h, to) {
					effect = fmt.Sprintf("%s holds %s already: the pin keeps it there", to, partition.ID(p))
				}
				w := adminWrite{kind: state.AdminMove, name: strconv.Itoa(p), action: state.AdminAction{Node: to, Partition: &p, Reason: reason},
					effect: effect, undo: fmt.Sprintf("clusterkit move %d --clear", p)}
				if err := snap.checkKnown(to); err != nil {
					return w, err
				}
				return w, f.refuse(&w, snap.moveRefusal(p, to))
			})
		}),
	}
	cmd.Flags().StringVar(&to, "to", "", "the node to pin the partition to")
	cmd.Flags().BoolVar(&clear, "clear", false, "end the partition's pin")
	f.register(cmd, "why, for the record and the operators after you",
		"write it even when the node may not take the partition now, or the move takes its only copy")
	return cmd
}

func newWeight(g *globals) *cobra.Command {
	var f adminFlags
	var clear bool
	cmd := &cobra.Command{
		Use:   "weight NODE N [--reason R] | NODE --clear",
		Short: "Set a node's weight in placement, or end it",
		Long: fmt.Sprintf(`Set NODE's weight in placement to N (1 to %d), in place of the weight it registered
with: a node of weight 2 is given about twice the partitions of a node of weight 1.
--clear ends it: the node's own weight counts again.

`, rebalance.MaxWeight) + adminWriteHelp + `

With --clear: ` + adminDeleteHelp,
		Args: func(_ *cobra.Command, a []string) error {
			if clear && len(a) != 1 || !clear && len(a) != 2 {
				return usageError("want NODE and N, or NODE --clear; got %d arguments", len(a))
			}
			return nil
		},
		RunE: action(func(cmd *cobra.Command, a []string) error {
			node := a[0]
			if err := keys.ValidNodeID(node); err != nil {
				return usageError("%v", err)
			}
			if clear {
				if f.reason != "" {
					return usageError("--clear takes no --reason")
				}
				return g.remove(cmd, func(snap *snapshot) ([]adminRecord, string, string, error) {
					recs := snap.adminMatching(func(a state.AdminAction) bool { return a.Kind == state.AdminWeight && a.Node == node })
					return recs, node + " has no weight set by an operator", "", nil
				})
			}
			n, err := strconv.Atoi(a[1])
			if err != nil || n < 1 || n > rebalance.MaxWeight {
				return usageError("weight %q: want an integer from 1 to %d", a[1], rebalance.MaxWeight)
			}
			reason, err := checkReason(f.reason, false)
			if err != nil {
				return err
			}
			return g.write(cmd, &f, func(snap *snapshot) (adminWrite, error) {
				own := 1
				if rec, ok := snap.records[node]; ok {
					own = weight(rec.Weight)
				} else if rec, ok := snap.m.Nodes[node]; ok {
					own = weight(rec.Weight)
				}
				w := adminWrite{kind: state.AdminWeight, name: node, action: state.AdminAction{Node: node, Weight: n, Reason: reason},
					effect: fmt.Sprintf("%s counts with weight %d in placement, in place of its own %d", node, n, own),
					undo:   fmt.Sprintf("clusterkit weight %s --clear", node)}
				return w, snap.checkKnown(node)
			})
		}),
	}
	cmd.Flags().BoolVar(&clear, "clear", false, "end the node's weight set by an operator")
	f.register(cmd, "why, for the record and the operators after you", "")
	return cmd
}

// adminMatching lists the actions in force that match.
func (snap *snapshot) adminMatching(match func(state.AdminAction) bool) []adminRecord {
	out := []adminRecord{}
	for _, r := range snap.admin {
		if match(r.AdminAction) {
			out = append(out, r)
		}
	}
	return out
}
