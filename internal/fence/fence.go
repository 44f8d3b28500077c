// Package fence wraps etcd leader election so that a leader's work stops the moment its
// leadership may have ended, and so that every write it makes is refused once it has.
//
// concurrency.Election.Campaign returns once the candidate's key is the oldest under the prefix,
// but it does not notice afterwards that the session expired or that the key was deleted. A Term
// does: its context is cancelled when the session ends, when the leader key disappears or is
// replaced, or when the lease deadline (as last confirmed by a keepalive) passes, whichever comes
// first. Writes guarded with Term.Guard compare the leader key's create revision, so a deposed
// leader's transaction fails inside etcd even if its context has not been cancelled yet.
package fence

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"go.uber.org/zap"

	"github.com/clusterkit-go/clusterkit/internal/follow"
)

// ErrNotLeader is returned by a guarded write that etcd refused because the writer no longer
// holds leadership.
var ErrNotLeader = errors.New("fence: not the leader")

// Term is one period of leadership. It is safe for concurrent use.
type Term struct {
	ctx    context.Context
	cancel context.CancelCauseFunc
	client *clientv3.Client
	key    string
	rev    int64
	done   chan struct{}
}

// Campaign blocks until the session leads the election under prefix, and returns its Term. It
// returns an error when ctx is cancelled or the session ends first; it then leaves its candidate
// key in place (it goes with the session's lease) rather than deleting it with a context that
// could block while etcd is unreachable. deadline reports the latest time until which the
// session's lease is known to be held; it may be nil.
//
// Candidates' keys are <prefix>/<lease id in hex> with the candidate's value, attached to its
// lease, as concurrency.Election writes them: the oldest key leads.
func Campaign(ctx context.Context, s *concurrency.Session, prefix, value string, deadline func() time.Time) (*Term, error) {
	// Campaign must give up when the session ends, or it could wait forever for the deletion of
	// older candidates' keys while its own key is already gone.
	cctx, stop := mergeDone(ctx, s.Done())
	defer stop()
	client := s.Client()
	key := fmt.Sprintf("%s/%x", prefix, s.Lease())
	resp, err := client.Txn(cctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, value, clientv3.WithLease(s.Lease()))).
		Else(clientv3.OpGet(key)).Commit()
	if err != nil {
		return nil, fmt.Errorf("campaign: %w", err)
	}
	rev := resp.Header.Revision
	if !resp.Succeeded {
		kv := resp.Responses[0].GetResponseRange().Kvs[0]
		rev = kv.CreateRevision
		if string(kv.Value) != value {
			if _, err := client.Put(cctx, key, value, clientv3.WithIgnoreLease()); err != nil {
				return nil, fmt.Errorf("campaign: %w", err)
			}
		}
	}
	if err := waitOlder(cctx, client, prefix+"/", rev); err != nil {
		return nil, fmt.Errorf("campaign: %w", err)
	}
	// Verify that the key we won with still exists: the session may have expired while
	// waiting.
	get, err := client.Get(cctx, key)
	if err != nil {
		return nil, fmt.Errorf("campaign: read leader key: %w", err)
	}
	if len(get.Kvs) == 0 || get.Kvs[0].CreateRevision != rev {
		return nil, fmt.Errorf("campaign: leader key %s vanished: %w", key, ErrNotLeader)
	}
	tctx, cancel := context.WithCancelCause(ctx)
	t := &Term{
		ctx:    tctx,
		cancel: cancel,
		client: client,
		key:    key,
		rev:    rev,
		done:   make(chan struct{}),
	}
	go t.watch(s, get.Header.Revision+1, deadline)
	return t, nil
}

// waitOlder waits until no key under prefix was created before rev.
func waitOlder(ctx context.Context, client *clientv3.Client, prefix string, rev int64) error {
	for {
		opts := append(clientv3.WithLastCreate(), clientv3.WithMaxCreateRev(rev-1))
		resp, err := client.Get(ctx, prefix, opts...)
		if err != nil {
			return err
		}
		if len(resp.Kvs) == 0 {
			return nil
		}
		older := string(resp.Kvs[0].Key)
		wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		wch := client.Watch(wctx, older, clientv3.WithRev(resp.Header.Revision+1))
		deleted := false
		for wr := range wch {
			for _, ev := range wr.Events {
				if ev.Type == clientv3.EventTypeDelete {
					deleted = true
				}
			}
			if deleted || wr.Err() != nil {
				break
			}
		}
		cancel()
		if err := ctx.Err(); err != nil {
			return err
		}
	}
}

// mergeDone returns a context cancelled when ctx is or when done closes.
func mergeDone(ctx context.Context, done <-chan struct{}) (context.Context, func()) {
	cctx, cancel := context.WithCancel(ctx)
	stopped := make(chan struct{})
	go func() {
		select {
		case <-done:
			cancel()
		case <-stopped:
		case <-cctx.Done():
		}
	}()
	return cctx, func() { close(stopped); cancel() }
}

// watch cancels the term when leadership may have ended: the leader key deleted or replaced
// (followed with follow.Keys, which resumes after breaks and reads the key afresh after a
// compaction), the session ended, or the lease deadline passed. It owns the key follower's
// goroutine and returns, after it, when the term's context is cancelled.
func (t *Term) watch(s *concurrency.Session, fromRev int64, deadline func() time.Time) {
	defer close(t.done)
	lost := func() { t.cancel(errors.New("leader key deleted")) }
	k := &follow.Keys{Client: t.client, Key: t.key, Log: zap.NewNop(), ReadTimeout: time.Second,
		Reset: func(_ context.Context, kvs []*mvccpb.KeyValue) {
			if len(kvs) == 0 || kvs[0].CreateRevision != t.rev {
				lost()
			}
		},
		Events: func(_ context.Context, evs []*clientv3.Event) {
			for _, ev := range evs {
				if ev.Type == clientv3.EventTypeDelete || ev.Kv.CreateRevision != t.rev {
					lost()
					return
				}
			}
		},
	}
	var g sync.WaitGroup
	defer g.Wait()
	g.Go(func() { k.Follow(t.ctx, fromRev-1) })

	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	arm := func() bool {
		if deadline == nil {
			return true
		}
		left := time.Until(deadline())
		if left <= 0 {
			return false
		}
		timer.Reset(left)
		return true
	}
	if !arm() {
		t.cancel(errors.New("lease deadline passed"))
		return
	}
	for {
		select {
		case <-t.ctx.Done():
			return
		case <-s.Done():
			t.cancel(errors.New("session ended"))
			return
		case <-timer.C:
			if !arm() {
				t.cancel(errors.New("lease deadline passed"))
				return
			}
		}
	}
}

// Context is cancelled when the term ends. Leader work runs under it.
func (t *Term) Context() context.Context { return t.ctx }

// Key is the leader key of the term.
func (t *Term) Key() string { return t.key }

// Guard is the comparison that every leader write carries: it holds only while the term's
// leader key exists with the create revision it was won with.
func (t *Term) Guard() clientv3.Cmp {
	return clientv3.Compare(clientv3.CreateRevision(t.key), "=", t.rev)
}

// Txn commits ops if the guard and cmps hold. It returns ErrNotLeader when the guard failed,
// and a response with Succeeded false (and a nil error) when only cmps failed.
func (t *Term) Txn(ctx context.Context, cmps []clientv3.Cmp, ops ...clientv3.Op) (*clientv3.TxnResponse, error) {
	all := append([]clientv3.Cmp{t.Guard()}, cmps...)
	resp, err := t.client.Txn(ctx).If(all...).Then(ops...).Else(clientv3.OpGet(t.key)).Commit()
	if err != nil {
		return nil, err
	}
	if resp.Succeeded {
		return resp, nil
	}
	kvs := resp.Responses[0].GetResponseRange().Kvs
	if len(kvs) == 0 || kvs[0].CreateRevision != t.rev {
		t.cancel(ErrNotLeader)
		return nil, ErrNotLeader
	}
	return resp, nil
}

// End stops the term and waits for its watcher. With resign, it also deletes the leader key so
// that another candidate takes over at once instead of after the lease expires; that uses a
// fresh context bounded by timeout, since the term's own context is already cancelled.
func (t *Term) End(resign bool, timeout time.Duration) error {
	t.cancel(errors.New("term ended"))
	<-t.done
	if !resign {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	_, err := t.client.Txn(ctx).If(t.Guard()).Then(clientv3.OpDelete(t.key)).Commit()
	return err
}
