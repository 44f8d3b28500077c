package main

// Writing operators' actions: a write is checked against a snapshot of the cluster and lands in
// a transaction that holds only if the map, the node records and admin/ are still as the
// snapshot read them, so that the check and the write see the same cluster. Deleting an action
// needs no check.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/user"
	"slices"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/spf13/cobra"

	"github.com/clusterkit-go/clusterkit/internal/nextmap"
	"github.com/clusterkit-go/clusterkit/internal/partition"
	"github.com/clusterkit-go/clusterkit/internal/state"
)

// adminRecord is an operator's action under admin/: its key, the revision it was written at and
// the record.
type adminRecord struct {
	Key      string `json:"key"`
	Revision int64  `json:"revision"`
	state.AdminAction
}

// adminDeleted is the document of the commands that delete actions.
type adminDeleted struct {
	// Deleted are the records deleted, as they were; empty when there was none.
	Deleted []adminRecord `json:"deleted"`
	// Revision is the etcd revision of the deletion, 0 when nothing was deleted.
	Revision int64 `json:"revision"`
}

// adminWrite is an action to write, as a command builds it from a snapshot.
type adminWrite struct {
	kind, name string
	action     state.AdminAction
	// effect says what the leader does about it, undo the command that ends it.
	effect, undo string
	// forced are the refusals of the checks that --force overrode.
	forced []string
}

// adminFlags are the flags of the commands that write.
type adminFlags struct {
	reason string
	by     string
	force  bool
}

// register adds the flags to cmd, with the help of --reason, and of --force unless it is "".
func (f *adminFlags) register(cmd *cobra.Command, reason, force string) {
	cmd.Flags().StringVar(&f.reason, "reason", "", reason)
	cmd.Flags().StringVar(&f.by, "by", "", "who writes the action (default: user@host of this process; with --user, the etcd user is added)")
	if force != "" {
		cmd.Flags().BoolVar(&f.force, "force", false, force)
	}
}

// refuse records a check of the cluster's state that failed: the command's error, or with
// --force a warning printed once the action is written. why "" passes.
func (f *adminFlags) refuse(w *adminWrite, why string) error {
	switch {
	case why == "":
		return nil
	case !f.force:
		return refusedError("refused: %s; --force writes it anyway", why)
	}
	w.forced = append(w.forced, why)
	return nil
}

// author names who writes an action: --by, else the user@host of this process; with --user, the
// etcd user too, the one name etcd checked: "ops@host-1 (etcd user admin)".
func (g *globals) author(by string) string {
	by = strings.TrimSpace(by)
	if by == "" {
		by = operator()
	}
	if user, _, _ := strings.Cut(g.user, ":"); user != "" {
		by += " (etcd user " + user + ")"
	}
	return by
}

// operator names who runs the command: user@host.
func operator() string {
	name := os.Getenv("USER")
	if u, err := user.Current(); err == nil && u.Username != "" {
		name = u.Username
	}
	if name == "" {
		name = "unknown"
	}
	host, err := os.Hostname()
	if err != nil || host == "" {
		return name
	}
	return name + "@" + host
}

// maxReason bounds a reason, as state.AdminAction.Check bounds a maintenance's.
const maxReason = 1024

// checkReason trims the reason of --reason and checks its length.
func checkReason(reason string, required bool) (string, error) {
	reason = strings.TrimSpace(reason)
	switch {
	case reason == "" && required:
		return "", usageError("--reason: want a reason, like --reason \"kernel upgrade\"")
	case len(reason) > maxReason:
		return "", usageError("--reason: %d bytes, more than %d", len(reason), maxReason)
	}
	return reason, nil
}

// maintenanceName names the record of a maintenance reason: a slug of the reason for etcdctl
// readers and a hash of it, so that the same reason twice is one record.
func maintenanceName(reason string) string {
	sum := sha256.Sum256([]byte(reason))
	var b strings.Builder
	gap := false
	for _, r := range strings.ToLower(reason) {
		if b.Len() >= 40 {
			break
		}
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			if gap && b.Len() > 0 {
				b.WriteByte('-')
			}
			b.WriteRune(r)
			gap = false
		} else {
			gap = true
		}
	}
	if b.Len() > 0 {
		b.WriteByte('-')
	}
	b.WriteString(hex.EncodeToString(sum[:4]))
	return b.String()
}

// constraints are the actions in force as the leader applies them.
func (snap *snapshot) constraints() nextmap.Constraints {
	actions := make([]state.AdminAction, len(snap.admin))
	for i, r := range snap.admin {
		actions[i] = r.AdminAction
	}
	return nextmap.ConstraintsOf(actions)
}

// live reports whether node holds a lease and is not stopping.
func (snap *snapshot) live(node string) bool {
	rec, ok := snap.records[node]
	return ok && rec.State != state.NodeLeaving
}

// usable lists the live nodes the placement may give partitions to under c (not draining,
// drained or cordoned), and says why each other live node is not usable.
func (snap *snapshot) usable(c nextmap.Constraints) (usable, unusable []string) {
	for _, id := range slices.Sorted(maps.Keys(snap.records)) {
		switch {
		case !snap.live(id):
		case snap.records[id].State == state.NodeDraining:
			unusable = append(unusable, id+" draining")
		case c.Drained[id]:
			unusable = append(unusable, id+" drained")
		case c.Cordoned[id]:
			unusable = append(unusable, id+" cordoned")
		default:
			usable = append(usable, id)
		}
	}
	return usable, unusable
}

// checkKnown fails unless node is in the map (absent nodes included) or has a record.
func (snap *snapshot) checkKnown(node string) error {
	_, inMap := snap.m.Nodes[node]
	_, absent := snap.m.Absent[node]
	_, rec := snap.records[node]
	if inMap || absent || rec {
		return nil
	}
	known := map[string]bool{}
	for _, id := range snap.m.Members() {
		known[id] = true
	}
	for id := range snap.m.Absent {
		known[id] = true
	}
	for id := range snap.records {
		known[id] = true
	}
	return refusedError("node %q is not in the map of epoch %d and has no record under nodes/ (known nodes: %s)",
		node, snap.m.Epoch, list(slices.Sorted(maps.Keys(known))))
}

// unusableRefusal says why taking node out of the usable nodes (a drain or a cordon) would leave
// too few: fewer than min(live nodes, replication factor). "" when it would not.
func (snap *snapshot) unusableRefusal(kind, node string) string {
	usable, unusable := snap.usable(snap.constraints())
	if !slices.Contains(usable, node) {
		return "" // not usable already: nothing changes
	}
	live := 0
	for id := range snap.records {
		if snap.live(id) {
			live++
		}
	}
	rf := snap.config.ReplicationFactor
	need := min(live, rf)
	left := slices.DeleteFunc(slices.Clone(usable), func(id string) bool { return id == node })
	if len(left) >= need {
		return ""
	}
	why := fmt.Sprintf("%s %s would leave %d usable node%s (%s) of %d live, fewer than the %d the placement needs (replication factor %d, or every live node when fewer)",
		kind, node, len(left), plural(len(left)), list(left), live, need, rf)
	if len(unusable) > 0 {
		why += "; not usable already: " + strings.Join(unusable, ", ")
	}
	return why
}

// moveRefusal says why pinning partition p to node is refused: the node may not take it, or the
// only copy of the partition would move. "" when nothing does.
func (snap *snapshot) moveRefusal(p int, node string) string {
	c := snap.constraints()
	rec, lease := snap.records[node]
	switch {
	case !lease:
		return fmt.Sprintf("node %s has no lease (no record under nodes/): the leader ignores a pin to a node that is not live", node)
	case rec.State == state.NodeLeaving:
		return fmt.Sprintf("node %s is leaving the cluster", node)
	case rec.State == state.NodeDraining:
		return fmt.Sprintf("node %s is draining: it is stopping and hands its partitions over", node)
	case c.Drained[node]:
		return fmt.Sprintf("node %s is drained, to hold no partition (clusterkit uncordon %s ends that)", node, node)
	case c.Cordoned[node]:
		return fmt.Sprintf("node %s is cordoned, to take no partition (clusterkit uncordon %s ends that)", node, node)
	}
	h := snap.m.Partitions[p].Holders
	if snap.config.ReplicationFactor == 1 && len(h) == 1 && h[0] != node {
		return fmt.Sprintf("%s has a single holder, %s, and the replication factor is 1: the move copies it to %s and %s releases it, so with R=1 the copy on %s would be the only one",
			partition.ID(p), h[0], node, h[0], node)
	}
	return ""
}

// unchanged are the guards of a write checked against snap: the map has not been republished,
// and no node or admin record has been written since snap was read.
func (snap *snapshot) unchanged(s *session) []clientv3.Cmp {
	return []clientv3.Cmp{
		clientv3.Compare(clientv3.ModRevision(s.schema.Partitions()), "=", snap.mapRevision),
		clientv3.Compare(clientv3.ModRevision(s.schema.NodesPrefix()), "<", snap.revision+1).WithPrefix(),
		clientv3.Compare(clientv3.ModRevision(s.schema.AdminPrefix()), "<", snap.revision+1).WithPrefix(),
	}
}

// write checks an action against a snapshot of the cluster with build and writes it. When the
// cluster changed between the check and the write it checks and writes again, once.
func (g *globals) write(cmd *cobra.Command, f *adminFlags, build func(snap *snapshot) (adminWrite, error)) error {
	by := g.author(f.by)
	return g.command(cmd.Context(), func(ctx context.Context, s *session) error {
		for attempt := 1; ; attempt++ {
			snap, err := s.snapshot(ctx)
			if err != nil {
				return err
			}
			if _, err := snap.requireMap(); err != nil {
				return err
			}
			w, err := build(snap)
			if err != nil {
				return err
			}
			w.action.Kind, w.action.By, w.action.At = w.kind, by, time.Now().UTC().Truncate(time.Millisecond)
			rec, replaced, ok, err := s.put(ctx, snap, w)
			switch {
			case err != nil:
				return err
			case ok:
				snap.warnSkipped(cmd.ErrOrStderr())
				if err := render(cmd, g, rec, func(out io.Writer, rec adminRecord) { g.writtenTable(out, rec, w, replaced) }); err != nil {
					return err
				}
				for _, why := range w.forced {
					fmt.Fprintf(cmd.ErrOrStderr(), "clusterkit: warning: %s; written anyway (--force)\n", why)
				}
				return nil
			case attempt == 2:
				return stateError("the cluster changed between the check and the write, twice (a map was published, or a node or admin record written; last checked against the map of epoch %d at revision %d): nothing was written; run the command again",
					snap.m.Epoch, snap.revision)
			}
		}
	})
}

// put writes w in place of the records about the same subject, if the cluster is as snap read
// it; ok is false when it is not. It returns the record written and those it replaced.
func (s *session) put(ctx context.Context, snap *snapshot, w adminWrite) (rec adminRecord, replaced []adminRecord, ok bool, err error) {
	value, err := json.Marshal(w.action)
	if err != nil {
		return rec, nil, false, err
	}
	// The leader's own check, on the bytes it will read.
	if _, err := state.DecodeAdmin(value, s.config.PartitionCount); err != nil {
		return rec, nil, false, usageError("the record would not be valid: %v", err)
	}
	rec = adminRecord{Key: s.schema.Admin(w.kind, w.name), AdminAction: w.action}
	ops := []clientv3.Op{clientv3.OpPut(rec.Key, string(value))}
	for _, old := range snap.admin {
		same := old.SameSubject(w.action)
		if old.Key == rec.Key || same {
			replaced = append(replaced, old)
		}
		if old.Key != rec.Key && same {
			ops = append(ops, clientv3.OpDelete(old.Key))
		}
	}
	if s.g.beforeWrite != nil {
		s.g.beforeWrite()
	}
	resp, err := s.cli.Txn(ctx).If(snap.unchanged(s)...).Then(ops...).Commit()
	if err != nil {
		return rec, nil, false, s.writeError(rec.Key, err)
	}
	rec.Revision = resp.Header.Revision
	return rec, replaced, resp.Succeeded, nil
}

func (g *globals) writtenTable(out io.Writer, rec adminRecord, w adminWrite, replaced []adminRecord) {
	fmt.Fprintf(out, "Wrote %s at revision %d:\n  %s\n", rec.Key, rec.Revision, recordJSON(rec.AdminAction))
	for _, old := range replaced {
		fmt.Fprintf(out, "Replaces:\t%s %s\n", old.Key, recordJSON(old.AdminAction))
	}
	fmt.Fprintf(out, "Effect:\t%s\n", w.effect)
	fmt.Fprintf(out, "See it:\t%s\n", g.etcdctl("get", rec.Key))
	fmt.Fprintf(out, "Undo:\t%s\n", w.undo)
}

// remove deletes the records match picks from a snapshot of the cluster. note, when not "",
// is printed after what was deleted.
func (g *globals) remove(cmd *cobra.Command, match func(snap *snapshot) (recs []adminRecord, none, note string, err error)) error {
	return g.command(cmd.Context(), func(ctx context.Context, s *session) error {
		snap, err := s.snapshot(ctx)
		if err != nil {
			return err
		}
		snap.warnSkipped(cmd.ErrOrStderr())
		recs, none, note, err := match(snap)
		if err != nil {
			return err
		}
		doc := adminDeleted{Deleted: []adminRecord{}}
		if len(recs) > 0 {
			ops := make([]clientv3.Op, len(recs))
			for i, r := range recs {
				ops[i] = clientv3.OpDelete(r.Key, clientv3.WithPrevKV())
			}
			resp, err := s.cli.Txn(ctx).Then(ops...).Commit()
			if err != nil {
				return s.writeError(recs[0].Key, err)
			}
			doc.Revision = resp.Header.Revision
			for _, r := range resp.Responses {
				for _, kv := range r.GetResponseDeleteRange().PrevKvs {
					var a state.AdminAction
					// What was there is reported as it was, readable or not.
					_ = json.Unmarshal(kv.Value, &a)
					doc.Deleted = append(doc.Deleted, adminRecord{Key: string(kv.Key), Revision: kv.ModRevision, AdminAction: a})
				}
			}
		}
		return render(cmd, g, doc, func(out io.Writer, doc adminDeleted) {
			if len(doc.Deleted) == 0 {
				fmt.Fprintf(out, "Nothing to delete: %s.\n", none)
			}
			for _, r := range doc.Deleted {
				fmt.Fprintf(out, "Deleted %s at revision %d:\n  %s\n", r.Key, doc.Revision, recordJSON(r.AdminAction))
			}
			if note != "" {
				fmt.Fprintln(out, note)
			}
			fmt.Fprintf(out, "See what stands:\t%s\n", g.etcdctl("get", "--prefix", s.schema.AdminPrefix()))
		})
	})
}

// writeError explains a write to etcd that failed.
func (s *session) writeError(key string, err error) error {
	user, _, _ := strings.Cut(s.g.user, ":")
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		err = fmt.Errorf("write %s to etcd at %s: no answer within %s %v; it may have been written: check with %s",
			key, s.g.where(), s.g.source("command-timeout"), s.g.commandTimeout, s.g.etcdctl("get", key))
	case errors.Is(err, rpctypes.ErrPermissionDenied):
		err = fmt.Errorf("etcd user %q may not write %s: its role needs readwrite on %s", user, key, s.schema.AdminPrefix())
	default:
		err = fmt.Errorf("write %s to etcd at %s: %w", key, s.g.where(), err)
	}
	return &exitError{status: exitEtcd, err: err}
}

// etcdctl prints the etcdctl command that runs args against the same etcd (a password is left
// for etcdctl to ask).
func (g *globals) etcdctl(args ...string) string {
	cmd := []string{"etcdctl", "--endpoints=" + g.where()}
	for _, f := range []struct{ flag, v string }{{"cacert", g.cacert}, {"cert", g.cert}, {"key", g.key}} {
		if f.v != "" {
			cmd = append(cmd, "--"+f.flag+"="+f.v)
		}
	}
	if g.user != "" {
		user, _, _ := strings.Cut(g.user, ":")
		cmd = append(cmd, "--user="+user)
	}
	return strings.Join(append(cmd, args...), " ")
}

// recordJSON prints a record as etcd holds it.
func recordJSON(a state.AdminAction) string {
	b, err := json.Marshal(a)
	if err != nil {
		return err.Error()
	}
	return string(b)
}

// adminSummary prints the actions in force on one line, "-" for none.
func adminSummary(recs []adminRecord) string {
	var drained, cordoned, reasons, pins, weights []string
	for _, r := range recs {
		switch a := r.AdminAction; a.Kind {
		case state.AdminDrain:
			drained = append(drained, a.Node)
		case state.AdminCordon:
			cordoned = append(cordoned, a.Node)
		case state.AdminMaintenance:
			reasons = append(reasons, fmt.Sprintf("%q", a.Reason))
		case state.AdminMove:
			pins = append(pins, fmt.Sprintf("%s on %s", partition.ID(*a.Partition), a.Node))
		case state.AdminWeight:
			weights = append(weights, fmt.Sprintf("%s=%d", a.Node, a.Weight))
		}
	}
	var parts []string
	for _, p := range []struct {
		what string
		ids  []string
	}{{"drained", drained}, {"cordoned", cordoned}, {"maintenance", reasons}, {"pinned", pins}, {"weight", weights}} {
		if len(p.ids) > 0 {
			slices.Sort(p.ids)
			parts = append(parts, p.what+" "+strings.Join(slices.Compact(p.ids), ", "))
		}
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, "; ")
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}
