package clusterkit

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/clusterkit-go/clusterkit/internal/etcdtest"
	"github.com/clusterkit-go/clusterkit/internal/follow"
	"github.com/clusterkit-go/clusterkit/internal/keys"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
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
	f.init(e, func(old, s *snapshot, fire bool) { applied++ }, nil)

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

// Start's read of the map is tried again, with backoff, until Start's context ends: one read
// that times out (a large map on a loaded machine) does not fail the start.
func TestInitialMapReadRetries(t *testing.T) {
	srv := etcdtest.Start(t)
	core, logs := observer.New(zap.WarnLevel)
	e := &env{log: zap.New(core), client: srv.Client, schema: keys.New("t")}
	e.opts.LeaseTTL = time.Nanosecond // every read times out
	var f mapFollower
	f.init(e, func(old, s *snapshot, fire bool) {}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 700*time.Millisecond)
	defer cancel()
	_, err := f.read(ctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("read: %v, want the start's deadline", err)
	}
	if n := logs.FilterMessage("reading the partition map failed; retrying").Len(); n < 2 || n > 5 {
		t.Fatalf("%d retries in 700ms, want a few with backoff", n)
	}

	// With reads that can succeed, the map is read.
	e.opts.LeaseTTL = 5 * time.Second
	r, err := f.read(context.Background())
	if err != nil || r.Map != nil {
		t.Fatalf("read of a cluster without a map: %+v, %v", r, err)
	}
}
