package main

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/clusterkit-go/clusterkit/internal/keys"
	"github.com/clusterkit-go/clusterkit/internal/state"
	"github.com/clusterkit-go/clusterkit/pkg/clusterkit"
	"github.com/clusterkit-go/clusterkit/pkg/embed"
)

// clusterName is the name of every measured cluster: each (P, N) case has an etcd of its own.
const clusterName = "scale"

// readTimeout bounds each etcd read of the harness: a map of 65536 partitions is several MiB.
const readTimeout = 10 * time.Second

// cluster is one case's etcd, the nodes running against it, and the watch that tallies what
// is written under the cluster's prefix. Its methods are called from one goroutine.
type cluster struct {
	partitions  int
	replication int
	timeout     time.Duration
	dir         string

	etcd   *embed.Member
	client *clientv3.Client
	schema keys.Schema
	writes *writes
	stop   context.CancelFunc
	wg     sync.WaitGroup

	// nodes are the live nodes in start order; started counts every node ever started, for IDs.
	nodes   []*clusterkit.ClusterKit
	started int
	// last is the newest map read from etcd; a published epoch never changes, so it is read once.
	last *state.Map
}

// startCluster starts an etcd in dir and the watch of the cluster's prefix; no node yet.
func startCluster(ctx context.Context, dir string, partitions, replication int, timeout time.Duration) (*cluster, error) {
	m, err := embed.Start(ctx, embed.Config{
		Name:          "scale",
		Dir:           filepath.Join(dir, "etcd"),
		ClientAddr:    "127.0.0.1:0",
		PeerAddr:      "127.0.0.1:0",
		UnsafeNoFsync: true,
	})
	if err != nil {
		return nil, err
	}
	client, err := clientv3.New(clientv3.Config{Endpoints: m.Endpoints(), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		m.Close()
		return nil, fmt.Errorf("etcd client: %w", err)
	}
	c := &cluster{
		partitions:  partitions,
		replication: replication,
		timeout:     timeout,
		dir:         dir,
		etcd:        m,
		client:      client,
		schema:      keys.New(clusterName),
		writes:      &writes{},
	}
	wctx, stop := context.WithCancel(context.Background())
	c.stop = stop
	c.wg.Go(func() { c.writes.run(wctx, client, c.schema.Prefix(), c.schema.Partitions()) })
	return c, nil
}

// close stops every node, the watch and etcd, and waits for them.
func (c *cluster) close() {
	var wg sync.WaitGroup
	for _, ck := range c.nodes {
		wg.Go(func() { ck.Stop() })
	}
	wg.Wait()
	c.nodes = nil
	if c.stop != nil {
		c.stop()
	}
	c.wg.Wait()
	c.client.Close()
	c.etcd.Close()
}

// start starts n nodes at once and adds those that started to the live nodes. Each node has
// its own etcd client, hooks that do nothing, and a LeaseTTL of 5s.
func (c *cluster) start(ctx context.Context, n int) error {
	cks := make([]*clusterkit.ClusterKit, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		c.started++
		id := fmt.Sprintf("node-%d", c.started)
		ck, err := clusterkit.NewClusterKit(clusterkit.Options{
			NodeID:            id,
			HTTPAddr:          "127.0.0.1:0",
			DataDir:           filepath.Join(c.dir, id),
			ClusterName:       clusterName,
			PartitionCount:    c.partitions,
			ReplicationFactor: c.replication,
			LeaseTTL:          5 * time.Second,
			StartTimeout:      c.timeout,
			EtcdEndpoints:     c.etcd.Endpoints(),
		})
		if err != nil {
			errs[i] = err
			continue
		}
		ck.OnPartitionChange(func(string, []*clusterkit.Node, *clusterkit.Node) {})
		wg.Go(func() {
			if errs[i] = ck.StartContext(ctx); errs[i] == nil {
				cks[i] = ck
			}
		})
	}
	wg.Wait()
	for _, ck := range cks {
		if ck != nil {
			c.nodes = append(c.nodes, ck)
		}
	}
	return errors.Join(errs...)
}

// leave stops the newest node that does not lead with Stop, and returns, for each other node
// that held a map without it before ctx ended, how long after the call it first did.
func (c *cluster) leave(ctx context.Context) ([]time.Duration, error) {
	i := len(c.nodes) - 1
	for i > 0 && c.nodes[i].IsLeader() {
		i--
	}
	gone := c.nodes[i]
	id := gone.GetMyNodeID()
	rest := slices.Delete(slices.Clone(c.nodes), i, i+1)
	seen := make([]time.Duration, len(rest))
	start := time.Now()
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for left := len(rest); left > 0; {
			for j, ck := range rest {
				if seen[j] == 0 && !lists(ck, id) {
					seen[j] = time.Since(start)
					left--
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	})
	gone.Stop()
	c.nodes = rest
	wg.Wait()
	var out []time.Duration
	for _, d := range seen {
		if d > 0 {
			out = append(out, d)
		}
	}
	if len(out) < len(rest) {
		return out, fmt.Errorf("%d of %d nodes still list %s", len(rest)-len(out), len(rest), id)
	}
	return out, nil
}

// lists reports whether the map ck holds lists node id.
func lists(ck *clusterkit.ClusterKit, id string) bool {
	return slices.ContainsFunc(ck.Nodes(), func(n clusterkit.Node) bool { return n.ID == id })
}

// settled reports nil when every live node holds the map that is in etcd, and that map lists
// exactly the live nodes and has no copy pending and no partition moving; otherwise it says
// what is missing.
func (c *cluster) settled(ctx context.Context) error {
	if len(c.nodes) == 0 {
		return errors.New("no live node")
	}
	e := c.nodes[0].Epoch()
	for _, ck := range c.nodes[1:] {
		if ck.Epoch() != e {
			return fmt.Errorf("%s holds epoch %d, %s holds %d", c.nodes[0].GetMyNodeID(), e, ck.GetMyNodeID(), ck.Epoch())
		}
	}
	if c.last == nil || c.last.Epoch < e {
		if err := c.readMap(ctx); err != nil {
			return err
		}
	}
	m := c.last
	if m.Epoch != e {
		return fmt.Errorf("the nodes hold epoch %d, etcd has %d", e, m.Epoch)
	}
	var want []string
	for _, ck := range c.nodes {
		want = append(want, ck.GetMyNodeID())
	}
	slices.Sort(want)
	if got := slices.Sorted(maps.Keys(m.Nodes)); !slices.Equal(got, want) {
		return fmt.Errorf("map epoch %d lists %v, want %v", m.Epoch, got, want)
	}
	if pending, moving := inFlight(m); pending > 0 || moving > 0 {
		return fmt.Errorf("map epoch %d has %d copies pending, %d partitions moving", m.Epoch, pending, moving)
	}
	return nil
}

// readMap reads the current map from etcd into c.last.
func (c *cluster) readMap(ctx context.Context) error {
	rctx, cancel := context.WithTimeout(ctx, readTimeout)
	defer cancel()
	r, err := state.ReadMap(rctx, c.client, c.schema, 0)
	if err != nil {
		return fmt.Errorf("read the map: %w", err)
	}
	if r.Map == nil {
		return errors.New("no map in etcd")
	}
	c.last = r.Map
	return nil
}

// inFlight counts the pending copies of m and its partitions whose target differs from their
// holders.
func inFlight(m *state.Map) (pending, moving int) {
	for i := range m.Partitions {
		pending += len(m.Partitions[i].Pending)
		if m.Partitions[i].Target != nil {
			moving++
		}
	}
	return pending, moving
}

// waitSettled polls settled until it holds or ctx ends; then it returns the last reason.
func (c *cluster) waitSettled(ctx context.Context) error {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		err := c.settled(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return err
		case <-tick.C:
		}
	}
}

// revision returns etcd's current revision.
func (c *cluster) revision(ctx context.Context) (int64, error) {
	rctx, cancel := context.WithTimeout(ctx, readTimeout)
	defer cancel()
	resp, err := c.client.Get(rctx, c.schema.Config(), clientv3.WithCountOnly())
	if err != nil {
		return 0, fmt.Errorf("read etcd revision: %w", err)
	}
	return resp.Header.Revision, nil
}

// tally returns what the watch has counted up to etcd's current revision.
func (c *cluster) tally(ctx context.Context) (tally, error) {
	rev, err := c.revision(ctx)
	if err != nil {
		return tally{}, err
	}
	return c.writes.upTo(ctx, c.client, rev)
}

// dbSize is the size of etcd's database file.
func (c *cluster) dbSize(ctx context.Context) (int64, error) {
	rctx, cancel := context.WithTimeout(ctx, readTimeout)
	defer cancel()
	st, err := c.client.Status(rctx, c.etcd.Endpoints()[0])
	if err != nil {
		return 0, fmt.Errorf("etcd status: %w", err)
	}
	return st.DbSize, nil
}

// clusterBody is the size of the GET /cluster body of the first live node.
func (c *cluster) clusterBody() (int, error) {
	if len(c.nodes) == 0 {
		return 0, errors.New("no live node")
	}
	w := httptest.NewRecorder()
	c.nodes[0].Handler().ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/cluster", nil))
	if w.Code != http.StatusOK {
		return 0, fmt.Errorf("GET /cluster: %d %s", w.Code, strings.TrimSpace(w.Body.String()))
	}
	return w.Body.Len(), nil
}

// heapInuse is the Go heap in use by the whole process (etcd, every node and the harness) after
// a garbage collection.
func heapInuse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// tally is what the watch counted: puts and the bytes of their values, in all and for the map
// (its head and chunks).
type tally struct {
	puts, bytes, mapBytes int64
}

func (t tally) minus(o tally) tally {
	return tally{puts: t.puts - o.puts, bytes: t.bytes - o.bytes, mapBytes: t.mapBytes - o.mapBytes}
}

// writes tallies the puts under a prefix as a watch delivers them.
type writes struct {
	mu  sync.Mutex
	sum tally
	// rev is the revision up to which every event has been counted.
	rev int64
	err error
}

// run watches prefix until ctx ends. Keys starting with mapKey count as the map's. The watch
// starts at the current revision (etcd answers progress requests only for watchers that are
// not behind, and one started at a future revision counts as behind); upTo waits for it.
func (w *writes) run(ctx context.Context, client *clientv3.Client, prefix, mapKey string) {
	ch := client.Watch(clientv3.WithRequireLeader(ctx), prefix, clientv3.WithPrefix())
	for resp := range ch {
		w.mu.Lock()
		if err := resp.Err(); err != nil && w.err == nil && ctx.Err() == nil {
			w.err = err
		}
		for _, ev := range resp.Events {
			w.rev = max(w.rev, ev.Kv.ModRevision)
			if ev.Type != clientv3.EventTypePut {
				continue
			}
			w.sum.puts++
			w.sum.bytes += int64(len(ev.Kv.Value))
			if strings.HasPrefix(string(ev.Kv.Key), mapKey) {
				w.sum.mapBytes += int64(len(ev.Kv.Value))
			}
		}
		if resp.IsProgressNotify() {
			w.rev = max(w.rev, resp.Header.Revision)
		}
		w.mu.Unlock()
	}
}

// upTo waits until every event up to revision rev has been counted and returns the tally. It
// asks etcd for a progress notification, which tells the watch that nothing else happened.
func (w *writes) upTo(ctx context.Context, client *clientv3.Client, rev int64) (tally, error) {
	ctx, cancel := context.WithTimeout(ctx, readTimeout)
	defer cancel()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for n := 0; ; n++ {
		w.mu.Lock()
		sum, seen, err := w.sum, w.rev, w.err
		w.mu.Unlock()
		if err != nil {
			return tally{}, fmt.Errorf("watch: %w", err)
		}
		if seen >= rev {
			return sum, nil
		}
		if n%20 == 0 {
			// The progress request goes to the watch stream of the same metadata.
			if err := client.RequestProgress(clientv3.WithRequireLeader(ctx)); err != nil {
				return tally{}, fmt.Errorf("watch progress: %w", err)
			}
		}
		select {
		case <-ctx.Done():
			return tally{}, fmt.Errorf("watch reached revision %d, not %d: %w", seen, rev, ctx.Err())
		case <-tick.C:
		}
	}
}
