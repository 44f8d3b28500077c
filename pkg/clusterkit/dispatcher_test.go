package clusterkit

import (
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
)

// The dispatcher runs at most max hooks at once, one at a time per partition and in map order,
// never blocks the caller, and survives a panicking hook.
func TestDispatcher(t *testing.T) {
	const max = 3
	var running, peak atomic.Int32
	var mu sync.Mutex
	seen := map[string][]string{} // partition -> copyTo IDs in call order
	release := make(chan struct{})
	hook := func(partitionID string, from []*Node, to *Node) {
		n := running.Add(1)
		defer running.Add(-1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		<-release
		mu.Lock()
		seen[partitionID] = append(seen[partitionID], to.ID)
		mu.Unlock()
		if to.ID == "e1" && partitionID == "partition-0" {
			panic("boom")
		}
	}
	d := newDispatcher(zap.NewNop(), max, func(ev hookEvent) {
		callHook(zap.NewNop(), ev, func() { hook(ev.id, ev.from, ev.to) })
	})
	var events []hookEvent
	for epoch := uint64(1); epoch <= 3; epoch++ {
		for p := 0; p < 10; p++ {
			to := &Node{ID: fmt.Sprintf("e%d", epoch)}
			events = append(events, hookEvent{partition: p, id: PartitionID(p), to: to, epoch: epoch})
		}
	}
	done := make(chan struct{})
	go func() {
		for _, ev := range events {
			d.enqueue([]hookEvent{ev})
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("enqueue blocked on running hooks")
	}
	waitFor(t, 5*time.Second, "hooks running at once", func() error {
		if n := running.Load(); n != max {
			return fmt.Errorf("%d running", n)
		}
		return nil
	})
	close(release)
	d.waitIdle()
	if p := peak.Load(); p != max {
		t.Fatalf("peak concurrency %d, want %d", p, max)
	}
	for p := 0; p < 10; p++ {
		if got := seen[PartitionID(p)]; !slices.Equal(got, []string{"e1", "e2", "e3"}) {
			t.Fatalf("partition-%d hooks ran as %v, want e1 e2 e3 in order", p, got)
		}
	}
	if hung := d.close(time.Second); len(hung) != 0 {
		t.Fatalf("hooks still running: %v", hung)
	}
}

// After a burst larger than shrinkAbove drains, the dispatcher lets go of the room the burst
// grew (a Go map never shrinks), and still runs every event of the next burst.
func TestDispatcherShrinksAfterBurst(t *testing.T) {
	var calls atomic.Int32
	d := newDispatcher(zap.NewNop(), 4, func(hookEvent) { calls.Add(1) })
	defer d.close(time.Second)
	burst := func(n int) {
		events := make([]hookEvent, n)
		for p := range events {
			events[p] = hookEvent{partition: p, id: PartitionID(p), epoch: 1}
		}
		d.enqueue(events)
		d.waitIdle()
	}
	burst(3 * shrinkAbove)
	d.mu.Lock()
	peak, ready := d.pendingPeak, d.ready
	d.mu.Unlock()
	if peak != 0 || ready != nil {
		t.Fatalf("after the burst drained: pendingPeak %d, ready %d of %d kept", peak, len(ready), cap(ready))
	}
	burst(10)
	if got := calls.Load(); got != 3*shrinkAbove+10 {
		t.Fatalf("%d hooks ran, want %d", got, 3*shrinkAbove+10)
	}
}

// A hook that never returns does not hold close past its timeout, and close names it.
func TestDispatcherCloseNamesHungHooks(t *testing.T) {
	release := make(chan struct{})
	d := newDispatcher(zap.NewNop(), 4, func(ev hookEvent) {
		if ev.partition == 3 {
			<-release
		}
	})
	defer close(release)
	d.enqueue([]hookEvent{
		{partition: 1, id: PartitionID(1), to: &Node{ID: "node-2"}, epoch: 7},
		{partition: 3, id: PartitionID(3), to: &Node{ID: "node-2"}, epoch: 7},
	})
	// close returns (a hook that never returns would otherwise hang the test) and names it.
	hung := d.close(200 * time.Millisecond)
	if !slices.Equal(hung, []string{"partition-3 to node-2 (epoch 7)"}) {
		t.Fatalf("close reported %v, want partition-3's hook", hung)
	}
}
