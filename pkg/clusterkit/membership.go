package clusterkit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"go.uber.org/zap"

	"github.com/clusterkit-go/clusterkit/internal/fence"
	"github.com/clusterkit-go/clusterkit/internal/state"
)

// registration is one life of the node's lease: its record under nodes/<id>, its election
// session, and the keepalive that tracks the lease deadline.
type registration struct {
	lease   clientv3.LeaseID
	self    state.Node
	session *concurrency.Session
	// cancel stops the keepalives; done is closed when the deadline tracker has exited.
	cancel context.CancelFunc
	done   chan struct{}
}

// register creates the node's record under a new lease, refusing to take the record of a live
// node with the same ID. A record left by this node's own DataDir (a restart before the old
// lease expired) is taken back at once.
func (ck *ClusterKit) register(ctx context.Context) (*registration, error) {
	instance, err := ck.instanceID()
	if err != nil {
		return nil, err
	}
	self := state.Node{
		ID:        ck.opts.NodeID,
		IP:        ck.opts.AdvertiseAddr,
		Zone:      ck.opts.Zone,
		Weight:    ck.opts.Weight,
		Metadata:  ck.opts.Metadata,
		Instance:  instance,
		StartedAt: time.Now().UTC().Truncate(time.Millisecond),
	}
	if m := ck.embeddedMember(); m != nil {
		self.EtcdEndpoints = m.Endpoints()
	}
	rec, err := json.Marshal(self)
	if err != nil {
		return nil, err
	}
	ttl := int64(ck.opts.LeaseTTL / time.Second)
	granted := time.Now()
	grant, err := ck.client.Grant(ctx, ttl)
	if err != nil {
		return nil, fmt.Errorf("clusterkit: grant lease: %w", err)
	}
	revokeNew := func() {
		rctx, cancel := context.WithTimeout(context.Background(), time.Second)
		ck.client.Revoke(rctx, grant.ID)
		cancel()
	}
	key := ck.schema.Node(ck.opts.NodeID)
	resp, err := ck.client.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, string(rec), clientv3.WithLease(grant.ID))).
		Else(clientv3.OpGet(key)).Commit()
	if err != nil {
		revokeNew()
		return nil, fmt.Errorf("clusterkit: register node: %w", err)
	}
	if !resp.Succeeded {
		kv := resp.Responses[0].GetResponseRange().Kvs[0]
		existing, derr := state.DecodeNode(kv.Value)
		if derr != nil || existing.Instance != instance {
			revokeNew()
			inUse := &NodeIDInUseError{NodeID: ck.opts.NodeID, Addr: existing.IP}
			if ttlResp, err := ck.client.TimeToLive(ctx, clientv3.LeaseID(kv.Lease)); err == nil {
				inUse.LeaseLeft = time.Duration(ttlResp.TTL) * time.Second
			}
			return nil, inUse
		}
		// Our own record from before a restart: replace it only if it is still the one we read.
		resp, err := ck.client.Txn(ctx).
			If(clientv3.Compare(clientv3.ModRevision(key), "=", kv.ModRevision)).
			Then(clientv3.OpPut(key, string(rec), clientv3.WithLease(grant.ID))).Commit()
		if err != nil || !resp.Succeeded {
			revokeNew()
			return nil, fmt.Errorf("clusterkit: take back own registration: changed concurrently (%v)", err)
		}
		// The old lease also held our old election key: revoke it so that no one waits for it.
		if kv.Lease != 0 {
			ck.client.Revoke(ctx, clientv3.LeaseID(kv.Lease))
		}
		ck.log.Info("took back own registration from before a restart")
	}
	kctx, cancel := context.WithCancel(ck.runCtx)
	session, err := concurrency.NewSession(ck.client, concurrency.WithLease(grant.ID), concurrency.WithContext(kctx))
	if err != nil {
		cancel()
		revokeNew()
		return nil, fmt.Errorf("clusterkit: election session: %w", err)
	}
	reg := &registration{lease: grant.ID, self: self, session: session, cancel: cancel, done: make(chan struct{})}
	ck.extendDeadline(granted, grant.TTL)
	go func() {
		defer close(reg.done)
		ck.trackDeadline(kctx, grant.ID)
	}()
	return reg, nil
}

// trackDeadline renews the lease every third of the TTL with its own keepalive, so that it knows
// when each renewal was sent: etcd extends the lease when the request arrives, at the earliest
// when it was sent, so the send time plus the TTL never outlives the lease in etcd, however late
// the answer comes. (The session keeps its own keepalive stream; etcd accepts both.) It returns
// when ctx ends or the lease is gone.
func (ck *ClusterKit) trackDeadline(ctx context.Context, lease clientv3.LeaseID) {
	every := ck.opts.LeaseTTL / 3
	ticker := time.NewTicker(every)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		sent := time.Now()
		rctx, cancel := context.WithTimeout(ctx, ck.opts.LeaseTTL)
		resp, err := ck.client.KeepAliveOnce(rctx, lease)
		cancel()
		switch {
		case errors.Is(err, rpctypes.ErrLeaseNotFound):
			return
		case err == nil:
			ck.extendDeadline(sent, resp.TTL)
		}
	}
}

// extendDeadline records that the lease was renewed, at the latest at sent, for ttl seconds. A
// tenth of the TTL is kept as margin for the round trip and clock drift, so the node believes its
// lease gone slightly before etcd does, never after.
func (ck *ClusterKit) extendDeadline(sent time.Time, ttl int64) {
	if ttl <= 0 {
		return
	}
	d := time.Duration(ttl) * time.Second
	ck.leaseDeadline.Store(int64(sent.Sub(ck.base) + d - d/10))
	select {
	case ck.renewed <- struct{}{}:
	default:
	}
}

// runFence sets the fenced flag when the lease deadline passes without a renewal and clears it
// on the next renewal, until Stop. Lookups then read one atomic flag instead of the clock.
func (ck *ClusterKit) runFence() {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		if left := time.Until(ck.deadline()); left > 0 {
			if ck.fenced.Swap(false) {
				ck.log.Info("lease renewed, claiming roles again")
				ck.metrics.fenced.Set(0)
			}
			timer.Reset(left)
		} else {
			if !ck.fenced.Swap(true) {
				ck.log.Warn("lease not renewed by its deadline: no longer claiming primary roles")
				ck.metrics.fenced.Set(1)
			}
			timer.Reset(time.Hour)
		}
		select {
		case <-ck.runCtx.Done():
			return
		case <-timer.C:
		case <-ck.renewed:
		}
	}
}

// setState rewrites the node's record with a new state, under its lease.
func (ck *ClusterKit) setState(ctx context.Context, reg *registration, st string) error {
	rec := reg.self
	rec.State = st
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	_, err = ck.client.Put(ctx, ck.schema.Node(ck.opts.NodeID), string(b), clientv3.WithLease(reg.lease))
	return err
}

// deadline is the time until which the node's lease is known to be held.
func (ck *ClusterKit) deadline() time.Time {
	return ck.base.Add(time.Duration(ck.leaseDeadline.Load()))
}

// revoke ends the registration and deletes the lease, and with it the node's record and
// election key, so that the cluster learns at once.
func (r *registration) revoke(client *clientv3.Client, timeout time.Duration) {
	r.cancel()
	<-r.session.Done()
	<-r.done
	ctx, cancel := context.WithTimeout(context.Background(), max(timeout, 100*time.Millisecond))
	defer cancel()
	client.Revoke(ctx, r.lease)
}

// runMembership keeps the node registered and in the election until Stop. When the lease is
// lost (etcd unreachable for longer than the TTL), it registers again under a new lease.
func (ck *ClusterKit) runMembership(reg *registration) {
	defer close(ck.campaignDone)
	for {
		ck.campaign(reg)
		if ck.runCtx.Err() != nil {
			return
		}
		select {
		case <-ck.leaving:
			return
		default:
		}
		ck.log.Warn("lease lost, registering again")
		// Claim nothing until a map read after the new registration is applied: the map held
		// now may predate the loss, and others may lead its partitions at newer epochs.
		ck.fenceHold.Store(true)
		reg.cancel()
		<-reg.done
		backoff := 100 * time.Millisecond
		for {
			ctx, cancel := context.WithTimeout(ck.runCtx, ck.opts.LeaseTTL)
			next, err := ck.register(ctx)
			cancel()
			if err == nil {
				ck.mu.Lock()
				ck.session = next
				ck.mu.Unlock()
				reg = next
				ck.log.Info("registered again")
				ck.catchUp()
				break
			}
			ck.log.Warn("register again failed", zap.Error(err), zap.Duration("retry_in", backoff))
			select {
			case <-ck.leaving:
				return
			case <-ck.runCtx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, ck.opts.LeaseTTL/2)
		}
	}
}

// campaign runs the election for one registration: it campaigns, leads while it wins, and
// campaigns again after losing leadership, until the session ends or the node leaves.
func (ck *ClusterKit) campaign(reg *registration) {
	ctx, cancel := context.WithCancel(ck.runCtx)
	defer cancel()
	go func() {
		select {
		case <-ck.leaving:
		case <-reg.session.Done():
		case <-ctx.Done():
		}
		cancel()
	}()
	for ctx.Err() == nil {
		term, err := fence.Campaign(ctx, reg.session, ck.schema.LeaderPrefix(), ck.opts.NodeID, ck.deadline)
		if errors.Is(err, rpctypes.ErrLeaseNotFound) {
			// The lease is gone (revoked, or expired while etcd was out of reach); the session
			// would notice only at its next keepalive, a third of the TTL away.
			return
		}
		if err != nil {
			if ctx.Err() == nil {
				ck.log.Warn("campaign failed", zap.Error(err))
				select {
				case <-ctx.Done():
				case <-time.After(200 * time.Millisecond):
				}
			}
			continue
		}
		ck.leader.Store(true)
		ck.log.Info("elected leader", zap.String("key", term.Key()))
		err = ck.lead(term)
		ck.leader.Store(false)
		term.End(false, 0)
		if err != nil && !errors.Is(err, context.Canceled) {
			ck.log.Warn("leadership ended", zap.Error(err))
		} else {
			ck.log.Info("leadership ended")
		}
	}
}

// catchUp reads and applies the current map, then lifts the hold put on primary claims when
// the lease was lost. It retries until it succeeds or the node stops.
func (ck *ClusterKit) catchUp() {
	for backoff := 50 * time.Millisecond; ; backoff = min(2*backoff, time.Second) {
		ctx, cancel := context.WithTimeout(ck.runCtx, ck.opts.LeaseTTL)
		r, err := state.ReadMap(ctx, ck.client, ck.schema, 0)
		cancel()
		if err == nil {
			if r.Map != nil {
				ck.apply(r.Map, r.ModRevision, true)
			}
			ck.fenceHold.Store(false)
			ck.log.Info("caught up with the map after registering again", zap.Uint64("epoch", ck.Epoch()))
			return
		}
		ck.log.Warn("reading the map after registering again failed", zap.Error(err))
		select {
		case <-ck.runCtx.Done():
			return
		case <-time.After(backoff):
		}
	}
}
