package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clusterkit-go/clusterkit/internal/keys"
	"github.com/clusterkit-go/clusterkit/internal/state"
	"github.com/clusterkit-go/clusterkit/internal/wiretest"
)

// The harness of the fault tests (faults_test.go): the cluster, the claim checker over it while
// nodes come and go, and what a fault's figures are made of: the stored map's epoch, the nodes'
// warning and error lines, their leases and their answers to GET /health.

// faultMatrix is the cluster of a fault test: etcd members, nodes, the nodes' links to etcd.
type faultMatrix struct {
	etcd   *etcdCluster
	c      *failoverCluster
	schema keys.Schema
	links  map[string]*faultLink
	httpc  *http.Client

	// view is what the claim checker reads: a copy of each node (process, ID, address) that
	// changes only while no checker runs, so that a node can be launched while the invariant
	// is checked. claims is the running checker; done are those stopped, whose results
	// reportClaims adds up. (A new checker knows nothing of the claims seen before it: a
	// deposed primary's time is counted from its start.)
	view   *failoverCluster
	claims *claimChecker
	done   []*claimChecker
}

// startFaultMatrix starts three etcd members with the flags etcdFlags added, and three nodes
// on them, each behind a faultLink of its own, and waits until the nodes agree on a map; then it
// starts the claim checker.
func startFaultMatrix(t *testing.T, etcdFlags ...string) *faultMatrix {
	t.Helper()
	bin := buildNodeBinary(t)
	etcd := startEtcdCluster(t, etcdFlags...)
	f := &faultMatrix{
		etcd:  etcd,
		c:     newFailoverCluster(t, bin, etcd.members[0].URL),
		view:  &failoverCluster{},
		links: map[string]*faultLink{},
		httpc: &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{}},
	}
	f.schema = keys.New(f.c.name)
	t.Cleanup(f.httpc.CloseIdleConnections)
	for i := 1; i <= 3; i++ {
		f.launch(t, fmt.Sprintf("node-%d", i))
	}
	for _, n := range f.c.nodes {
		f.waitReady(t, n)
	}
	f.c.waitStable(t, 30*time.Second)
	f.claims = startClaimChecker(f.view)
	return f
}

// launch starts node id behind a faultLink of its own. It is killed at the end of t, its link
// closed after it.
func (f *faultMatrix) launch(t *testing.T, id string) *nodeProcess {
	t.Helper()
	link := newFaultLink(t, f.etcd.urls())
	f.links[id] = link
	// launchOn sets LEASE_TTL too; of two values of a variable, a process gets the last.
	n := f.c.launchOnEtcd(t, id, link.endpoints(), "LEASE_TTL="+faultTTL.String())
	f.updateView()
	return n
}

// waitReady waits for n's ready line; a node started again on another port (see
// nodeProcess.waitReady) is checked at its new address.
func (f *faultMatrix) waitReady(t *testing.T, n *nodeProcess) {
	t.Helper()
	was := n.addr
	n.waitReady(t)
	if n.addr != was {
		f.updateView()
	}
}

// updateView gives the claim checker the cluster's nodes as they are now, with a new checker
// when one runs.
func (f *faultMatrix) updateView() {
	running := f.claims != nil
	if running {
		f.claims.stop()
		f.done = append(f.done, f.claims)
	}
	f.view.nodes = nil
	for _, n := range f.c.nodes {
		f.view.nodes = append(f.view.nodes, &nodeProcess{Process: n.Process, id: n.id, addr: n.addr})
	}
	if running {
		f.claims = startClaimChecker(f.view)
	}
}

// reportClaims stops the checker and fails the test for any violation any checker found.
func (f *faultMatrix) reportClaims(t *testing.T) {
	f.claims.stop()
	rounds, samples, overlaps := 0, 0, 0
	var violations []string
	var deposed time.Duration
	deposedWhat := ""
	for _, k := range append(f.done, f.claims) {
		rounds += k.rounds
		samples += k.samples
		overlaps += k.overlapRounds
		violations = append(violations, k.violations...)
		if k.longestDeposed > deposed {
			deposed, deposedWhat = k.longestDeposed, k.longestDeposedWhat
		}
	}
	t.Logf("invariant: %d sampling rounds of two or more answers, %d claims answers, %d rounds with one partition claimed at differing primary epochs, %d violations",
		rounds, samples, overlaps, len(violations))
	if deposedWhat != "" {
		t.Logf("longest a deposed primary was seen claiming (bound %v): %s", maxDeposedFor, deposedWhat)
	}
	for i, v := range violations {
		if i == 10 {
			t.Errorf("... and %d more violations", len(violations)-10)
			break
		}
		t.Errorf("invariant violated: %s", v)
	}
}

// faultMark is the state when a fault began: the stored map's epoch and the length of every
// node's log.
type faultMark struct {
	epoch uint64
	logs  map[string]int
}

func (f *faultMatrix) mark(t *testing.T) faultMark {
	t.Helper()
	m := faultMark{epoch: f.storedEpoch(t), logs: map[string]int{}}
	for _, n := range f.c.nodes {
		m.logs[n.id] = len(n.Log())
	}
	return m
}

// report logs the figures of a fault: the time to recover, the maps published since m, what
// else was measured, and the warning and error lines each of nodes logged since m.
func (f *faultMatrix) report(t *testing.T, fault string, m faultMark, recovered time.Duration, measured string, nodes ...*nodeProcess) {
	t.Helper()
	epoch := f.storedEpoch(t)
	var lines []string
	total := 0
	for _, n := range nodes {
		byMsg := map[string]int{}
		for _, l := range warnings(n, m) {
			byMsg[l.Msg]++
		}
		count := 0
		var what []string
		for _, msg := range slices.Sorted(maps.Keys(byMsg)) {
			count += byMsg[msg]
			what = append(what, fmt.Sprintf("%q ×%d", msg, byMsg[msg]))
		}
		total += count
		if count == 0 {
			lines = append(lines, n.id+" 0")
		} else {
			lines = append(lines, fmt.Sprintf("%s %d (%s)", n.id, count, strings.Join(what, ", ")))
		}
	}
	t.Logf("figures: %s: recovered in %v; maps published: %d (epoch %d to %d); warning/error lines: %d (%s); %s",
		fault, recovered.Round(time.Millisecond), epoch-m.epoch, m.epoch, epoch, total, strings.Join(lines, "; "), measured)
}

// logLine is a line of a node's JSON log.
type logLine struct {
	Level string `json:"level"`
	Msg   string `json:"msg"`
	Error string `json:"error"`
}

// warnings returns the lines at level warn or error that n logged since m.
func warnings(n *nodeProcess, m faultMark) []logLine {
	var out []logLine
	log := n.Log()
	for _, line := range strings.Split(log[min(m.logs[n.id], len(log)):], "\n") {
		var l logLine
		if json.Unmarshal([]byte(line), &l) == nil && (l.Level == "warn" || l.Level == "error") {
			out = append(out, l)
		}
	}
	return out
}

// countLines counts the lines at level warn or error that n logged since m whose message or
// error contains s.
func countLines(n *nodeProcess, m faultMark, s string) int {
	count := 0
	for _, l := range warnings(n, m) {
		if strings.Contains(l.Msg, s) || strings.Contains(l.Error, s) {
			count++
		}
	}
	return count
}

// storedMap returns the map stored in etcd, nil when there is none.
func (f *faultMatrix) storedMap(t *testing.T) *state.Map {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := f.etcd.client.Get(ctx, f.schema.Partitions())
	if err != nil {
		t.Fatalf("read the stored map: %v", err)
	}
	if len(resp.Kvs) == 0 {
		return nil
	}
	m, err := state.DecodeHead(resp.Kvs[0].Value)
	if err != nil {
		t.Fatalf("the stored map: %v", err)
	}
	return m
}

func (f *faultMatrix) storedEpoch(t *testing.T) uint64 {
	t.Helper()
	if m := f.storedMap(t); m != nil {
		return m.Epoch
	}
	return 0
}

// getHealth returns the status code and body of GET /health, which answers 503 when the node
// is fenced.
func getHealth(httpc *http.Client, addr string) (int, wiretest.Health, error) {
	var h wiretest.Health
	resp, err := httpc.Get("http://" + addr + "/health")
	if err != nil {
		return 0, h, err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&h); err != nil {
		return resp.StatusCode, h, fmt.Errorf("GET /health: %s: %w", resp.Status, err)
	}
	return resp.StatusCode, h, nil
}

// nodeRecord is what identifies one registration of a node: its lease and the revision that
// created its record.
type nodeRecord struct {
	lease    int64
	revision int64
}

func (f *faultMatrix) record(t *testing.T, id string) nodeRecord {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := f.etcd.client.Get(ctx, f.schema.Node(id))
	if err != nil {
		t.Fatalf("read %s's record: %v", id, err)
	}
	if len(resp.Kvs) == 0 {
		return nodeRecord{}
	}
	return nodeRecord{lease: resp.Kvs[0].Lease, revision: resp.Kvs[0].CreateRevision}
}

// waitRenewedSince waits until every node of nodes holds its lease through a renewal sent after
// since, and returns the time from since until then. A node believes its lease held until the
// send time of its last renewal plus 0.9 TTL; a deadline past since + 0.9 TTL, bounded from
// below by the sending of the request that reported it, proves a renewal sent after since.
func (f *faultMatrix) waitRenewedSince(t *testing.T, since time.Time, nodes []*nodeProcess) time.Duration {
	t.Helper()
	want := since.Add(faultTTL - faultTTL/10)
	waitFor(t, 15*time.Second, "every node renewing its lease", func() error {
		for _, n := range nodes {
			sent := time.Now()
			h, _, err := leaseDeadline(f.httpc, n.addr)
			if err != nil {
				return fmt.Errorf("%s: %w", n.id, err)
			}
			left, err := time.ParseDuration(h.LeaseValidFor)
			if err != nil {
				return fmt.Errorf("%s: lease_valid_for %q: %w", n.id, h.LeaseValidFor, err)
			}
			if d := sent.Add(left - time.Millisecond); !d.After(want) {
				return fmt.Errorf("%s holds its lease until at least +%v, not past +%v: no renewal sent since is known to have been answered",
					n.id, d.Sub(since).Round(time.Millisecond), want.Sub(since))
			}
		}
		return nil
	})
	return time.Since(since)
}

// healthSampler asks nodes for GET /health every 20ms until stop, and counts by node the
// answers that say fenced (a 503), that did not come, and that say the node does not lead when
// it did at the first answer. Its stats may be read once stop has returned.
type healthSampler struct {
	nodes  []*nodeProcess
	httpc  *http.Client
	cancel context.CancelFunc
	done   chan struct{}
	stats  map[string]*healthStats
}

type healthStats struct {
	answers, fenced, failed, notLeader int
	firstFenced, lastFenced            time.Time
	// leading is what the first answer said.
	leading bool
}

func startHealthSampler(nodes []*nodeProcess) *healthSampler {
	ctx, cancel := context.WithCancel(context.Background())
	s := &healthSampler{
		nodes:  slices.Clone(nodes),
		httpc:  &http.Client{Timeout: time.Second, Transport: &http.Transport{}},
		cancel: cancel,
		done:   make(chan struct{}),
		stats:  map[string]*healthStats{},
	}
	for _, n := range nodes {
		s.stats[n.id] = &healthStats{}
	}
	go s.run(ctx)
	return s
}

func (s *healthSampler) run(ctx context.Context) {
	defer close(s.done)
	ticker := time.NewTicker(20 * time.Millisecond)
	defer ticker.Stop()
	var wg sync.WaitGroup
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		answers := make([]*wiretest.Health, len(s.nodes))
		for i, n := range s.nodes {
			wg.Go(func() {
				if _, h, err := getHealth(s.httpc, n.addr); err == nil {
					answers[i] = &h
				}
			})
		}
		wg.Wait()
		if ctx.Err() != nil {
			return
		}
		now := time.Now()
		for i, n := range s.nodes {
			st, h := s.stats[n.id], answers[i]
			switch {
			case h == nil:
				st.failed++
				continue
			case h.Fenced:
				st.fenced++
				if st.firstFenced.IsZero() {
					st.firstFenced = now
				}
				st.lastFenced = now
			}
			if st.answers == 0 {
				st.leading = h.IsLeader
			} else if st.leading && !h.IsLeader {
				st.notLeader++
			}
			st.answers++
		}
	}
}

func (s *healthSampler) stop() {
	s.cancel()
	<-s.done
	s.httpc.CloseIdleConnections()
}

// summary describes the samples, times relative to since.
func (s *healthSampler) summary(since time.Time) string {
	var out []string
	for _, n := range s.nodes {
		st := s.stats[n.id]
		switch {
		case st.fenced == 0 && st.failed == 0:
			out = append(out, fmt.Sprintf("%s never fenced (%d answers)", n.id, st.answers))
		case st.fenced == 0:
			out = append(out, fmt.Sprintf("%s never fenced (%d answers, %d unanswered)", n.id, st.answers, st.failed))
		default:
			out = append(out, fmt.Sprintf("%s fenced in %d of %d answers, from +%v to +%v (%d unanswered)", n.id, st.fenced, st.answers,
				st.firstFenced.Sub(since).Round(time.Millisecond), st.lastFenced.Sub(since).Round(time.Millisecond), st.failed))
		}
		if st.notLeader > 0 {
			out[len(out)-1] += fmt.Sprintf(", not leading in %d", st.notLeader)
		}
	}
	return strings.Join(out, "; ")
}
