package follow

import (
	"context"
	"fmt"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/clusterkit-go/clusterkit/internal/etcdtest"
	"github.com/clusterkit-go/clusterkit/internal/keys"
	"github.com/clusterkit-go/clusterkit/internal/mapstore"
	"github.com/clusterkit-go/clusterkit/internal/state"
)

func TestMain(m *testing.M) { os.Exit(etcdtest.RunWithoutLeaks(m)) }

// seen collects what a follower hands over.
type seen struct {
	mu     sync.Mutex
	resets [][]string
	events []string
	epochs []uint64
}

func (s *seen) reset(_ context.Context, kvs []*mvccpb.KeyValue) {
	var ks []string
	for _, kv := range kvs {
		ks = append(ks, string(kv.Key)+"="+string(kv.Value))
	}
	s.mu.Lock()
	s.resets = append(s.resets, ks)
	s.mu.Unlock()
}

func (s *seen) event(_ context.Context, evs []*clientv3.Event) {
	s.mu.Lock()
	for _, ev := range evs {
		s.events = append(s.events, fmt.Sprintf("%s %s=%s", ev.Type, ev.Kv.Key, ev.Kv.Value))
	}
	s.mu.Unlock()
}

func (s *seen) counts() (int, int, []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var last []string
	if len(s.resets) > 0 {
		last = s.resets[len(s.resets)-1]
	}
	return len(s.resets), len(s.events), last
}

// run starts f on a goroutine that the test's end stops and waits for.
func run(t *testing.T, f func(ctx context.Context)) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); f(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
}

func TestKeysReadsThenFollowsAndReadsAgainAfterCompaction(t *testing.T) {
	srv := etcdtest.Start(t)
	c := srv.Client
	ctx := context.Background()
	for _, k := range []string{"/p/a", "/p/b", "/q/x"} {
		if _, err := c.Put(ctx, k, "1"); err != nil {
			t.Fatal(err)
		}
	}
	var s seen
	k := &Keys{Client: c, Key: "/p/", Prefix: true, Log: zap.NewNop(), Reset: s.reset, Events: s.event}
	run(t, k.Run)
	etcdtest.WaitFor(t, 5*time.Second, "first read", func() error {
		if n, _, last := s.counts(); n != 1 || len(last) != 2 {
			return fmt.Errorf("%d resets, last %v", n, last)
		}
		return nil
	})
	if _, err := c.Put(ctx, "/p/c", "2"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Delete(ctx, "/p/a"); err != nil {
		t.Fatal(err)
	}
	etcdtest.WaitFor(t, 5*time.Second, "events in order", func() error {
		s.mu.Lock()
		defer s.mu.Unlock()
		if len(s.events) != 2 || s.events[0] != "PUT /p/c=2" || s.events[1] != "DELETE /p/a=" {
			return fmt.Errorf("events %v", s.events)
		}
		return nil
	})
	if n, _, _ := s.counts(); n != 1 {
		t.Fatalf("%d resets without a compaction", n)
	}
}

func TestKeysFollowsOneKey(t *testing.T) {
	srv := etcdtest.Start(t)
	c := srv.Client
	ctx := context.Background()
	var s seen
	k := &Keys{Client: c, Key: "/k", Log: zap.NewNop(), Reset: s.reset, Events: s.event}
	run(t, k.Run)
	etcdtest.WaitFor(t, 5*time.Second, "first read", func() error {
		if n, _, last := s.counts(); n != 1 || len(last) != 0 {
			return fmt.Errorf("%d resets, last %v", n, last)
		}
		return nil
	})
	for _, key := range []string{"/k/under", "/k", "/kk"} {
		if _, err := c.Put(ctx, key, "v"); err != nil {
			t.Fatal(err)
		}
	}
	etcdtest.WaitFor(t, 5*time.Second, "the key's event", func() error {
		s.mu.Lock()
		defer s.mu.Unlock()
		if len(s.events) != 1 || s.events[0] != "PUT /k=v" {
			return fmt.Errorf("events %v", s.events)
		}
		return nil
	})
}

// writeMap stores m, the map after prev, as the leader does (without its guards).
func writeMap(t *testing.T, c *clientv3.Client, s keys.Schema, prev, m *state.Map, maxValue int) {
	t.Helper()
	enc, err := state.EncodeNext(prev, m, maxValue)
	if err != nil {
		t.Fatal(err)
	}
	before, head := enc.Writes(s, m.Epoch, maxValue)
	for _, op := range mapstore.Ops(before) {
		if _, err := c.Txn(context.Background()).Then(op).Commit(); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Txn(context.Background()).Then(mapstore.Ops(head)...).Commit(); err != nil {
		t.Fatal(err)
	}
}

// changeOne returns the map after m with partition p given to node a.
func changeOne(m *state.Map, p int) *state.Map {
	next := *m
	next.Epoch++
	next.Partitions = slices.Clone(m.Partitions)
	next.Partitions[p] = state.Entry{Holders: []string{"a"}, PrimaryEpoch: next.Epoch}
	return &next
}

func testMap(epoch uint64, partitions int) *state.Map {
	m := &state.Map{Epoch: epoch, Leader: "a", Nodes: map[string]state.Node{"a": {ID: "a", IP: "127.0.0.1:1"}}}
	for range partitions {
		m.Partitions = append(m.Partitions, state.Entry{Holders: []string{"a"}, PrimaryEpoch: epoch})
	}
	return m
}

func TestMapFollowsChunkedMapsAndRereadsAfterCompaction(t *testing.T) {
	srv := etcdtest.Start(t)
	c := srv.Client
	schema := keys.New("t")
	m1 := testMap(1, 64)
	writeMap(t, c, schema, nil, m1, 1<<20)
	var mu sync.Mutex
	var epochs []uint64
	var changes [][]int
	f := &Map{Client: c, Schema: schema, Log: zap.NewNop(), Apply: func(u Update) {
		if len(u.Map.Partitions) != 64 {
			t.Errorf("epoch %d has %d partitions", u.Map.Epoch, len(u.Map.Partitions))
		}
		if u.Changed != nil && u.Since != u.Map.Epoch-1 {
			t.Errorf("epoch %d read as a change since epoch %d", u.Map.Epoch, u.Since)
		}
		mu.Lock()
		epochs = append(epochs, u.Map.Epoch)
		changes = append(changes, u.Changed)
		mu.Unlock()
	}}
	r, err := f.Read(context.Background())
	if err != nil || r.Map == nil || r.Map.Epoch != 1 {
		t.Fatalf("read: %v %v", r.Map, err)
	}
	last := func() uint64 {
		mu.Lock()
		defer mu.Unlock()
		if len(epochs) == 0 {
			return 0
		}
		return epochs[len(epochs)-1]
	}
	run(t, func(ctx context.Context) { f.Run(ctx, r.Revision, r.Map) })
	m2 := testMap(2, 64)
	writeMap(t, c, schema, m1, m2, 512) // a checkpoint in chunks
	m3 := changeOne(m2, 17)
	writeMap(t, c, schema, m2, m3, 512) // a delta
	etcdtest.WaitFor(t, 5*time.Second, "chunked map and its change applied", func() error {
		if e := last(); e != 3 {
			return fmt.Errorf("at epoch %d", e)
		}
		return nil
	})
	mu.Lock()
	if len(changes) != 2 || changes[0] != nil || !slices.Equal(changes[1], []int{17}) {
		t.Errorf("changes %v, want a whole read then [17]", changes)
	}
	mu.Unlock()

	// A follower that starts from a compacted revision reads the map afresh.
	resp, err := c.Get(context.Background(), "compact-here")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Compact(context.Background(), resp.Header.Revision); err != nil {
		t.Fatal(err)
	}
	var late []uint64
	var lateMu sync.Mutex
	g := &Map{Client: c, Schema: schema, Log: zap.NewNop(), Apply: func(u Update) {
		lateMu.Lock()
		late = append(late, u.Map.Epoch)
		lateMu.Unlock()
	}}
	run(t, func(ctx context.Context) { g.Run(ctx, r.Revision, r.Map) })
	etcdtest.WaitFor(t, 5*time.Second, "late follower reads the map after compaction", func() error {
		lateMu.Lock()
		defer lateMu.Unlock()
		if len(late) == 0 || late[len(late)-1] != 3 {
			return fmt.Errorf("late follower saw %v", late)
		}
		return nil
	})
	writeMap(t, c, schema, m3, changeOne(m3, 5), 512)
	etcdtest.WaitFor(t, 5*time.Second, "both follow the next map", func() error {
		lateMu.Lock()
		defer lateMu.Unlock()
		if e := last(); e != 4 || late[len(late)-1] != 4 {
			return fmt.Errorf("at %d and %v", e, late)
		}
		return nil
	})
}
