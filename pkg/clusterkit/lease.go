package clusterkit

import (
	"context"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// leaseClock owns what the node knows of its lease: the deadline until which it is known to be
// held, and self-fencing. It is written by the registrations' keepalives (extend) and read by
// lookups, the leader's term and the HTTP API. Run owns the one goroutine that raises and
// lowers the fenced flag; lookups also read the monotonic clock, so they never depend on it
// having run.
type leaseClock struct {
	log     *zap.Logger
	metrics *metrics

	// base anchors deadline on the monotonic clock.
	base time.Time
	// deadline is the time (nanoseconds since base) until which the lease is known to be held:
	// the send time of the last renewal plus the TTL, less a safety margin.
	deadline atomic.Int64
	// fenced is set while the deadline has passed without a renewal.
	fenced atomic.Bool
	// hold is set from a lost lease until the map has been read again.
	hold atomic.Bool
	// renewed wakes Run on every renewal.
	renewed chan struct{}
}

// init prepares c in place (the facade holds it by value).
func (c *leaseClock) init(log *zap.Logger, m *metrics) {
	c.log, c.metrics, c.base, c.renewed = log, m, time.Now(), make(chan struct{}, 1)
}

// extend records that the lease was renewed, at the latest at sent, for ttl seconds. A tenth of
// the TTL is kept as margin for the round trip and clock drift, so the node believes its lease
// gone slightly before etcd does, never after.
func (c *leaseClock) extend(sent time.Time, ttl int64) {
	if ttl <= 0 {
		return
	}
	d := time.Duration(ttl) * time.Second
	c.deadline.Store(int64(sent.Sub(c.base) + d - d/10))
	select {
	case c.renewed <- struct{}{}:
	default:
	}
}

// renew is extend for a keepalive's answer: it first records the margin the renewal had, the
// share of the TTL left until the deadline it replaces.
func (c *leaseClock) renew(sent time.Time, ttl int64) {
	if ttl > 0 {
		left := time.Until(c.Deadline())
		c.metrics.leaseMargin.Observe(left.Seconds() / float64(ttl))
	}
	c.extend(sent, ttl)
}

// Deadline is the time until which the lease is known to be held.
func (c *leaseClock) Deadline() time.Time {
	return c.base.Add(time.Duration(c.deadline.Load()))
}

// Fenced reports whether the node must claim no primary role. It reads the monotonic clock
// rather than only the flag Run sets: a process resumed after a long pause (SIGSTOP, a VM
// freeze) must not answer from the flag before Run has run.
func (c *leaseClock) Fenced() bool {
	return c.fenced.Load() || c.hold.Load() || int64(time.Since(c.base)) >= c.deadline.Load()
}

// Hold fences the node until Release, whatever the deadline: set when the lease was lost, until
// a map read after the new registration is applied.
func (c *leaseClock) Hold()    { c.hold.Store(true) }
func (c *leaseClock) Release() { c.hold.Store(false) }

// Run raises the fenced flag when the deadline passes without a renewal and lowers it on the
// next renewal, until ctx ends.
func (c *leaseClock) Run(ctx context.Context) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		if left := time.Until(c.Deadline()); left > 0 {
			if c.fenced.Swap(false) {
				c.log.Info("lease renewed, claiming roles again")
				c.metrics.fenced.Set(0)
			}
			timer.Reset(left)
		} else {
			if !c.fenced.Swap(true) {
				c.log.Warn("lease not renewed by its deadline: no longer claiming primary roles")
				c.metrics.fenced.Set(1)
			}
			timer.Reset(time.Hour)
		}
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		case <-c.renewed:
		}
	}
}
