package clusterkit

import (
	"fmt"
	"maps"
	"runtime/debug"
	"slices"
	"sync"
	"time"

	"go.uber.org/zap"
)

// dispatcher runs hook events on a bounded pool of goroutines. Events of one partition run one
// at a time, in map order; events of different partitions run concurrently, at most max at once.
// Enqueueing never blocks, so a slow hook never holds up the map watch or the lookups.
type dispatcher struct {
	log     *zap.Logger
	max     int
	deliver func(hookEvent)

	mu      sync.Mutex
	pending map[int][]hookEvent
	// pendingPeak is the most partitions pending since pending was made: a Go map keeps the
	// room of its largest size, so a drained map that once held a large burst (every partition
	// of a 65536-partition join) is replaced.
	pendingPeak int
	// ready holds partitions with pending events and no running hook, oldest first.
	ready []int
	// busy holds the event whose hook runs, by partition.
	busy    map[int]hookEvent
	running int
	closed  bool
	idle    *sync.Cond
	// group runs the hooks; close waits for it only up to its timeout, since a hook may hang.
	group sync.WaitGroup
}

func newDispatcher(log *zap.Logger, max int, deliver func(hookEvent)) *dispatcher {
	d := &dispatcher{
		log:     log,
		max:     max,
		deliver: deliver,
		pending: make(map[int][]hookEvent),
		busy:    make(map[int]hookEvent),
	}
	d.idle = sync.NewCond(&d.mu)
	return d
}

// enqueue schedules events in order. It never blocks on a hook.
func (d *dispatcher) enqueue(events []hookEvent) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return
	}
	for _, ev := range events {
		q := d.pending[ev.partition]
		if _, busy := d.busy[ev.partition]; len(q) == 0 && !busy {
			d.ready = append(d.ready, ev.partition)
		}
		d.pending[ev.partition] = append(q, ev)
	}
	d.pendingPeak = max(d.pendingPeak, len(d.pending))
	d.pump()
}

// pump starts ready events while there is room. d.mu must be held.
func (d *dispatcher) pump() {
	for d.running < d.max && len(d.ready) > 0 && !d.closed {
		p := d.ready[0]
		d.ready = d.ready[1:]
		q := d.pending[p]
		ev := q[0]
		if len(q) == 1 {
			delete(d.pending, p)
		} else {
			d.pending[p] = q[1:]
		}
		d.busy[p] = ev
		d.running++
		d.group.Go(func() { d.run(ev) })
	}
	if len(d.ready) == 0 {
		d.ready = nil // frees the array the burst grew
	}
	if len(d.pending) == 0 && d.pendingPeak > shrinkAbove {
		d.pending, d.pendingPeak = make(map[int][]hookEvent), 0
	}
}

// shrinkAbove is the pending count from which the dispatcher's drained map is replaced.
const shrinkAbove = 1024

func (d *dispatcher) run(ev hookEvent) {
	d.deliver(ev)
	d.mu.Lock()
	defer d.mu.Unlock()
	d.running--
	delete(d.busy, ev.partition)
	if len(d.pending[ev.partition]) > 0 && !d.closed {
		d.ready = append(d.ready, ev.partition)
	}
	d.pump()
	if d.running == 0 {
		d.idle.Broadcast()
	}
}

// callHook runs one hook, recovering and logging a panic so that it cannot kill the node. It
// reports whether the hook returned normally.
func callHook(log *zap.Logger, ev hookEvent, call func()) (ok bool) {
	defer func() {
		if r := recover(); r != nil {
			to := ""
			if ev.to != nil {
				to = ev.to.ID
			}
			log.Error("hook panicked", zap.String("partition", ev.id), zap.String("copy_to", to), zap.Uint64("epoch", ev.epoch),
				zap.String("panic", fmt.Sprint(r)), zap.ByteString("stack", debug.Stack()))
			ok = false
		}
	}()
	call()
	return true
}

// close drops pending events and waits up to timeout for running hooks. It returns the hooks
// still running when it gave up ("partition-3 to node-2 (epoch 7)"), in partition order.
func (d *dispatcher) close(timeout time.Duration) []string {
	d.mu.Lock()
	d.closed = true
	d.pending = map[int][]hookEvent{}
	d.ready = nil
	d.mu.Unlock()

	done := make(chan struct{})
	d.group.Go(func() {
		d.mu.Lock()
		for d.running > 0 {
			d.idle.Wait()
		}
		d.mu.Unlock()
		close(done)
	})
	select {
	case <-done:
		return nil
	case <-time.After(timeout):
		d.mu.Lock()
		defer d.mu.Unlock()
		var hung []string
		for _, p := range slices.Sorted(maps.Keys(d.busy)) {
			ev := d.busy[p]
			switch {
			case ev.event != nil:
				hung = append(hung, fmt.Sprintf("OnEvent of %s (%s, epoch %d)", ev.id, ev.event.Reason, ev.epoch))
			case ev.to != nil:
				hung = append(hung, fmt.Sprintf("%s to %s (epoch %d)", ev.id, ev.to.ID, ev.epoch))
			default:
				hung = append(hung, fmt.Sprintf("%s (epoch %d)", ev.id, ev.epoch))
			}
		}
		return hung
	}
}

// waitIdle blocks until no hook runs and none is pending; tests use it.
func (d *dispatcher) waitIdle() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for d.running > 0 || len(d.pending) > 0 {
		d.idle.Wait()
	}
}
