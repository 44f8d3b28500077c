package nextmap

import (
	"maps"
	"slices"
	"unicode/utf8"

	"github.com/clusterkit-go/clusterkit/internal/partition"
	"github.com/clusterkit-go/clusterkit/internal/state"
	"github.com/clusterkit-go/clusterkit/pkg/wire"
)

// Summary is what next changes over prev (nil for the first map): the record a published map
// leaves in the history. admin are the operators' actions that came into force or ended since
// prev (AdminChanges): the record lists the first wire.MaxHistoryAdmin and counts the others.
func Summary(prev, next *state.Map, admin []wire.AdminChange) wire.HistoryRecord {
	r := wire.HistoryRecord{Epoch: next.Epoch, UpdatedAt: next.UpdatedAt, Leader: next.Leader, Cause: next.Cause, Nodes: len(next.Nodes)}
	if len(admin) > 0 {
		n := min(len(admin), wire.MaxHistoryAdmin)
		r.Admin, r.AdminMore = slices.Clone(admin[:n]), len(admin)-n
	}
	for i := range next.Partitions {
		e := &next.Partitions[i]
		r.Pending += len(e.Pending)
		for _, p := range e.Pending {
			if p.Since == next.Epoch {
				r.CopiesStarted++
			}
		}
		if prev == nil || len(prev.Partitions) != len(next.Partitions) {
			r.Changed++
			continue
		}
		o := &prev.Partitions[i]
		if o.Equal(e) {
			continue
		}
		r.Changed++
		if len(o.Holders) > 0 && len(e.Holders) > 0 && o.Holders[0] != e.Holders[0] {
			r.PrimariesMoved++
		}
		for _, p := range o.Pending {
			if slices.Contains(e.Holders, p.Node) {
				r.CopiesDone++
			}
		}
	}
	return r
}

// Bounds of the texts of an action in the history, so that a record stays small whatever the
// operators wrote (a reason may have 1024 bytes, a --by up to the record's 4 KiB).
const (
	maxHistoryReason = 200
	maxHistoryBy     = 128
)

// AdminChanges lists the operators' actions that changed from before to now (both by key): the
// records written since (new, or rewritten with another value), then the records deleted, each
// in key order. A deleted record whose subject has a record written since (a pin to another
// node under another key) is left out: the new record says what happened.
func AdminChanges(before, now map[string]state.AdminAction) []wire.AdminChange {
	var written []state.AdminAction
	for _, k := range slices.Sorted(maps.Keys(now)) {
		if old, ok := before[k]; !ok || !sameAction(old, now[k]) {
			written = append(written, now[k])
		}
	}
	out := make([]wire.AdminChange, 0, len(written))
	for _, a := range written {
		out = append(out, adminChange(a, false))
	}
	for _, k := range slices.Sorted(maps.Keys(before)) {
		if _, ok := now[k]; !ok && !slices.ContainsFunc(written, before[k].SameSubject) {
			out = append(out, adminChange(before[k], true))
		}
	}
	return out
}

func sameAction(a, b state.AdminAction) bool {
	return a.Kind == b.Kind && a.Node == b.Node && a.Weight == b.Weight && a.Reason == b.Reason && a.By == b.By &&
		a.At.Equal(b.At) && (a.Partition == nil) == (b.Partition == nil) && (a.Partition == nil || *a.Partition == *b.Partition)
}

// adminChange is the history's line of action a, written or removed.
func adminChange(a state.AdminAction, removed bool) wire.AdminChange {
	c := wire.AdminChange{Action: a.Kind, Kind: a.Kind, Removed: removed, Node: a.Node, Weight: a.Weight,
		Reason: cut(a.Reason, maxHistoryReason), By: cut(a.By, maxHistoryBy), At: a.At}
	if a.Partition != nil {
		c.Partition = partition.ID(*a.Partition)
	}
	switch a.Kind {
	case state.AdminCordon, state.AdminDrain:
		if removed {
			c.Action = "uncordon"
		}
	case state.AdminMaintenance:
		c.Action = "maintenance on"
		if removed {
			c.Action = "maintenance off"
		}
	case state.AdminMove, state.AdminWeight:
		if removed {
			c.Action += " --clear"
		}
	}
	return c
}

// cut shortens s to at most n bytes, on a rune boundary, marking the cut with "...".
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	i := n - 3
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i] + "..."
}
