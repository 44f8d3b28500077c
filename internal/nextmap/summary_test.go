package nextmap

import (
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/clusterkit-go/clusterkit/internal/state"
	"github.com/clusterkit-go/clusterkit/pkg/wire"
)

// A join's maps summarised: the map that asks for copies counts them started, the map that
// completes them counts them done and the primaries that moved.
func TestSummary(t *testing.T) {
	first := settled(t, "a", "b")
	if r := Summary(nil, first, nil); r.Changed != 8 || r.CopiesStarted != 0 || r.Nodes != 2 || r.Epoch != first.Epoch || r.Admin != nil {
		t.Fatalf("first map: %+v", r)
	}
	asked := joining(t)
	r := Summary(first, asked, nil)
	if r.CopiesStarted == 0 || r.CopiesStarted != r.Pending || r.CopiesDone != 0 || r.Changed < r.CopiesStarted || r.Cause.Reason != state.ReasonJoin {
		t.Fatalf("the join asks for copies: %+v", r)
	}
	res, err := Next(acked(asked, 0))
	if err != nil {
		t.Fatal(err)
	}
	done := Summary(asked, res.Map, nil)
	moved := 0
	for i := range res.Map.Partitions {
		if res.Map.Partitions[i].Holders[0] != asked.Partitions[i].Holders[0] {
			moved++
		}
	}
	if done.CopiesDone != r.CopiesStarted || done.Pending != 0 || done.CopiesStarted != 0 || done.PrimariesMoved != moved {
		t.Fatalf("the copies complete: %+v after %+v (%d primaries moved)", done, r, moved)
	}
	if same := Summary(res.Map, res.Map, nil); same.Changed != 0 || same.CopiesDone != 0 {
		t.Fatalf("a map over itself: %+v", same)
	}
}

// The actions written and deleted between two maps, as the history lists them.
func TestAdminChanges(t *testing.T) {
	at := t0.Add(time.Minute)
	p5, p6 := 5, 6
	drain := state.AdminAction{Kind: state.AdminDrain, Node: "c", Reason: "disk swap", By: "ops@h1", At: t0}
	cordon := state.AdminAction{Kind: state.AdminCordon, Node: "b", By: "ops@h1", At: t0}
	pinC := state.AdminAction{Kind: state.AdminMove, Node: "c", Partition: &p5, By: "ops@h1", At: t0}
	pinA := state.AdminAction{Kind: state.AdminMove, Node: "a", Partition: &p5, By: "dev@h2", At: at}
	pin6 := state.AdminAction{Kind: state.AdminMove, Node: "a", Partition: &p6, By: "ops@h1", At: t0}
	weight := state.AdminAction{Kind: state.AdminWeight, Node: "a", Weight: 3, By: "ops@h1", At: t0}
	maint := state.AdminAction{Kind: state.AdminMaintenance, Reason: "upgrade", By: "ops@h1", At: t0}
	tests := []struct {
		name        string
		before, now map[string]state.AdminAction
		want        []wire.AdminChange
	}{
		{"nothing changed", map[string]state.AdminAction{"k/drain/c": drain}, map[string]state.AdminAction{"k/drain/c": drain}, []wire.AdminChange{}},
		{"a drain written", nil, map[string]state.AdminAction{"k/drain/c": drain},
			[]wire.AdminChange{{Action: "drain", Kind: "drain", Node: "c", Reason: "disk swap", By: "ops@h1", At: t0}}},
		{"uncordon deletes a drain and a cordon", map[string]state.AdminAction{"k/drain/c": drain, "k/cordon/b": cordon}, nil,
			[]wire.AdminChange{
				{Action: "uncordon", Kind: "cordon", Removed: true, Node: "b", By: "ops@h1", At: t0},
				{Action: "uncordon", Kind: "drain", Removed: true, Node: "c", Reason: "disk swap", By: "ops@h1", At: t0},
			}},
		{"maintenance on, weight and move cleared", map[string]state.AdminAction{"k/move/6": pin6, "k/weight/a": weight},
			map[string]state.AdminAction{"k/maintenance/upgrade": maint},
			[]wire.AdminChange{
				{Action: "maintenance on", Kind: "maintenance", Reason: "upgrade", By: "ops@h1", At: t0},
				{Action: "move --clear", Kind: "move", Removed: true, Node: "a", Partition: "partition-6", By: "ops@h1", At: t0},
				{Action: "weight --clear", Kind: "weight", Removed: true, Node: "a", Weight: 3, By: "ops@h1", At: t0},
			}},
		{"maintenance off", map[string]state.AdminAction{"k/maintenance/upgrade": maint}, map[string]state.AdminAction{},
			[]wire.AdminChange{{Action: "maintenance off", Kind: "maintenance", Removed: true, Reason: "upgrade", By: "ops@h1", At: t0}}},
		{"a pin rewritten in place", map[string]state.AdminAction{"k/move/5": pinC}, map[string]state.AdminAction{"k/move/5": pinA},
			[]wire.AdminChange{{Action: "move", Kind: "move", Node: "a", Partition: "partition-5", By: "dev@h2", At: at}}},
		{"a pin replaced under another key", map[string]state.AdminAction{"k/move/old": pinC}, map[string]state.AdminAction{"k/move/5": pinA},
			[]wire.AdminChange{{Action: "move", Kind: "move", Node: "a", Partition: "partition-5", By: "dev@h2", At: at}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := AdminChanges(tt.before, tt.now)
			if !slices.EqualFunc(got, tt.want, func(a, b wire.AdminChange) bool { return a == b }) {
				t.Fatalf("got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

// A history record lists at most wire.MaxHistoryAdmin actions and counts the others, and cuts
// long texts, so that its size stays bounded whatever the operators wrote.
func TestSummaryBoundsAdmin(t *testing.T) {
	now := map[string]state.AdminAction{}
	long := strings.Repeat("é", 600) // 1200 bytes, a rune of two
	for i := range 25 {
		now[string(rune('a'+i))] = state.AdminAction{Kind: state.AdminMaintenance, Reason: long + string(rune('a'+i)), By: strings.Repeat("x", 3000), At: t0}
	}
	changes := AdminChanges(nil, now)
	r := Summary(nil, settled(t, "a", "b"), changes)
	if len(r.Admin) != wire.MaxHistoryAdmin || r.AdminMore != 25-wire.MaxHistoryAdmin {
		t.Fatalf("%d actions listed, %d more; want %d and %d", len(r.Admin), r.AdminMore, wire.MaxHistoryAdmin, 25-wire.MaxHistoryAdmin)
	}
	for _, c := range r.Admin {
		if len(c.Reason) > maxHistoryReason || len(c.By) > maxHistoryBy || !utf8.ValidString(c.Reason) || !strings.HasSuffix(c.Reason, "...") {
			t.Fatalf("reason of %d bytes (valid UTF-8: %v), by of %d: want at most %d and %d", len(c.Reason), utf8.ValidString(c.Reason), len(c.By), maxHistoryReason, maxHistoryBy)
		}
	}
	changes[0].Node = "changed"
	if r.Admin[0].Node == "changed" {
		t.Fatal("the record shares its actions with the caller's slice")
	}
}

// A map whose only change is an operator's action has the cause admin, about the nodes the
// actions name; a join at the same time comes first.
func TestAdminCause(t *testing.T) {
	cur := settled(t, "a", "b", "c")
	drain := state.AdminAction{Kind: state.AdminDrain, Node: "c", By: "ops@h1", At: t0}
	changes := AdminChanges(nil, map[string]state.AdminAction{"k/drain/c": drain, "k/cordon/c": {Kind: state.AdminCordon, Node: "c"}})
	in := input(cur, nodes("a", "b", "c"))
	in.Admin = ConstraintsOf([]state.AdminAction{drain})
	in.AdminChanges = changes
	r, err := Next(in)
	if err != nil {
		t.Fatal(err)
	}
	if r.Map.Cause.Reason != state.ReasonAdmin || !slices.Equal(r.Map.Cause.Nodes, []string{"c"}) {
		t.Fatalf("cause %+v; want admin about c", r.Map.Cause)
	}
	in.Nodes = nodes("a", "b", "c", "d")
	if r, err = Next(in); err != nil || r.Map.Cause.Reason != state.ReasonJoin {
		t.Fatalf("cause %+v (%v); want the join first", r.Map.Cause, err)
	}
	in.Nodes, in.AdminChanges = nodes("a", "b", "c"), nil
	if r, err = Next(in); err != nil || r.Map.Cause.Reason != state.ReasonRebalance {
		t.Fatalf("cause %+v (%v) without changes; want rebalance", r.Map.Cause, err)
	}
}
