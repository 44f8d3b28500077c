package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/clusterkit-go/clusterkit/internal/proctest"
	"github.com/clusterkit-go/clusterkit/internal/wiretest"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

const (
	// failoverTTL is the nodes' LEASE_TTL.
	failoverTTL = 2 * time.Second
	// crashTrials is how many times a primary is killed and restarted: each node once, one twice.
	crashTrials = 5
	// pauseFor is how long a node is stopped with SIGSTOP: its lease expires meanwhile.
	pauseFor = failoverTTL + 2*time.Second
	// claimsEvery is the invariant checker's sampling period.
	claimsEvery = 20 * time.Millisecond
	// drainingNode leaves with DRAIN_ON_SIGTERM=true at the end of the test.
	drainingNode = "node-4"
)

// Four clusterkit-node processes share an etcd process. A primary killed with SIGKILL has its
// partitions taken over by the survivors within the lease TTL plus one second; a node stopped
// with SIGSTOP for longer than its TTL loses its partitions meanwhile and claims none of them
// once it resumes, then rejoins; and throughout, no two nodes ever claim the same partition at
// the same primary epoch, and a primary deposed by a newer map claims its partitions only from
// an older map and only transiently (sampled from every live node's GET /cluster/claims every
// 20ms).
func TestFailover(t *testing.T) {
	began := time.Now()
	bin := buildNodeBinary(t)
	etcd := startPlainEtcdProcess(t)
	t.Logf("built clusterkit-node (race: %v) and started etcd %s in %v", proctest.RaceEnabled, etcd.Version, time.Since(began).Round(time.Millisecond))

	c := newFailoverCluster(t, bin, etcd.URL)
	began = time.Now()
	for i := 1; i <= 4; i++ {
		c.launch(t, fmt.Sprintf("node-%d", i))
	}
	for _, n := range c.nodes {
		n.waitReady(t)
	}
	c.waitStable(t, 30*time.Second)
	t.Logf("4 nodes ready and agreeing in %v", time.Since(began).Round(time.Millisecond))

	checker := startClaimChecker(c)
	defer func() {
		checker.stop()
		k := checker
		t.Logf("invariant: %d sampling rounds of two or more answers, %d claims answers, %d violations", k.rounds, k.samples, len(k.violations))
		if k.overlapRounds > 0 {
			t.Logf("in %d rounds two or more nodes claimed one partition at differing primary epochs (a map reaches the nodes at slightly different times); at most %d: %s",
				k.overlapRounds, k.maxClaimers, k.maxClaimersWhat)
			t.Logf("longest a deposed primary was seen claiming (bound %v): %s", maxDeposedFor, k.longestDeposedWhat)
		} else {
			t.Logf("no round saw two nodes claim one partition, even at differing primary epochs")
		}
		// A run that ends early has not sampled enough to count; its own failure says why.
		if !t.Failed() && k.rounds < minClaimRounds {
			t.Errorf("the invariant checker made %d rounds of two or more answers, want at least %d", k.rounds, minClaimRounds)
		}
		for i, v := range k.violations {
			if i == 10 {
				t.Errorf("... and %d more violations", len(k.violations)-10)
				break
			}
			t.Errorf("invariant violated: %s", v)
		}
	}()

	if !t.Run("crash", func(t *testing.T) { testCrashedPrimary(t, c) }) {
		return
	}
	if !t.Run("pause", func(t *testing.T) { testPausedPrimary(t, c) }) {
		return
	}
	t.Run("leave", func(t *testing.T) { testLeave(t, c) })
}

// testCrashedPrimary kills the node with the most primaries, measures how long the survivors
// take to show a live primary for every partition, and restarts the node with its DATA_DIR.
func testCrashedPrimary(t *testing.T, c *failoverCluster) {
	var took []time.Duration
	killed := map[string]bool{}
	for trial := 1; trial <= crashTrials; trial++ {
		view := c.waitStable(t, 30*time.Second)
		victim := c.mostPrimaries(view, killed)
		killed[victim.id] = true
		var survivors []*nodeProcess
		for _, n := range c.nodes {
			if n != victim {
				survivors = append(survivors, n)
			}
		}
		killedAt := time.Now()
		victim.Kill(t)
		d, after := c.waitNewPrimaries(t, killedAt, survivors, victim.id)
		took = append(took, d)
		t.Logf("trial %d: killed %s (primary of %d partitions, leader: %v) at epoch %d; every survivor shows live primaries for all %d partitions after %v (epoch %d, leader %s)",
			trial, victim.id, primariesOf(view, victim.id), view.Cluster.Leader == victim.id, view.Cluster.Epoch,
			partitionCount, d.Round(time.Millisecond), after.Cluster.Epoch, after.Cluster.Leader)
		if limit := failoverTTL + time.Second; d > limit {
			t.Errorf("trial %d: new primaries after %v, more than the lease TTL + 1s (%v)", trial, d.Round(time.Millisecond), limit)
		}
		victim.Start(t)
		victim.waitReady(t)
	}
	sorted := slices.Clone(took)
	slices.Sort(sorted)
	t.Logf("crash to new primaries over %d trials (LEASE_TTL %v): %v; p50 %v, max %v",
		len(took), failoverTTL, roundAll(took), sorted[len(sorted)/2].Round(time.Millisecond), sorted[len(sorted)-1].Round(time.Millisecond))
}

// testPausedPrimary stops the leader (a primary too) with SIGSTOP for longer than its lease TTL.
// Its lease expires and the others promote new primaries at higher primary epochs while it is
// stopped, but not before its own lease deadline; its first answer after SIGCONT says it is
// fenced, it never claims any of the partitions it held at their old primary epochs, and it
// rejoins under a new lease.
//
// The times are taken so that an error leans toward failing: the node's deadline is bounded from
// above (an answer's arrival plus the lease time it says is left), and the first promotion from
// below (the start of the last round in which no survivor showed one).
func testPausedPrimary(t *testing.T, c *failoverCluster) {
	view := c.waitStable(t, 30*time.Second)
	victim := c.byID(view.Cluster.Leader)
	if victim == nil || primariesOf(view, victim.id) == 0 {
		victim = c.mostPrimaries(view, nil)
	}
	httpc := &http.Client{Timeout: time.Second, Transport: &http.Transport{}}
	defer httpc.CloseIdleConnections()
	var held wiretest.Claims
	if err := fetchJSON(httpc, victim.addr, "/cluster/claims", &held); err != nil {
		t.Fatal(err)
	}
	if held.Fenced || len(held.Primaries) == 0 {
		t.Fatalf("%s before the pause: fenced %v, primaries %v; want unfenced with some primaries", victim.id, held.Fenced, held.Primaries)
	}
	health, deadline, err := leaseDeadline(httpc, victim.addr)
	if err != nil {
		t.Fatal(err)
	}

	victim.Pause(t)
	stopped := time.Now()
	var survivors []*nodeProcess
	for _, n := range c.nodes {
		if n != victim {
			survivors = append(survivors, n)
		}
	}
	// While it is stopped, for at least pauseFor and until every survivor shows another primary,
	// at a higher primary epoch, for every partition the paused node held.
	var firstPromoted, promoted time.Time
	var promotedView *wiretest.Cluster
	noneSince := stopped // the start of the last round in which no survivor showed a promotion
	var lastErr error
	for time.Since(stopped) < pauseFor || promoted.IsZero() && time.Since(stopped) < pauseBound {
		round := time.Now()
		v, some, all, err := c.promotion(survivors, victim.id, held.Primaries)
		switch {
		case err != nil:
			lastErr = err
		case !some:
			noneSince = round
		}
		if some && firstPromoted.IsZero() {
			firstPromoted = noneSince
		}
		if all && promoted.IsZero() {
			promoted, promotedView = time.Now(), v
		}
		time.Sleep(10 * time.Millisecond)
	}
	if promoted.IsZero() {
		t.Errorf("no new primaries for all of %s's partitions on every survivor while it was stopped for %v (last error: %v)",
			victim.id, time.Since(stopped).Round(time.Millisecond), lastErr)
	}
	victim.Resume(t)
	resumed := time.Now()

	// The first answer after SIGCONT: fenced, and past the deadline of the lease it held. Unless
	// it has a new lease already, it also tells that deadline with all renewals counted, the
	// ones answered around SIGSTOP too.
	var first wiretest.Health
	var firstAt time.Duration
	for {
		h, d, err := leaseDeadline(httpc, victim.addr)
		if err == nil {
			first, firstAt = h, time.Since(resumed)
			if !strings.HasPrefix(h.LeaseValidFor, "-") && h.LeaseValidFor != "0s" {
				// A new lease: the old deadline stays the one measured before the pause.
				break
			}
			if d.After(deadline) {
				deadline = d
			}
			break
		}
		if time.Since(resumed) > 10*time.Second {
			t.Fatalf("%s never answered GET /health within 10s of SIGCONT: %v", victim.id, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if !first.Fenced {
		t.Errorf("%s's first answer after SIGCONT (+%v): fenced=false, lease_valid_for %s, map epoch %d; want fenced",
			victim.id, firstAt.Round(time.Millisecond), first.LeaseValidFor, first.Epoch)
	}

	// Then its claims until it has rejoined. No answer may claim a partition at the primary
	// epoch it held before the pause: others lead those now.
	type answer struct {
		at     time.Duration
		fenced bool
		epoch  uint64
		stale  []string
	}
	var answers []answer
	var unfenced time.Duration
	for time.Since(resumed) < 10*time.Second {
		var a wiretest.Claims
		if err := fetchJSON(httpc, victim.addr, "/cluster/claims", &a); err != nil {
			time.Sleep(5 * time.Millisecond)
			continue
		}
		ans := answer{at: time.Since(resumed), fenced: a.Fenced, epoch: a.Epoch}
		for p, e := range a.Primaries {
			if held.Primaries[p] == e {
				ans.stale = append(ans.stale, fmt.Sprintf("%s@%d", p, e))
			}
		}
		slices.Sort(ans.stale)
		answers = append(answers, ans)
		if !a.Fenced && unfenced == 0 {
			unfenced = ans.at
		}
		if !a.Fenced && promotedView != nil && a.Epoch >= promotedView.Cluster.Epoch && len(ans.stale) == 0 {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if len(answers) == 0 {
		t.Fatalf("%s never answered GET /cluster/claims within 10s of SIGCONT", victim.id)
	}
	stale := 0
	for _, a := range answers {
		if len(a.stale) > 0 {
			stale++
			if stale <= 5 {
				t.Errorf("%v after SIGCONT, %s (fenced %v, map epoch %d) claims partitions at the primary epochs it held before the pause: %v",
					a.at.Round(time.Millisecond), victim.id, a.fenced, a.epoch, a.stale)
			}
		}
	}
	t.Logf("paused %s (leader: %v, primary of %d partitions) for %v; its lease deadline was at most %v after SIGSTOP",
		victim.id, health.IsLeader, len(held.Primaries), resumed.Sub(stopped).Round(time.Millisecond), deadline.Sub(stopped).Round(time.Millisecond))
	if !firstPromoted.IsZero() {
		t.Logf("a survivor showed a new primary for one of its partitions at the earliest %v after SIGSTOP, %v after its lease deadline",
			firstPromoted.Sub(stopped).Round(time.Millisecond), firstPromoted.Sub(deadline).Round(time.Millisecond))
		if !firstPromoted.After(deadline) {
			t.Errorf("a new primary may have been shown %v before %s's own lease deadline: both could act as primary",
				deadline.Sub(firstPromoted).Round(time.Millisecond), victim.id)
		}
	}
	if !promoted.IsZero() {
		t.Logf("every survivor showed new primaries (epoch %d) for all its partitions %v after SIGSTOP",
			promotedView.Cluster.Epoch, promoted.Sub(stopped).Round(time.Millisecond))
	}
	t.Logf("after SIGCONT: first answer at +%v with fenced=%v (lease_valid_for %s); %d claims answers, %d with stale claims; unfenced again at +%v",
		firstAt.Round(time.Millisecond), first.Fenced, first.LeaseValidFor, len(answers), stale, unfenced.Round(time.Millisecond))

	waitFor(t, 10*time.Second, victim.id+" back in every node's map, healthy", func() error {
		// 200: registered under a live lease, holding a map.
		var h struct{}
		if err := fetchJSON(httpc, victim.addr, "/health", &h); err != nil {
			return err
		}
		for _, n := range c.nodes {
			var v wiretest.Cluster
			if err := fetchJSON(httpc, n.addr, "/cluster", &v); err != nil {
				return fmt.Errorf("%s: %w", n.id, err)
			}
			if _, ok := v.Cluster.Nodes[victim.id]; !ok {
				return fmt.Errorf("%s's map (epoch %d) does not list %s", n.id, v.Cluster.Epoch, victim.id)
			}
		}
		return nil
	})
	t.Logf("%s rejoined %v after SIGCONT", victim.id, time.Since(resumed).Round(time.Millisecond))
	c.waitStable(t, 30*time.Second)
}

// pauseBound bounds how long testPausedPrimary keeps a node stopped while waiting for the others
// to promote new primaries for its partitions.
const pauseBound = 15 * time.Second

// leaseDeadline asks the node at addr for GET /health, which answers 503 when the node is
// fenced, and returns the answer with an upper bound of the node's lease deadline: the arrival
// of the answer plus the lease time it says is left (rounded to the millisecond, so plus half of
// one). The node read its clock between the request's sending and the answer's arrival.
func leaseDeadline(httpc *http.Client, addr string) (wiretest.Health, time.Time, error) {
	var h wiretest.Health
	req, err := http.NewRequest(http.MethodGet, "http://"+addr+"/health", nil)
	if err != nil {
		return h, time.Time{}, err
	}
	resp, err := httpc.Do(req)
	if err != nil {
		return h, time.Time{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	arrived := time.Now()
	if err != nil {
		return h, time.Time{}, err
	}
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusServiceUnavailable {
		return h, time.Time{}, fmt.Errorf("GET /health: %s: %s", resp.Status, bytes.TrimSpace(body))
	}
	if err := json.Unmarshal(body, &h); err != nil {
		return h, time.Time{}, fmt.Errorf("GET /health: %w", err)
	}
	left, err := time.ParseDuration(h.LeaseValidFor)
	if err != nil {
		return h, time.Time{}, fmt.Errorf("GET /health: lease_valid_for %q: %w", h.LeaseValidFor, err)
	}
	return h, arrived.Add(left + time.Millisecond/2), nil
}

// testLeave ends the cluster gracefully: the draining node hands its partitions over and exits
// with status 0, then the others leave on SIGTERM.
func testLeave(t *testing.T, c *failoverCluster) {
	c.waitStable(t, 30*time.Second)
	drained := c.byID(drainingNode)
	began := time.Now()
	if code := drained.Terminate(t, drainTimeoutBound); code != 0 {
		t.Errorf("%s exited with status %d after draining, want 0", drained.id, code)
	}
	t.Logf("%s drained and exited in %v", drained.id, time.Since(began).Round(time.Millisecond))
	if !strings.Contains(drained.Log(), `"msg":"draining"`) {
		t.Errorf("%s left without draining (DRAIN_ON_SIGTERM=true)", drained.id)
	}
	c.waitStable(t, 10*time.Second)
	for _, n := range c.nodes {
		if n == drained {
			continue
		}
		if code := n.Terminate(t, 20*time.Second); code != 0 {
			t.Errorf("%s exited with status %d on SIGTERM, want 0", n.id, code)
		}
	}
	for _, n := range c.nodes {
		if last := proctest.Tail(n.Log(), 1); !strings.Contains(last, `"msg":"node stopped"`) {
			t.Errorf("%s did not end its log with a clean stop; log ends:\n%s", n.id, proctest.Tail(n.Log(), 10))
		}
	}
}

// drainTimeoutBound bounds a drain on SIGTERM: the command gives up after 60s.
const drainTimeoutBound = 70 * time.Second

// failoverCluster is the node processes of one test.
type failoverCluster struct {
	bin     string
	etcdURL string
	name    string
	dir     string
	nodes   []*nodeProcess
	httpc   *http.Client
	// partitions and replication are the cluster's PARTITION_COUNT and REPLICATION_FACTOR.
	partitions, replication int
}

func newFailoverCluster(t *testing.T, bin, etcdURL string) *failoverCluster {
	c := &failoverCluster{
		bin: bin, etcdURL: etcdURL, name: "failover-" + randomHex(t), dir: t.TempDir(),
		httpc:      &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{}},
		partitions: partitionCount, replication: replicationFactor,
	}
	// The nodes' processes, started later, are killed before this runs.
	t.Cleanup(c.httpc.CloseIdleConnections)
	return c
}

// launch starts a new node process on the cluster's etcd; waitReady waits for it.
func (c *failoverCluster) launch(t *testing.T, id string) *nodeProcess {
	t.Helper()
	return c.launchOnEtcd(t, id, c.etcdURL)
}

// launchOnEtcd starts a new node process that reaches etcd at endpoints, with env added.
func (c *failoverCluster) launchOnEtcd(t *testing.T, id, endpoints string, env ...string) *nodeProcess {
	t.Helper()
	return c.launchOn(t, id, proctest.FreePort, append([]string{
		"ETCD_ENDPOINTS=" + endpoints,
		"CLUSTER_NAME=" + c.name,
		"DRAIN_ON_SIGTERM=" + strconv.FormatBool(id == drainingNode),
	}, env...)...)
}

// launchOn starts a new node process on an HTTP port from pick, with the settings every test
// node has and env. Should a port be taken before the node binds it, waitReady starts it again
// on a port from pick (see nodeProcess.move).
func (c *failoverCluster) launchOn(t *testing.T, id string, pick func(*testing.T) int, env ...string) *nodeProcess {
	t.Helper()
	settings := append([]string{
		"NODE_ID=" + id,
		"LEASE_TTL=" + failoverTTL.String(),
		"PARTITION_COUNT=" + strconv.Itoa(c.partitions),
		"REPLICATION_FACTOR=" + strconv.Itoa(c.replication),
		"LOG_LEVEL=info",
	}, env...)
	dataDir := filepath.Join(c.dir, id)
	n := newNodeProcess(t, c.bin, id, "", nil)
	place := func(t *testing.T) {
		n.addr = fmt.Sprintf("127.0.0.1:%d", pick(t))
		n.Env = append(slices.Clone(settings), "HTTP_ADDR="+n.addr, "DATA_DIR="+dataDir)
	}
	place(t)
	n.embedded = envValue(settings, "ETCD_ENDPOINTS") == ""
	n.move = func(t *testing.T, first bool) {
		if first {
			// Whatever the failed start left in DATA_DIR belongs to no node.
			dataDir = t.TempDir()
		}
		place(t)
	}
	c.nodes = append(c.nodes, n)
	n.Start(t)
	return n
}

func (c *failoverCluster) byID(id string) *nodeProcess {
	for _, n := range c.nodes {
		if n.id == id {
			return n
		}
	}
	return nil
}

// running returns the nodes whose process runs (paused ones included).
func (c *failoverCluster) running() []*nodeProcess {
	var out []*nodeProcess
	for _, n := range c.nodes {
		if n.State() != proctest.Exited {
			out = append(out, n)
		}
	}
	return out
}

// waitStable waits until every running node is healthy and serves the same map, which lists
// exactly the running nodes, places every partition on min(N, c.replication) of them and has no copy in
// progress. It returns that map.
func (c *failoverCluster) waitStable(t *testing.T, timeout time.Duration) *wiretest.Cluster {
	t.Helper()
	var agreed *wiretest.Cluster
	waitFor(t, timeout, "stable cluster", func() error {
		nodes := c.running()
		var ids []string
		for _, n := range nodes {
			ids = append(ids, n.id)
		}
		slices.Sort(ids)
		holders := min(len(ids), c.replication)
		agreed = nil
		for _, n := range nodes {
			var h wiretest.Health
			if err := fetchJSON(c.httpc, n.addr, "/health", &h); err != nil {
				return fmt.Errorf("%s: %w", n.id, err)
			}
			var v wiretest.Cluster
			if err := fetchJSON(c.httpc, n.addr, "/cluster", &v); err != nil {
				return fmt.Errorf("%s: %w", n.id, err)
			}
			if agreed != nil && v.Cluster.Epoch != agreed.Cluster.Epoch {
				return fmt.Errorf("%s serves epoch %d, another node %d", n.id, v.Cluster.Epoch, agreed.Cluster.Epoch)
			}
			if got := slices.Sorted(maps.Keys(v.Cluster.Nodes)); !slices.Equal(got, ids) {
				return fmt.Errorf("%s lists %v, want %v", n.id, got, ids)
			}
			if len(v.Cluster.Handoffs) > 0 {
				return fmt.Errorf("%s: %d copies in progress", n.id, len(v.Cluster.Handoffs))
			}
			if len(v.Cluster.PartitionMap) != c.partitions {
				return fmt.Errorf("%s lists %d partitions, want %d", n.id, len(v.Cluster.PartitionMap), c.partitions)
			}
			for pid, p := range v.Cluster.PartitionMap {
				all := append([]string{p.PrimaryNode}, p.ReplicaNodes...)
				slices.Sort(all)
				if len(slices.Compact(all)) != holders || len(p.PendingNodes) > 0 {
					return fmt.Errorf("%s: %s is held by %s+%v (pending %v)", n.id, pid, p.PrimaryNode, p.ReplicaNodes, p.PendingNodes)
				}
				for _, h := range all {
					if !slices.Contains(ids, h) {
						return fmt.Errorf("%s: %s is held by %s, not a running node", n.id, pid, h)
					}
				}
			}
			agreed = &v
		}
		return nil
	})
	return agreed
}

// mostPrimaries returns the node that is the primary of the most partitions in view; of equals,
// one not in avoid.
func (c *failoverCluster) mostPrimaries(view *wiretest.Cluster, avoid map[string]bool) *nodeProcess {
	var best *nodeProcess
	for _, n := range c.running() {
		if best == nil {
			best = n
			continue
		}
		if d := primariesOf(view, n.id) - primariesOf(view, best.id); d > 0 || d == 0 && avoid[best.id] && !avoid[n.id] {
			best = n
		}
	}
	return best
}

func primariesOf(view *wiretest.Cluster, id string) int {
	count := 0
	for _, p := range view.Cluster.PartitionMap {
		if p.PrimaryNode == id {
			count++
		}
	}
	return count
}

// waitNewPrimaries polls the survivors until each of them shows a primary among the survivors
// for every partition, and returns the time from since to the end of that round of polling.
func (c *failoverCluster) waitNewPrimaries(t *testing.T, since time.Time, survivors []*nodeProcess, gone string) (time.Duration, *wiretest.Cluster) {
	t.Helper()
	live := map[string]bool{}
	for _, n := range survivors {
		live[n.id] = true
	}
	var lastErr error
	for time.Since(since) < 15*time.Second {
		var last *wiretest.Cluster
		lastErr = nil
		for _, n := range survivors {
			var v wiretest.Cluster
			if err := fetchJSON(c.httpc, n.addr, "/cluster", &v); err != nil {
				lastErr = fmt.Errorf("%s: %w", n.id, err)
				break
			}
			for pid, p := range v.Cluster.PartitionMap {
				if !live[p.PrimaryNode] {
					lastErr = fmt.Errorf("%s shows %s as primary of %s (epoch %d)", n.id, p.PrimaryNode, pid, v.Cluster.Epoch)
					break
				}
			}
			if lastErr != nil {
				break
			}
			last = &v
		}
		if lastErr == nil {
			return time.Since(since), last
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("no survivor-only primaries 15s after %s was killed: %v", gone, lastErr)
	return 0, nil
}

// promotion asks every survivor for its map and reports whether any of them shows, for any
// partition of held, a primary other than gone at a primary epoch above the one in held (some),
// and whether every survivor shows that for every partition of held (all). It returns one
// survivor's map, and an error when a survivor did not answer.
func (c *failoverCluster) promotion(survivors []*nodeProcess, gone string, held map[string]uint64) (view *wiretest.Cluster, some, all bool, err error) {
	all = true
	for _, n := range survivors {
		var v wiretest.Cluster
		if err := fetchJSON(c.httpc, n.addr, "/cluster", &v); err != nil {
			return nil, some, false, fmt.Errorf("%s: %w", n.id, err)
		}
		for pid, epoch := range held {
			if p := v.Cluster.PartitionMap[pid]; p.PrimaryNode != gone && p.PrimaryEpoch > epoch {
				some = true
			} else {
				all = false
			}
		}
		view = &v
	}
	return view, some, all, nil
}

// nodeProcess is one clusterkit-node, configured by its environment; Start starts it again
// under the same ID, address and DATA_DIR after a kill, and its log keeps every life.
type nodeProcess struct {
	*proctest.Process
	id, addr string
	// move, when set, gives the node a new HTTP port (and what follows from it) in addr and
	// Env, for a start that failed because a port was taken: see waitReady. first is set when
	// the node was never ready: it has not joined the cluster yet.
	move func(t *testing.T, first bool)
	// embedded is set for a node on embedded etcd: once it has been ready, it may run an etcd
	// member whose peer URL follows its HTTP port, so it is never moved.
	embedded bool
	// everReady is set at its first ready line.
	everReady bool
}

// newNodeProcess returns node id of the program bin, serving its HTTP API at addr, with env;
// Start starts it.
func newNodeProcess(t *testing.T, bin, id, addr string, env []string) *nodeProcess {
	t.Helper()
	p := proctest.New(t, id, bin)
	p.Env = env
	return &nodeProcess{Process: p, id: id, addr: addr}
}

// maxLaunches bounds the starts of a node whose ports were taken.
const maxLaunches = 3

// waitReady waits for the "ready <id> <addr>" line. A node that exited because a port was taken
// between the test choosing it and the node binding it is moved to new ports and started again,
// when it can be (see move and embedded).
func (n *nodeProcess) waitReady(t *testing.T) {
	t.Helper()
	for launch := 1; ; launch++ {
		got, err := n.AwaitReady(30 * time.Second)
		if err == nil {
			if !slices.Equal(got, []string{n.id, n.addr}) {
				t.Errorf("%s printed ready %q, want %q", n.id, got, []string{n.id, n.addr})
			}
			n.everReady = true
			return
		}
		if launch >= maxLaunches || !n.PortTaken() || n.move == nil || n.embedded && n.everReady {
			t.Fatal(err)
		}
		was := n.addr
		n.move(t, !n.everReady)
		t.Logf("%s: a port was taken before the node bound it (HTTP address %s): starting it again at %s", n.id, was, n.addr)
		n.Start(t)
	}
}

// metricValue returns the value of the gauge or counter name (without labels) that the node at
// addr serves at GET /metrics.
func metricValue(httpc *http.Client, addr, name string) (float64, error) {
	resp, err := httpc.Get("http://" + addr + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("GET /metrics: %s", resp.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return 0, fmt.Errorf("GET /metrics: %w", err)
	}
	f := families[name]
	if f == nil || len(f.GetMetric()) != 1 {
		return 0, fmt.Errorf("GET /metrics has no single %s", name)
	}
	if g := f.GetMetric()[0].GetGauge(); g != nil {
		return g.GetValue(), nil
	}
	return f.GetMetric()[0].GetCounter().GetValue(), nil
}

func fetchJSON(httpc *http.Client, addr, path string, v any) error {
	return fetchJSONContext(context.Background(), httpc, addr, path, v)
}

// fetchJSONContext GETs path from the node at addr and decodes a 200 answer into v.
func fetchJSONContext(ctx context.Context, httpc *http.Client, addr, path string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+path, nil)
	if err != nil {
		return err
	}
	resp, err := httpc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s: %s", path, resp.Status, bytes.TrimSpace(body))
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	return nil
}

// buildNodeBinary builds cmd/clusterkit-node into the test's temporary directory, with the race
// detector when the test runs with it.
func buildNodeBinary(t *testing.T) string {
	t.Helper()
	return proctest.Build(t, "github.com/clusterkit-go/clusterkit/cmd/clusterkit-node")
}

func roundAll(ds []time.Duration) []time.Duration {
	out := make([]time.Duration, len(ds))
	for i, d := range ds {
		out[i] = d.Round(time.Millisecond)
	}
	return out
}
