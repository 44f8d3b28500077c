package clusterkit

import (
	"context"
	"encoding/json"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
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
	// acks carries acknowledgements to Run.
	acks chan ackReq
	// stop is closed when the node stops: a hook finishing then acknowledges nothing.
	stop chan struct{}
}

func newHookRunner(e *env, log *zap.Logger, self string, maxConcurrent int, lease func() clientv3.LeaseID) *hookRunner {
	h := &hookRunner{env: e, log: log, self: self, lease: lease, acks: make(chan ackReq, 1024), stop: make(chan struct{})}
	h.dispatch = newDispatcher(log, maxConcurrent, h.deliver)
	return h
}

func (h *hookRunner) add(hook PartitionChangeHook) { addHook(&h.mu, &h.hooks, hook) }

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
}

// jobs lists the jobs a map change gives the hooks: the OnPartitionChange calls when such hooks
// are registered (and always this node's own copies, which must be acknowledged), and this
// node's Events when OnEvent hooks are registered. Nothing is queued for nobody.
func (h *hookRunner) jobs(old, s *snapshot) []hookEvent {
	var jobs []hookEvent
	seed := h.hooks.Load() != nil
	for _, ev := range diffHolders(old, s) {
		if seed || ev.since > 0 && ev.to.ID == h.self {
			jobs = append(jobs, ev)
		}
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
				callHook(h.log, ev, func() { hook(*ev.event) })
			}
		}
		return
	}
	ok := true
	if p := h.hooks.Load(); p != nil {
		for _, hook := range *p {
			ok = callHook(h.log, ev, func() { hook(ev.id, ev.from, ev.to) }) && ok
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

// maxAckBatch is the most acknowledgements written in one transaction: etcd's default limit of
// operations per transaction is 128.
const maxAckBatch = 128

// ackReq is an acknowledgement to write.
type ackReq struct {
	partition int
	since     uint64
}

// ack is the value of a handoff acknowledgement.
type ack struct {
	Since uint64 `json:"since"`
}

// run writes handoff acknowledgements under the node's lease, batching those that are ready
// together, until ctx ends.
func (h *hookRunner) run(ctx context.Context) {
	for {
		var batch []ackReq
		select {
		case <-ctx.Done():
			return
		case a := <-h.acks:
			batch = append(batch, a)
		}
	more:
		for len(batch) < maxAckBatch {
			select {
			case a := <-h.acks:
				batch = append(batch, a)
			default:
				break more
			}
		}
		lease := h.lease()
		ops := make([]clientv3.Op, 0, len(batch))
		for _, a := range batch {
			b, _ := json.Marshal(ack{Since: a.since})
			ops = append(ops, clientv3.OpPut(h.env.schema.Handoff(a.partition, h.self), string(b), clientv3.WithLease(lease)))
		}
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := h.env.client.Txn(wctx).Then(ops...).Commit()
		cancel()
		if err != nil && ctx.Err() == nil {
			h.log.Warn("writing handoff acknowledgements failed; the leader asks again after HandoffTimeout",
				zap.Int("count", len(batch)), zap.Error(err))
		}
	}
}

// close stops acknowledging, drops pending jobs and waits up to timeout for running hooks. It
// reports how many hooks were still running when it gave up.
func (h *hookRunner) close(timeout time.Duration) int {
	close(h.stop)
	return h.dispatch.close(timeout)
}
