package clusterkit

import (
	"testing"

	"github.com/clusterkit-go/clusterkit/internal/follow"
	"go.uber.org/zap"
)

// A node never applies a map older than the one it holds, nor another map of the same epoch:
// lookups keep answering from the newer map, no hook fires and no waiter is woken.
func TestFollowerNeverGoesBack(t *testing.T) {
	e := &env{log: zap.NewNop()}
	e.config.PartitionCount = 2
	var err error
	if e.metrics, err = newMetrics(nil); err != nil {
		t.Fatal(err)
	}
	applied := 0
	var f mapFollower
	f.init(e, func(old, s *snapshot, fire bool) { applied++ })

	abc := []string{"a", "b", "c"}
	f.apply(follow.Update{Map: testMap(5, abc, []string{"a", "b"}, []string{"b", "c"}), Revision: 50}, true)
	held := f.snapshot()
	changed := f.changes()
	tests := []struct {
		name  string
		epoch uint64
	}{
		{"an older epoch", 4},
		{"epoch 1, as from an etcd restored from an old snapshot", 1},
		{"the same epoch with other holders", 5},
	}
	for _, tt := range tests {
		f.apply(follow.Update{Map: testMap(tt.epoch, abc, []string{"c", "a"}, []string{"a", "c"}), Revision: 60}, true)
		if s := f.snapshot(); s != held {
			t.Fatalf("%s: the node went from epoch %d to %d", tt.name, held.epoch, s.epoch)
		}
		if applied != 1 {
			t.Fatalf("%s: hooks scheduled %d times", tt.name, applied)
		}
		select {
		case <-changed:
			t.Fatalf("%s: waiters woken for a map that was not applied", tt.name)
		default:
		}
	}
	// A newer epoch is applied.
	f.apply(follow.Update{Map: testMap(6, abc, []string{"c", "a"}, []string{"a", "c"}), Revision: 70}, true)
	if s := f.snapshot(); s.epoch != 6 || s.partitions[0].PrimaryNode != "c" || applied != 2 {
		t.Fatalf("epoch 6 not applied: at %d, primary %s, %d applies", s.epoch, s.partitions[0].PrimaryNode, applied)
	}
}
