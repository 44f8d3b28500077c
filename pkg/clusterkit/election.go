package clusterkit

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/clusterkit-go/clusterkit/internal/backoff"
	"github.com/clusterkit-go/clusterkit/internal/fence"
	"github.com/clusterkit-go/clusterkit/internal/state"
)

// election owns the node's registration and its place in the leader election. Its one
// goroutine (run) campaigns, leads while it wins (leader.lead), campaigns again after losing,
// and registers again under a new lease when the lease is lost, until the node leaves or stops.
type election struct {
	env    *env
	log    *zap.Logger
	clock  *leaseClock
	maps   *mapFollower
	leader *leader
	// record returns the node's record for a new registration.
	record func() (state.Node, error)

	// leaving is closed by leave: the leader publishes a map without this node, the others
	// stop campaigning.
	leaving   chan struct{}
	leaveOnce sync.Once
	// done is closed when run has left the election for good.
	done     chan struct{}
	isLeader atomic.Bool

	mu  sync.Mutex
	reg *registration // the current registration
}

func newElection(e *env, log *zap.Logger, clock *leaseClock, maps *mapFollower, record func() (state.Node, error)) *election {
	el := &election{env: e, log: log, clock: clock, maps: maps, record: record,
		leaving: make(chan struct{}), done: make(chan struct{})}
	el.leader = &leader{env: e, log: log, leaving: el.leaving, held: func() *state.Map {
		if el.maps == nil {
			return nil
		}
		if s := el.maps.snapshot(); s != nil {
			return s.raw
		}
		return nil
	}}
	return el
}

// register makes the first registration; its keepalive runs until parent ends.
func (el *election) register(ctx, parent context.Context) error {
	self, err := el.record()
	if err != nil {
		return err
	}
	reg, err := register(ctx, parent, el.env, el.clock, self)
	if err != nil {
		return err
	}
	el.setCurrent(reg)
	return nil
}

func (el *election) setCurrent(reg *registration) {
	el.mu.Lock()
	el.reg = reg
	el.mu.Unlock()
}

// current is the current registration, nil before the first.
func (el *election) current() *registration {
	el.mu.Lock()
	defer el.mu.Unlock()
	return el.reg
}

// lease is the current registration's lease.
func (el *election) lease() clientv3.LeaseID {
	if r := el.current(); r != nil {
		return r.lease
	}
	return clientv3.NoLease
}

// leave makes the node leave the election: a leader publishes a map without this node first,
// and leave waits for that until deadline.
func (el *election) leave(deadline time.Time) {
	el.leaveOnce.Do(func() { close(el.leaving) })
	if !el.isLeader.Load() {
		return
	}
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case <-el.done:
	case <-t.C:
		el.log.Warn("leaving the election timed out")
	}
}

// run keeps the node registered and in the election until ctx ends or the node leaves. When
// the lease is lost (etcd unreachable for longer than the TTL), it registers again under a new
// lease, with backoff.
func (el *election) run(ctx context.Context) {
	defer close(el.done)
	reg := el.current()
	for {
		el.campaign(ctx, reg)
		if ctx.Err() != nil || el.left() {
			return
		}
		el.log.Warn("lease lost, registering again")
		// Claim nothing until a map read after the new registration is applied: the map held
		// now may predate the loss, and others may lead its partitions at newer epochs.
		el.clock.Hold()
		reg.stop()
		retry := backoff.Backoff{Min: 100 * time.Millisecond, Max: max(el.env.opts.LeaseTTL/2, 100*time.Millisecond)}
		for {
			next, err := el.reregister(ctx)
			if err == nil {
				reg = next
				el.log.Info("registered again")
				el.catchUp(ctx)
				break
			}
			wait := retry.Next()
			el.log.Warn("register again failed", zap.Error(err), zap.Duration("retry_in", wait))
			el.env.failed(err)
			select {
			case <-el.leaving:
				return
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
		}
	}
}

func (el *election) left() bool {
	select {
	case <-el.leaving:
		return true
	default:
		return false
	}
}

func (el *election) reregister(ctx context.Context) (*registration, error) {
	self, err := el.record()
	if err != nil {
		return nil, err
	}
	rctx, cancel := context.WithTimeout(ctx, el.env.opts.LeaseTTL)
	defer cancel()
	reg, err := register(rctx, ctx, el.env, el.clock, self)
	if err != nil {
		return nil, err
	}
	el.setCurrent(reg)
	return reg, nil
}

// campaign runs the election for one registration: it campaigns, leads while it wins, and
// campaigns again after losing leadership, until the session ends or the node leaves.
func (el *election) campaign(parent context.Context, reg *registration) {
	ctx, cancel := context.WithCancel(parent)
	var g sync.WaitGroup
	defer func() { cancel(); g.Wait() }()
	g.Go(func() {
		select {
		case <-el.leaving:
		case <-reg.session.Done():
		case <-ctx.Done():
		}
		cancel()
	})
	// Failed campaigns and terms that end in an error retry after a growing, jittered delay, so
	// that a failure that repeats (etcd refusing writes, say) is not retried in a tight loop.
	retry := backoff.Backoff{Min: 100 * time.Millisecond, Max: max(el.env.opts.LeaseTTL/2, 100*time.Millisecond)}
	pause := func() {
		select {
		case <-ctx.Done():
		case <-time.After(retry.Next()):
		}
	}
	for ctx.Err() == nil {
		term, err := fence.Campaign(ctx, reg.session, el.env.schema.LeaderPrefix(), el.env.opts.NodeID, el.clock.Deadline)
		if errors.Is(err, rpctypes.ErrLeaseNotFound) {
			// The lease is gone (revoked, or expired while etcd was out of reach); the session
			// would notice only at its next keepalive, a third of the TTL away.
			return
		}
		if err != nil {
			if ctx.Err() == nil {
				el.log.Warn("campaign failed", zap.Error(err))
				el.env.failed(err)
				pause()
			}
			continue
		}
		el.isLeader.Store(true)
		el.env.metrics.leading(true)
		el.log.Info("elected leader", zap.String("key", term.Key()))
		began := time.Now()
		err = el.leader.lead(term)
		if time.Since(began) > el.env.opts.LeaseTTL {
			retry.Reset() // a term that lasted is not a failure repeating
		}
		el.isLeader.Store(false)
		el.env.metrics.leading(false)
		term.End(false, 0)
		if err != nil && !errors.Is(err, context.Canceled) {
			el.log.Warn("leadership ended", zap.Error(err))
			el.env.failed(err)
			pause()
		} else {
			el.log.Info("leadership ended")
			retry.Reset()
		}
	}
}

// catchUp reads and applies the current map, then lifts the hold put on primary claims when
// the lease was lost. It retries with backoff until it succeeds or ctx ends.
func (el *election) catchUp(ctx context.Context) {
	retry := backoff.Backoff{Min: 50 * time.Millisecond, Max: time.Second}
	for {
		err := el.maps.catchUp(ctx)
		if err == nil {
			el.clock.Release()
			el.log.Info("caught up with the map after registering again", zap.Uint64("epoch", el.maps.epoch()))
			return
		}
		el.log.Warn("reading the map after registering again failed", zap.Error(err))
		select {
		case <-ctx.Done():
			return
		case <-time.After(retry.Next()):
		}
	}
}
