package main

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/clusterkit-go/clusterkit/internal/keys"
	"github.com/clusterkit-go/clusterkit/internal/mapstore"
	"github.com/clusterkit-go/clusterkit/internal/state"
	"github.com/clusterkit-go/clusterkit/pkg/embed"
)

// clusterName is the name of every measured cluster: each (P, N) case has an etcd of its own.
const clusterName = "scale"

// readTimeout bounds each etcd read of the harness: a map of 65536 partitions is several MiB.
const readTimeout = 10 * time.Second

// cluster is one case's etcd, the nodes running against it, and the watch that tallies what
// is written under the cluster's prefix. Its methods are called from one goroutine.
type cluster struct {
	settings nodeSettings
	timeout  time.Duration
	dir      string
	// bin is the node binary when the nodes run as processes, "" when they run in this one;
	// http asks node processes.
	bin  string
	http *http.Client

	etcd   *embed.Member
	client *clientv3.Client
	schema keys.Schema
	writes *writes
	stop   context.CancelFunc
	wg     sync.WaitGroup

	// nodes are the live nodes in start order; started counts every node ever started, for IDs.
	nodes   []node
	started int
	// last is the newest map read from etcd; a published epoch never changes, so it is read once.
	last *state.Map
}

// startCluster starts an etcd in dir and the watch of the cluster's prefix; no node yet. With
// bin, the nodes will be processes of that binary.
func startCluster(ctx context.Context, dir string, partitions, replication int, timeout time.Duration, bin string) (*cluster, error) {
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
		settings: nodeSettings{
			partitions:   partitions,
			replication:  replication,
			startTimeout: timeout,
			endpoints:    m.Endpoints(),
		},
		timeout: timeout,
		dir:     dir,
		bin:     bin,
		http:    &http.Client{Transport: &http.Transport{}, Timeout: readTimeout},
		etcd:    m,
		client:  client,
		schema:  keys.New(clusterName),
		writes:  &writes{},
	}
	wctx, stop := context.WithCancel(context.Background())
	c.stop = stop
	c.wg.Go(func() { c.writes.run(wctx, client, c.schema) })
	return c, nil
}

// close stops every node, the watch and etcd, and waits for them.
func (c *cluster) close() {
	var wg sync.WaitGroup
	for _, n := range c.nodes {
		wg.Go(func() { n.stop() })
	}
	wg.Wait()
	c.nodes = nil
	c.http.CloseIdleConnections()
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
	started := make([]node, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		c.started++
		id := fmt.Sprintf("node-%d", c.started)
		wg.Go(func() {
			if c.bin != "" {
				started[i], errs[i] = startProc(ctx, c.settings, c.bin, c.dir, id, c.http)
			} else {
				started[i], errs[i] = startInproc(ctx, c.settings, c.dir, id)
			}
		})
	}
	wg.Wait()
	for i, nd := range started {
		if errs[i] == nil {
			c.nodes = append(c.nodes, nd)
		}
	}
	return errors.Join(errs...)
}

// pollEvery is how often the epochs of the nodes are polled for the new map's arrival: every
// millisecond in this process, every 5ms over HTTP, so that polling stays a small part of what
// node processes do.
func (c *cluster) pollEvery() time.Duration {
	if c.bin != "" {
		return 5 * time.Millisecond
	}
	return time.Millisecond
}

// victim returns the index of the newest live node that does not lead.
func (c *cluster) victim(ctx context.Context) (int, error) {
	if len(c.nodes) < 2 {
		return 0, fmt.Errorf("%d live nodes: none can go", len(c.nodes))
	}
	for i := len(c.nodes) - 1; i >= 0; i-- {
		leads, err := c.nodes[i].leads(ctx)
		if err != nil {
			return 0, err
		}
		if !leads {
			return i, nil
		}
	}
	return 0, errors.New("every live node leads")
}

// leave stops the newest node that does not lead gracefully (Stop, or SIGTERM for a process).
func (c *cluster) leave(ctx context.Context) (change, error) {
	i, err := c.victim(ctx)
	if err != nil {
		return change{}, err
	}
	gone := c.nodes[i]
	c.nodes = slices.Delete(c.nodes, i, i+1)
	ch := change{at: time.Now(), gone: gone.id()}
	return ch, gone.stop()
}

// crash kills the newest node that does not lead without a word to etcd, and then revokes its
// lease, as if its TTL had passed (as pkg/clustertest's Crash does): the change is made at the
// revocation.
func (c *cluster) crash(ctx context.Context) (change, error) {
	i, err := c.victim(ctx)
	if err != nil {
		return change{}, err
	}
	gone := c.nodes[i]
	c.nodes = slices.Delete(c.nodes, i, i+1)
	if err := gone.kill(); err != nil {
		return change{}, fmt.Errorf("kill %s: %w", gone.id(), err)
	}
	rctx, cancel := context.WithTimeout(ctx, readTimeout)
	defer cancel()
	resp, err := c.client.Get(rctx, c.schema.Node(gone.id()))
	if err != nil {
		return change{}, fmt.Errorf("read the record of %s: %w", gone.id(), err)
	}
	if len(resp.Kvs) != 1 || resp.Kvs[0].Lease == 0 {
		return change{}, fmt.Errorf("%s has no record with a lease to revoke", gone.id())
	}
	ch := change{at: time.Now(), gone: gone.id()}
	if _, err := c.client.Revoke(rctx, clientv3.LeaseID(resp.Kvs[0].Lease)); err != nil {
		return ch, fmt.Errorf("revoke the lease of %s: %w", gone.id(), err)
	}
	return ch, nil
}

// settled reports nil when every live node holds the map that is in etcd, and that map lists
// exactly the live nodes and has no copy pending and no partition moving; otherwise it says
// what is missing.
func (c *cluster) settled(ctx context.Context) error {
	if len(c.nodes) == 0 {
		return errors.New("no live node")
	}
	var e uint64
	for i, n := range c.nodes {
		ne, err := n.epoch(ctx)
		if err != nil {
			return fmt.Errorf("%s: %w", n.id(), err)
		}
		if i == 0 {
			e = ne
		} else if ne != e {
			return fmt.Errorf("%s holds epoch %d, %s holds %d", c.nodes[0].id(), e, n.id(), ne)
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
	for _, n := range c.nodes {
		want = append(want, n.id())
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
	r, err := mapstore.ReadMap(rctx, c.client, c.schema, 0)
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

// tally is what the watch counted: puts and the bytes of their values, in all and for the map
// (its head and every key under partitions/, whatever their layout).
type tally struct {
	puts, bytes, mapBytes int64
}

func (t tally) minus(o tally) tally {
	return tally{puts: t.puts - o.puts, bytes: t.bytes - o.bytes, mapBytes: t.mapBytes - o.mapBytes}
}

// writes tallies the puts under a cluster's prefix as a watch delivers them, and keeps the
// epoch and nodes of every map head written.
type writes struct {
	mu    sync.Mutex
	sum   tally
	heads []head
	// rev is the revision up to which every event has been counted.
	rev int64
	err error
}

// run watches the cluster's prefix until ctx ends. The watch starts at the current revision
// (etcd answers progress requests only for watchers that are not behind, and one started at a
// future revision counts as behind); upTo waits for it.
func (w *writes) run(ctx context.Context, client *clientv3.Client, s keys.Schema) {
	headKey := s.Partitions()
	ch := client.Watch(clientv3.WithRequireLeader(ctx), s.Prefix(), clientv3.WithPrefix())
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
			key := string(ev.Kv.Key)
			if !strings.HasPrefix(key, headKey) {
				continue
			}
			w.sum.mapBytes += int64(len(ev.Kv.Value))
			if key != headKey {
				continue
			}
			m, err := state.DecodeHead(ev.Kv.Value)
			if err != nil {
				if w.err == nil {
					w.err = fmt.Errorf("map head at revision %d: %w", ev.Kv.ModRevision, err)
				}
				continue
			}
			w.heads = append(w.heads, head{epoch: m.Epoch, nodes: m.Members()})
		}
		if resp.IsProgressNotify() {
			w.rev = max(w.rev, resp.Header.Revision)
		}
		w.mu.Unlock()
	}
}

// headsAfter returns the heads of the maps after epoch seen so far, in publication order.
func (w *writes) headsAfter(epoch uint64) []head {
	w.mu.Lock()
	defer w.mu.Unlock()
	i := slices.IndexFunc(w.heads, func(h head) bool { return h.epoch > epoch })
	if i < 0 {
		return nil
	}
	return slices.Clone(w.heads[i:])
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
