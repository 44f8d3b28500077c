package clusterkit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"go.uber.org/zap"

	"github.com/clusterkit-go/clusterkit/internal/state"
)

// registration is one life of the node's lease: its record under nodes/<id>, its election
// session, and the keepalive that extends the lease clock. It owns the keepalive goroutine:
// cancel stops it and stop waits for it.
type registration struct {
	env   *env
	lease clientv3.LeaseID
	// mu guards self, the record as last written, and serialises its rewrites.
	mu      sync.Mutex
	self    state.Node
	session *concurrency.Session
	cancel  context.CancelFunc
	group   sync.WaitGroup
}

// register creates the node's record under a new lease, refusing to take the record of a live
// node with the same ID. A record left by this node's own DataDir (a restart before the old
// lease expired) is taken back at once. The keepalive runs until revoke or cancel, or until
// parent ends.
func register(ctx, parent context.Context, e *env, clock *leaseClock, self state.Node) (*registration, error) {
	rec, err := json.Marshal(self)
	if err != nil {
		return nil, err
	}
	if len(rec) > state.MaxNodeRecord {
		return nil, fmt.Errorf("clusterkit: the node's record is %d bytes, more than %d: shorten Metadata", len(rec), state.MaxNodeRecord)
	}
	ttl := int64(e.opts.LeaseTTL / time.Second)
	granted := time.Now()
	grant, err := e.client.Grant(ctx, ttl)
	if err != nil {
		return nil, fmt.Errorf("clusterkit: grant lease: %w", err)
	}
	revokeNew := func() {
		rctx, cancel := context.WithTimeout(context.Background(), time.Second)
		e.client.Revoke(rctx, grant.ID)
		cancel()
	}
	key := e.schema.Node(e.opts.NodeID)
	resp, err := e.client.Txn(ctx).
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
		if derr != nil || existing.Instance != self.Instance {
			revokeNew()
			inUse := &NodeIDInUseError{NodeID: e.opts.NodeID, Addr: existing.IP}
			if ttlResp, err := e.client.TimeToLive(ctx, clientv3.LeaseID(kv.Lease)); err == nil {
				inUse.LeaseLeft = time.Duration(ttlResp.TTL) * time.Second
			}
			return nil, inUse
		}
		// Our own record from before a restart: replace it only if it is still the one we read.
		resp, err := e.client.Txn(ctx).
			If(clientv3.Compare(clientv3.ModRevision(key), "=", kv.ModRevision)).
			Then(clientv3.OpPut(key, string(rec), clientv3.WithLease(grant.ID))).Commit()
		if err != nil || !resp.Succeeded {
			revokeNew()
			return nil, fmt.Errorf("clusterkit: take back own registration: changed concurrently (%v)", err)
		}
		// The old lease also held our old election key: revoke it so that no one waits for it.
		if kv.Lease != 0 {
			e.client.Revoke(ctx, clientv3.LeaseID(kv.Lease))
		}
		e.log.Info("took back own registration from before a restart")
	}
	kctx, cancel := context.WithCancel(parent)
	session, err := concurrency.NewSession(e.client, concurrency.WithLease(grant.ID), concurrency.WithContext(kctx))
	if err != nil {
		cancel()
		revokeNew()
		return nil, fmt.Errorf("clusterkit: election session: %w", err)
	}
	r := &registration{env: e, lease: grant.ID, self: self, session: session, cancel: cancel}
	clock.extend(granted, grant.TTL)
	r.group.Go(func() { r.keepAlive(kctx, clock) })
	return r, nil
}

// keepAlive renews the lease every third of the TTL with its own keepalive, so that it knows
// when each renewal was sent: etcd extends the lease when the request arrives, at the earliest
// when it was sent, so the send time plus the TTL never outlives the lease in etcd, however late
// the answer comes. (The session keeps its own keepalive stream; etcd accepts both.) It returns
// when ctx ends or the lease is gone.
func (r *registration) keepAlive(ctx context.Context, clock *leaseClock) {
	ttl := r.env.opts.LeaseTTL
	ticker := time.NewTicker(ttl / 3)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		sent := time.Now()
		rctx, cancel := context.WithTimeout(ctx, ttl)
		resp, err := r.env.client.KeepAliveOnce(rctx, r.lease)
		cancel()
		switch {
		case errors.Is(err, rpctypes.ErrLeaseNotFound):
			return
		case err == nil:
			clock.renew(sent, resp.TTL)
		}
	}
}

// setState rewrites the node's record with a new state, under its lease.
func (r *registration) setState(ctx context.Context, st string) error {
	return r.rewrite(ctx, func(n *state.Node) { n.State = st })
}

// rewrite changes the node's record with edit and writes it again, under its lease.
func (r *registration) rewrite(ctx context.Context, edit func(*state.Node)) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	rec := r.self
	edit(&rec)
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	if _, err := r.env.client.Put(ctx, r.env.schema.Node(r.env.opts.NodeID), string(b), clientv3.WithLease(r.lease)); err != nil {
		return err
	}
	r.self = rec
	return nil
}

// record returns the node's record as last written.
func (r *registration) record() state.Node {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.self
}

// stop ends the keepalive and the session without touching etcd, and waits for them.
func (r *registration) stop() {
	r.cancel()
	<-r.session.Done()
	r.group.Wait()
}

// revoke ends the registration and deletes the lease, and with it the node's record and
// election key, so that the cluster learns at once.
func (r *registration) revoke(timeout time.Duration) {
	r.stop()
	ctx, cancel := context.WithTimeout(context.Background(), max(timeout, 100*time.Millisecond))
	defer cancel()
	if _, err := r.env.client.Revoke(ctx, r.lease); err != nil {
		r.env.log.Warn("revoking the lease failed; it expires after its TTL", zap.Error(err))
	}
}
