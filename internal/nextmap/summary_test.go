package nextmap

import (
	"testing"

	"github.com/clusterkit-go/clusterkit/internal/state"
)

// A join's maps summarised: the map that asks for copies counts them started, the map that
// completes them counts them done and the primaries that moved.
func TestSummary(t *testing.T) {
	first := settled(t, "a", "b")
	if r := Summary(nil, first); r.Changed != 8 || r.CopiesStarted != 0 || r.Nodes != 2 || r.Epoch != first.Epoch {
		t.Fatalf("first map: %+v", r)
	}
	asked := joining(t)
	r := Summary(first, asked)
	if r.CopiesStarted == 0 || r.CopiesStarted != r.Pending || r.CopiesDone != 0 || r.Changed < r.CopiesStarted || r.Cause.Reason != state.ReasonJoin {
		t.Fatalf("the join asks for copies: %+v", r)
	}
	res, err := Next(acked(asked, 0))
	if err != nil {
		t.Fatal(err)
	}
	done := Summary(asked, res.Map)
	moved := 0
	for i := range res.Map.Partitions {
		if res.Map.Partitions[i].Holders[0] != asked.Partitions[i].Holders[0] {
			moved++
		}
	}
	if done.CopiesDone != r.CopiesStarted || done.Pending != 0 || done.CopiesStarted != 0 || done.PrimariesMoved != moved {
		t.Fatalf("the copies complete: %+v after %+v (%d primaries moved)", done, r, moved)
	}
	if same := Summary(res.Map, res.Map); same.Changed != 0 || same.CopiesDone != 0 {
		t.Fatalf("a map over itself: %+v", same)
	}
}
