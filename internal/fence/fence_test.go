package fence_test

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/clusterkit-go/clusterkit/internal/etcdtest"
	"github.com/clusterkit-go/clusterkit/internal/fence"
)

func TestMain(m *testing.M) { os.Exit(etcdtest.RunWithoutLeaks(m)) }

func newSession(t *testing.T, c *clientv3.Client) *concurrency.Session {
	t.Helper()
	s, err := concurrency.NewSession(c, concurrency.WithTTL(2))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func waitDone(t *testing.T, ctx context.Context, what string) {
	t.Helper()
	select {
	case <-ctx.Done():
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: term context not cancelled", what)
	}
}

// A deposed leader's write is refused by etcd, and its term ends, whether its key was deleted
// (lease revoked) or its session expired.
func TestDeposedLeaderWriteRejected(t *testing.T) {
	srv := etcdtest.Start(t)
	c := srv.Client
	ctx := context.Background()
	a := newSession(t, c)
	ta, err := fence.Campaign(ctx, a, "/t/leader/", "a", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ta.End(false, time.Second)
	if _, err := ta.Txn(ctx, nil, clientv3.OpPut("/t/map", "from-a-1")); err != nil {
		t.Fatalf("leader write: %v", err)
	}

	// b waits behind a; a's key disappears (as when its lease expires), b wins.
	b := newSession(t, c)
	won := make(chan *fence.Term, 1)
	go func() {
		tb, err := fence.Campaign(ctx, b, "/t/leader/", "b", nil)
		if err != nil {
			t.Error(err)
			won <- nil
			return
		}
		won <- tb
	}()
	if _, err := c.Revoke(ctx, a.Lease()); err != nil {
		t.Fatal(err)
	}
	tb := <-won
	if tb == nil {
		t.FailNow()
	}
	defer tb.End(false, time.Second)
	waitDone(t, ta.Context(), "deposed leader")

	_, err = ta.Txn(ctx, nil, clientv3.OpPut("/t/map", "from-a-2"))
	if !errors.Is(err, fence.ErrNotLeader) {
		t.Fatalf("deposed leader write: got %v, want ErrNotLeader", err)
	}
	if _, err := tb.Txn(ctx, nil, clientv3.OpPut("/t/map", "from-b")); err != nil {
		t.Fatalf("new leader write: %v", err)
	}
	resp, err := c.Get(ctx, "/t/map")
	if err != nil {
		t.Fatal(err)
	}
	if got := string(resp.Kvs[0].Value); got != "from-b" {
		t.Fatalf("map = %q, want from-b", got)
	}
}

// A write guarded by the term fails when its other comparison fails, without ending the term.
func TestTxnComparisonFailureKeepsTerm(t *testing.T) {
	srv := etcdtest.Start(t)
	c := srv.Client
	ctx := context.Background()
	s := newSession(t, c)
	term, err := fence.Campaign(ctx, s, "/t/leader/", "a", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer term.End(false, time.Second)
	resp, err := term.Txn(ctx, []clientv3.Cmp{clientv3.Compare(clientv3.ModRevision("/t/map"), "=", 12345)}, clientv3.OpPut("/t/map", "x"))
	if err != nil {
		t.Fatal(err)
	}
	if resp.Succeeded {
		t.Fatal("write succeeded despite a failing comparison")
	}
	if term.Context().Err() != nil {
		t.Fatal("term ended on a comparison failure")
	}
}

// The term ends when the lease deadline passes, even though etcd still has the key: a leader
// that cannot confirm its lease must stop acting before etcd could give leadership away.
func TestTermEndsAtLeaseDeadline(t *testing.T) {
	srv := etcdtest.Start(t)
	s := newSession(t, srv.Client)
	deadline := time.Now().Add(300 * time.Millisecond)
	term, err := fence.Campaign(context.Background(), s, "/t/leader/", "a", func() time.Time { return deadline })
	if err != nil {
		t.Fatal(err)
	}
	defer term.End(false, time.Second)
	waitDone(t, term.Context(), "deadline")
	if time.Now().Before(deadline) {
		t.Fatal("term ended before its deadline")
	}
}

// Resigning hands leadership over at once.
func TestResignHandsOver(t *testing.T) {
	srv := etcdtest.Start(t)
	c := srv.Client
	ctx := context.Background()
	a := newSession(t, c)
	ta, err := fence.Campaign(ctx, a, "/t/leader/", "a", nil)
	if err != nil {
		t.Fatal(err)
	}
	b := newSession(t, c)
	won := make(chan error, 1)
	var tb *fence.Term
	go func() {
		var err error
		tb, err = fence.Campaign(ctx, b, "/t/leader/", "b", nil)
		won <- err
	}()
	if err := ta.End(true, time.Second); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-won:
		if err != nil {
			t.Fatal(err)
		}
		tb.End(false, time.Second)
	case <-time.After(10 * time.Second):
		t.Fatal("b did not win after a resigned")
	}
}
