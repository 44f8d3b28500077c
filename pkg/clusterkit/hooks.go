package clusterkit

import (
	"fmt"
	"runtime/debug"
	"slices"
	"sync"
	"time"

	"go.uber.org/zap"
)

// PartitionChangeHook is called for every (partition, new holder) of every map change, on every
// node: copyToNode is the node that newly holds partitionID and copyFromNodes are the live nodes
// that held it before (empty for a brand-new partition). A node that only cares about its own
// partitions filters with copyToNode.ID == ck.GetMyNodeID().
type PartitionChangeHook func(partitionID string, copyFromNodes []*Node, copyToNode *Node)

// hookEvent is one (partition, new holder) of a map change.
type hookEvent struct {
	partition int
	id        string
	from      []*Node
	to        *Node
	epoch     uint64
}

// diffHolders lists the hook events from old to next: for every partition, every holder of next
// that old did not list, with old's holders that are still live in next as sources.
func diffHolders(old, next *snapshot) []hookEvent {
	var events []hookEvent
	for i, holders := range next.raw.Partitions {
		var before []string
		if old != nil {
			before = old.raw.Partitions[i]
		}
		var from []*Node
		fromDone := false
		for j, id := range holders {
			if slices.Contains(before, id) {
				continue
			}
			if !fromDone {
				for _, b := range before {
					if n, ok := next.nodes[b]; ok {
						from = append(from, n)
					}
				}
				fromDone = true
			}
			events = append(events, hookEvent{
				partition: i,
				id:        next.partitions[i].ID,
				from:      from,
				to:        &next.holders[i][j],
				epoch:     next.epoch,
			})
		}
	}
	return events
}

// dispatcher runs hook events on a bounded pool of goroutines. Events of one partition run one
// at a time, in map order; events of different partitions run concurrently, at most max at once.
// Enqueueing never blocks, so a slow hook never holds up the map watch or the lookups.
type dispatcher struct {
	log   *zap.Logger
	max   int
	hooks func() []PartitionChangeHook

	mu      sync.Mutex
	pending map[int][]hookEvent
	// ready holds partitions with pending events and no running hook, oldest first.
	ready   []int
	busy    map[int]bool
	running int
	closed  bool
	idle    *sync.Cond
}

func newDispatcher(log *zap.Logger, max int, hooks func() []PartitionChangeHook) *dispatcher {
	d := &dispatcher{
		log:     log,
		max:     max,
		hooks:   hooks,
		pending: make(map[int][]hookEvent),
		busy:    make(map[int]bool),
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
		if len(q) == 0 && !d.busy[ev.partition] {
			d.ready = append(d.ready, ev.partition)
		}
		d.pending[ev.partition] = append(q, ev)
	}
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
		d.busy[p] = true
		d.running++
		go d.run(ev)
	}
}

func (d *dispatcher) run(ev hookEvent) {
	for _, h := range d.hooks() {
		d.call(h, ev)
	}
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

// call runs one hook, recovering and logging a panic so that it cannot kill the node.
func (d *dispatcher) call(h PartitionChangeHook, ev hookEvent) {
	defer func() {
		if r := recover(); r != nil {
			d.log.Error("partition change hook panicked",
				zap.String("partition", ev.id), zap.String("copy_to", ev.to.ID), zap.Uint64("epoch", ev.epoch),
				zap.String("panic", fmt.Sprint(r)), zap.ByteString("stack", debug.Stack()))
		}
	}()
	h(ev.id, ev.from, ev.to)
}

// close drops pending events and waits up to timeout for running hooks. It reports how many
// hooks were still running when it gave up.
func (d *dispatcher) close(timeout time.Duration) int {
	d.mu.Lock()
	d.closed = true
	d.pending = map[int][]hookEvent{}
	d.ready = nil
	d.mu.Unlock()

	done := make(chan struct{})
	go func() {
		d.mu.Lock()
		for d.running > 0 {
			d.idle.Wait()
		}
		d.mu.Unlock()
		close(done)
	}()
	select {
	case <-done:
		return 0
	case <-time.After(timeout):
		d.mu.Lock()
		defer d.mu.Unlock()
		return d.running
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
