package clustertest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/clusterkit-go/clusterkit/internal/crash"
	"github.com/clusterkit-go/clusterkit/internal/etcdtest"
	"github.com/clusterkit-go/clusterkit/internal/follow"
	"github.com/clusterkit-go/clusterkit/internal/keys"
	"github.com/clusterkit-go/clusterkit/internal/mapstore"
	"github.com/clusterkit-go/clusterkit/internal/state"
	"github.com/clusterkit-go/clusterkit/pkg/clusterkit"
)

// Defaults the kit gives the nodes where the base options leave a field zero: short enough for
// tests, long enough for a loaded machine.
const (
	DefaultLeaseTTL     = 2 * time.Second
	DefaultStartTimeout = 20 * time.Second
)

// Cluster is a ClusterKit cluster running in the test process. Its methods fail the test on
// error and are safe for concurrent use.
type Cluster struct {
	tb     testing.TB
	etcd   *etcdtest.Server
	name   string
	base   clusterkit.Options
	schema keys.Schema
	check  *checker
	stop   context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	nodes   map[string]*clusterkit.ClusterKit
	proxies map[string]*proxy
	dirs    map[string]string
}

// New starts an embedded etcd and the invariant checker, and returns a cluster with no node.
// base is the options every node starts from: NodeID, HTTPAddr, DataDir, ClusterName and the
// etcd settings are the kit's; a zero LeaseTTL or StartTimeout gets the kit's default. At the
// end of the test every node is stopped, and the test fails if a published map broke an
// invariant.
func New(tb testing.TB, base clusterkit.Options) *Cluster {
	tb.Helper()
	if base.LeaseTTL == 0 {
		base.LeaseTTL = DefaultLeaseTTL
	}
	if base.StartTimeout == 0 {
		base.StartTimeout = DefaultStartTimeout
	}
	c := &Cluster{
		tb:      tb,
		etcd:    etcdtest.Start(tb),
		name:    clusterName(tb.Name()),
		base:    base,
		nodes:   map[string]*clusterkit.ClusterKit{},
		proxies: map[string]*proxy{},
		dirs:    map[string]string{},
	}
	c.schema = keys.New(c.name)
	c.check = &checker{inv: newInvariants(cmpOr(base.ReplicationFactor, clusterkit.DefaultReplicationFactor))}
	ctx, stop := context.WithCancel(context.Background())
	c.stop = stop
	f := &follow.Map{Client: c.etcd.Client, Schema: c.schema, Log: zap.NewNop(), Apply: func(u follow.Update) {
		c.check.feed(u.Map, u.Revision, c.ackedAt(ctx, u.Revision))
	}}
	c.wg.Go(func() { f.Run(ctx, 0, nil) })
	tb.Cleanup(c.cleanup)
	return c
}

// ackedAt reads acknowledgements as etcd held them at revision rev, the revision a map was
// written at: a node drops the copies it acknowledged from its record only once it holds a map
// that no longer waits for them. Each node's record is read once per map. A read that fails (the
// revision compacted, the test ending) counts as acknowledged: the checker reports only what it
// saw.
func (c *Cluster) ackedAt(ctx context.Context, rev int64) acked {
	records := map[string]map[int]uint64{}
	failed := map[string]bool{}
	return func(p int, node string, since uint64) bool {
		if _, ok := records[node]; !ok && !failed[node] {
			rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			resp, err := c.etcd.Client.Get(rctx, c.schema.Handoff(node), clientv3.WithRev(rev))
			cancel()
			switch {
			case err != nil:
				failed[node] = true
			case len(resp.Kvs) == 0:
				records[node] = nil
			default:
				_, a, err := state.DecodeAcks(resp.Kvs[0].Value, math.MaxInt)
				if err != nil {
					c.tb.Errorf("unreadable acknowledgement record of %s: %v", node, err)
				}
				records[node] = a
			}
		}
		if failed[node] {
			return true
		}
		s, ok := records[node][p]
		return ok && s == since
	}
}

func cmpOr(a, b int) int {
	if a != 0 {
		return a
	}
	return b
}

// clusterName turns a test name into a valid cluster name.
func clusterName(test string) string {
	var b strings.Builder
	for _, r := range test {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	s := b.String()
	if len(s) > 128 {
		s = s[len(s)-128:]
	}
	return s
}

func (c *Cluster) cleanup() {
	c.mu.Lock()
	nodes := c.nodes
	c.nodes = map[string]*clusterkit.ClusterKit{}
	c.mu.Unlock()
	var wg sync.WaitGroup
	for _, ck := range nodes {
		wg.Go(func() { ck.Stop() })
	}
	wg.Wait()
	c.stop()
	c.wg.Wait()
	c.mu.Lock()
	for _, p := range c.proxies {
		p.close()
	}
	c.mu.Unlock()
	if bad := c.Violations(); len(bad) > 0 {
		c.tb.Errorf("clustertest: %d invariant violations in the published maps:\n%s", len(bad), strings.Join(bad, "\n"))
	}
}

// Inject runs fault, which writes to the cluster's etcd (as `etcdctl put` or `del` would: a
// corrupt map, an older one, a bad record), with a client of it. The maps fault writes are not
// checked against the invariants, since ClusterKit did not publish them; the maps published
// after it are, against the last map ClusterKit published before it.
func (c *Cluster) Inject(fault func(ctx context.Context, etcd *clientv3.Client) error) {
	c.tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	before, err := c.etcd.Client.Get(ctx, c.schema.Config())
	if err != nil {
		c.tb.Fatalf("clustertest: inject: %v", err)
	}
	done := c.check.inject(before.Header.Revision)
	err = fault(ctx, c.etcd.Client)
	after, gerr := c.etcd.Client.Get(ctx, c.schema.Config())
	if gerr != nil {
		c.tb.Fatalf("clustertest: inject: %v", gerr)
	}
	done(after.Header.Revision)
	if err != nil {
		c.tb.Fatalf("clustertest: inject: %v", err)
	}
}

// Etcd is a client of the cluster's etcd, closed when the test ends.
func (c *Cluster) Etcd() *clientv3.Client { return c.etcd.Client }

// Name is the cluster's name: its keys live under /clusterkit/<Name>/.
func (c *Cluster) Name() string { return c.name }

// Options returns the options node id starts with: the base options with the node's ID, a free
// port on 127.0.0.1, its own DataDir (the same one again for a restart) and etcd reached
// through the node's own proxy.
func (c *Cluster) Options(id string) clusterkit.Options {
	c.tb.Helper()
	o := c.base
	o.NodeID = id
	o.HTTPAddr = "127.0.0.1:0"
	o.ClusterName = c.name
	o.EtcdClient = nil
	o.JoinAddr = ""
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.dirs[id] == "" {
		c.dirs[id] = c.tb.TempDir()
	}
	o.DataDir = c.dirs[id]
	p := c.proxies[id]
	if p == nil {
		var err error
		if p, err = newProxy(strings.TrimPrefix(c.etcd.Member.Endpoints()[0], "http://")); err != nil {
			c.tb.Fatalf("clustertest: proxy for %s: %v", id, err)
		}
		c.proxies[id] = p
	}
	o.EtcdEndpoints = []string{"http://" + p.addr()}
	return o
}

// Start creates a node from opts, passes it to each setup (to register hooks before it
// starts), and starts it. It fails the test if the node does not start.
func (c *Cluster) Start(opts clusterkit.Options, setup ...func(*clusterkit.ClusterKit)) *clusterkit.ClusterKit {
	c.tb.Helper()
	ck, err := c.TryStart(opts, setup...)
	if err != nil {
		c.tb.Fatalf("clustertest: start %s: %v", opts.NodeID, err)
	}
	return ck
}

// TryStart is Start returning the error instead of failing the test.
func (c *Cluster) TryStart(opts clusterkit.Options, setup ...func(*clusterkit.ClusterKit)) (*clusterkit.ClusterKit, error) {
	ck, err := clusterkit.NewClusterKit(opts)
	if err != nil {
		return nil, err
	}
	for _, s := range setup {
		s(ck)
	}
	if err := ck.Start(); err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.nodes[opts.NodeID] = ck
	c.mu.Unlock()
	return ck, nil
}

// Add starts node id with c.Options(id).
func (c *Cluster) Add(id string, setup ...func(*clusterkit.ClusterKit)) *clusterkit.ClusterKit {
	c.tb.Helper()
	return c.Start(c.Options(id), setup...)
}

// Node returns the live node id, nil when there is none.
func (c *Cluster) Node(id string) *clusterkit.ClusterKit {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[id]
}

// Nodes returns the live nodes by ID.
func (c *Cluster) Nodes() map[string]*clusterkit.ClusterKit {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.nodes)
}

// take removes node id from the live nodes and returns it; it fails the test if there is none.
func (c *Cluster) take(id string) *clusterkit.ClusterKit {
	c.tb.Helper()
	c.mu.Lock()
	ck := c.nodes[id]
	delete(c.nodes, id)
	c.mu.Unlock()
	if ck == nil {
		c.tb.Fatalf("clustertest: no live node %s", id)
	}
	return ck
}

// Stop stops node id gracefully (clusterkit's Stop).
func (c *Cluster) Stop(id string) {
	c.tb.Helper()
	c.take(id).Stop()
}

// Drain drains node id (clusterkit's Drain, which stops it once its partitions are handed
// over); it fails the test if ctx ends first.
func (c *Cluster) Drain(ctx context.Context, id string) {
	c.tb.Helper()
	ck := c.Node(id)
	if ck == nil {
		c.tb.Fatalf("clustertest: no live node %s", id)
	}
	if err := ck.Drain(ctx); err != nil {
		c.tb.Fatalf("clustertest: drain %s: %v", id, err)
	}
	c.take(id)
}

// Kill stops node id as kill -9 would: its goroutines end without a word to etcd, and the
// cluster notices when its lease expires, one LeaseTTL later.
func (c *Cluster) Kill(id string) {
	c.tb.Helper()
	if !crash.Stop(c.take(id)) {
		c.tb.Fatalf("clustertest: cannot kill %s", id)
	}
}

// Crash is Kill with the node's lease revoked at once, as if its TTL had passed, so that the
// cluster notices at once.
func (c *Cluster) Crash(id string) {
	c.tb.Helper()
	c.Kill(id)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := c.etcd.Client.Get(ctx, c.schema.Node(id))
	if err != nil {
		c.tb.Fatalf("clustertest: read the record of %s: %v", id, err)
	}
	if len(resp.Kvs) == 1 && resp.Kvs[0].Lease != 0 {
		if _, err := c.etcd.Client.Revoke(ctx, clientv3.LeaseID(resp.Kvs[0].Lease)); err != nil {
			c.tb.Fatalf("clustertest: expire the lease of %s: %v", id, err)
		}
	}
}

// Pause cuts node id off from etcd: its open etcd connections are closed and new ones are held
// unanswered until Resume. The others see it as a frozen process: its lease expires after its
// TTL and its partitions move; the node itself fences itself at its lease deadline.
func (c *Cluster) Pause(id string) {
	c.tb.Helper()
	c.proxy(id).pause()
}

// Resume lets node id reach etcd again.
func (c *Cluster) Resume(id string) {
	c.tb.Helper()
	c.proxy(id).unpause()
}

func (c *Cluster) proxy(id string) *proxy {
	c.tb.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.proxies[id]
	if p == nil {
		c.tb.Fatalf("clustertest: node %s was never started", id)
	}
	return p
}

// Converged reports nil when every live node holds the same map, placed on exactly the live
// nodes, with min(N, ReplicationFactor) distinct holders for every partition and no copy in
// flight, and exactly one live node leads; otherwise it says what is missing.
func (c *Cluster) Converged() error {
	nodes := c.Nodes()
	if len(nodes) == 0 {
		return errors.New("no live node")
	}
	want := slices.Sorted(maps.Keys(nodes))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// The head first: its node table and epoch settle most polls without reading the
	// partitions, which is most of the work for a large map.
	resp, err := c.etcd.Client.Get(ctx, c.schema.Partitions())
	if err != nil {
		return fmt.Errorf("read the map: %w", err)
	}
	if len(resp.Kvs) == 0 {
		return errors.New("no map published")
	}
	m, err := state.DecodeHead(resp.Kvs[0].Value)
	if err != nil {
		return err
	}
	if got := m.Members(); !slices.Equal(got, want) {
		return fmt.Errorf("map epoch %d lists %v, want %v", m.Epoch, got, want)
	}
	for _, id := range want {
		if e := nodes[id].Epoch(); e != m.Epoch {
			return fmt.Errorf("%s holds epoch %d, etcd has %d", id, e, m.Epoch)
		}
	}
	if _, err := mapstore.ReadNext(ctx, c.etcd.Client, c.schema, m, resp.Header.Revision, nil); err != nil {
		return fmt.Errorf("read the map: %w", err)
	}
	leaders := 0
	for _, id := range want {
		ck := nodes[id]
		if e := ck.Epoch(); e != m.Epoch {
			return fmt.Errorf("%s holds epoch %d, etcd has %d", id, e, m.Epoch)
		}
		if ck.IsLeader() {
			leaders++
		}
	}
	if leaders != 1 {
		return fmt.Errorf("%d nodes lead", leaders)
	}
	holders := min(len(want), cmpOr(c.base.ReplicationFactor, clusterkit.DefaultReplicationFactor))
	for i := range m.Partitions {
		e := &m.Partitions[i]
		if len(e.Pending) > 0 || e.Target != nil {
			return fmt.Errorf("partition-%d is still moving: holders %v, pending %v", i, e.Holders, e.Pending)
		}
		if len(e.Holders) != holders {
			return fmt.Errorf("partition-%d has holders %v, want %d", i, e.Holders, holders)
		}
		for j, id := range e.Holders {
			if !slices.Contains(want, id) || slices.Contains(e.Holders[:j], id) {
				return fmt.Errorf("partition-%d has holders %v: not distinct live nodes", i, e.Holders)
			}
		}
	}
	return nil
}

// WaitConverged polls Converged until it holds, failing the test after within.
func (c *Cluster) WaitConverged(within time.Duration) {
	c.tb.Helper()
	etcdtest.WaitFor(c.tb, within, "cluster converged", c.Converged)
}

// Violations returns the invariant violations seen so far in the maps published in etcd, one
// line each: two primaries of one partition at one primary epoch, an epoch or a primary epoch
// going backwards, a partition with fewer than min(N, ReplicationFactor) holders and copies
// (outside a crash grace period), or a node routed to while it still copies.
func (c *Cluster) Violations() []string {
	bad, _ := c.check.result()
	return bad
}

// MapsChecked is how many published maps the checker has seen.
func (c *Cluster) MapsChecked() int {
	_, n := c.check.result()
	return n
}
