package clusterkit

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/clusterkit-go/clusterkit/internal/backoff"
	"github.com/clusterkit-go/clusterkit/internal/state"
)

// hookRunner owns the application's hooks and what follows from them: it turns each applied map
// into hook jobs, runs them on the dispatcher's bounded pool, and acknowledges this node's
// copies in etcd once its hooks have returned. Run owns the goroutine that writes the
// acknowledgements; close drops pending jobs and waits for running hooks.
type hookRunner struct {
	env  *env
	log  *zap.Logger
	self string
	// lease returns the lease acknowledgements are written under (the current registration's).
	lease func() clientv3.LeaseID

	mu         sync.Mutex // serialises hook registration
	hooks      atomic.Pointer[[]PartitionChangeHook]
	eventHooks atomic.Pointer[[]EventHook]

	dispatch *dispatcher
	// current returns the map the node holds.
	current func() *snapshot
	// acks carries acknowledgements to run; mapped tells it that a new map was applied.
	acks   chan ackReq
	mapped chan struct{}
	// stop is closed when the node stops: a hook finishing then acknowledges nothing.
	stop chan struct{}
}

func newHookRunner(e *env, log *zap.Logger, self string, maxConcurrent int, lease func() clientv3.LeaseID, current func() *snapshot) *hookRunner {
	h := &hookRunner{env: e, log: log, self: self, lease: lease, current: current,
		acks: make(chan ackReq, 1024), mapped: make(chan struct{}, 1), stop: make(chan struct{})}
	h.dispatch = newDispatcher(log, maxConcurrent, h.deliver)
	return h
}

func (h *hookRunner) add(hook PartitionChangeHook) { addHook(&h.mu, &h.hooks, hook) }

// copies reports whether an OnPartitionChange hook is registered: only then does the node copy
// partitions in.
func (h *hookRunner) copies() bool { return h.hooks.Load() != nil }

func (h *hookRunner) addEvent(hook EventHook) { addHook(&h.mu, &h.eventHooks, hook) }

// addHook appends hook to the list behind p, copying it: readers load the list without a lock.
func addHook[T any](mu *sync.Mutex, p *atomic.Pointer[[]T], hook T) {
	mu.Lock()
	defer mu.Unlock()
	var hooks []T
	if cur := p.Load(); cur != nil {
		hooks = append(hooks, *cur...)
	}
	hooks = append(hooks, hook)
	p.Store(&hooks)
}

// schedule queues the jobs of the change from old to s when fire is set; it never blocks on a
// hook.
func (h *hookRunner) schedule(old, s *snapshot, fire bool) {
	if fire {
		h.dispatch.enqueue(h.jobs(old, s))
	}
	select {
	case h.mapped <- struct{}{}:
	default:
	}
}

// jobs lists the jobs a map change gives the hooks: the OnPartitionChange calls when such hooks
// are registered (and always this node's own copies, which must be acknowledged), and this
// node's Events when OnEvent hooks are registered. Nothing is queued for nobody.
func (h *hookRunner) jobs(old, s *snapshot) []hookEvent {
	seed := h.hooks.Load() != nil
	jobs := diffHolders(old, s)
	if !seed {
		kept := jobs[:0]
		for _, ev := range jobs {
			if ev.since > 0 && ev.to.ID == h.self {
				kept = append(kept, ev)
			}
		}
		jobs = kept
	}
	if h.eventHooks.Load() != nil {
		jobs = append(jobs, diffRoles(old, s, h.self)...)
	}
	return jobs
}

// deliver runs the hooks of one job. When the job asks this node to copy a partition in and
// every hook returned normally, the copy is acknowledged so that the leader can route to it.
func (h *hookRunner) deliver(ev hookEvent) {
	if ev.event != nil {
		if p := h.eventHooks.Load(); p != nil {
			for _, hook := range *p {
				h.call(hookKindEvent, ev, func() { hook(*ev.event) })
			}
		}
		return
	}
	ok := true
	if p := h.hooks.Load(); p != nil {
		for _, hook := range *p {
			ok = h.call(hookKindPartitionChange, ev, func() { hook(ev.id, ev.from, ev.to) }) && ok
		}
	}
	if ev.since > 0 && ev.to != nil && ev.to.ID == h.self {
		if !ok {
			h.log.Warn("handoff hook failed, not acknowledging; the leader asks again after HandoffTimeout",
				zap.String("partition", ev.id), zap.Uint64("since", ev.since))
			return
		}
		select {
		case h.acks <- ackReq{partition: ev.partition, since: ev.since}:
		case <-h.stop:
		}
	}
}

// call runs one hook of the given kind through callHook and records the time it took.
func (h *hookRunner) call(kind string, ev hookEvent, hook func()) bool {
	start := time.Now()
	ok := callHook(h.log, ev, hook)
	h.env.metrics.hookSeconds.WithLabelValues(kind).Observe(time.Since(start).Seconds())
	return ok
}

// ackReq is an acknowledgement to write.
type ackReq struct {
	partition int
	since     uint64
}

// Acknowledgements that finish within ackLinger of each other are written together, waiting
// at most maxAckDelay after the first.
const (
	ackLinger   = 5 * time.Millisecond
	maxAckDelay = 200 * time.Millisecond
)

// run keeps this node's acknowledgement record (state.Acks under handoffs/<node-id>, attached to
// the node's lease) until ctx ends: it adds the copies whose hooks returned, a batch at a time,
// and drops the ones the map no longer waits for when a new map arrives. A failed write is
// retried with backoff.
func (h *hookRunner) run(ctx context.Context) {
	acked := map[int]uint64{}
	stored, dirty := false, false
	retry := time.NewTimer(time.Hour)
	defer retry.Stop()
	delay := backoff.Backoff{Min: 100 * time.Millisecond, Max: 5 * time.Second}
	for {
		select {
		case <-ctx.Done():
			return
		case a := <-h.acks:
			acked[a.partition] = a.since
			h.linger(ctx, acked)
			dirty = true
		case <-h.mapped:
		case <-retry.C:
		}
		if h.prune(acked) {
			dirty = true
		}
		if !dirty || !stored && len(acked) == 0 {
			dirty = false
			continue
		}
		if err := h.writeAcks(ctx, acked); err != nil {
			if ctx.Err() != nil {
				return
			}
			wait := delay.Next()
			h.log.Warn("writing handoff acknowledgements failed; retrying", zap.Int("copies", len(acked)),
				zap.Duration("backoff", wait), zap.Error(err))
			h.env.failed(err)
			retry.Reset(wait)
			continue
		}
		stored, dirty = len(acked) > 0, false
		delay.Reset()
	}
}

// linger adds to acked the acknowledgements that arrive within ackLinger of each other, for at
// most maxAckDelay.
func (h *hookRunner) linger(ctx context.Context, acked map[int]uint64) {
	deadline := time.NewTimer(maxAckDelay)
	defer deadline.Stop()
	quiet := time.NewTimer(ackLinger)
	defer quiet.Stop()
	for {
		select {
		case a := <-h.acks:
			acked[a.partition] = a.since
			quiet.Reset(ackLinger)
		case <-quiet.C:
			return
		case <-deadline.C:
			return
		case <-ctx.Done():
			return
		}
	}
}

// prune drops the copies the map held no longer waits for (done, or asked again), and reports
// whether it dropped any.
func (h *hookRunner) prune(acked map[int]uint64) bool {
	s := h.current()
	if s == nil {
		return false
	}
	dropped := false
	for p, since := range acked {
		if p >= len(s.raw.Partitions) {
			delete(acked, p)
			dropped = true
			continue
		}
		if pd, ok := s.raw.Partitions[p].PendingFor(h.self); !ok || pd.Since != since {
			delete(acked, p)
			dropped = true
		}
	}
	return dropped
}

// writeAcks writes the record of acked under the node's lease, or deletes it when it is empty.
func (h *hookRunner) writeAcks(ctx context.Context, acked map[int]uint64) error {
	key := h.env.schema.Handoff(h.self)
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if len(acked) == 0 {
		_, err := h.env.client.Delete(wctx, key)
		return err
	}
	b, err := state.EncodeAcks(h.self, acked)
	if err != nil {
		return err
	}
	_, err = h.env.client.Put(wctx, key, string(b), clientv3.WithLease(h.lease()))
	return err
}

// close stops acknowledging, drops pending jobs and waits up to timeout for running hooks. It
// reports how many hooks were still running when it gave up.
func (h *hookRunner) close(timeout time.Duration) []string {
	close(h.stop)
	return h.dispatch.close(timeout)
}
