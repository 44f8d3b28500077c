package e2e

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clusterkit-go/clusterkit/internal/proctest"
	"github.com/clusterkit-go/clusterkit/internal/wiretest"
)

// claimChecker samples GET /cluster/claims of every running node every claimsEvery and checks
// what the README promises of the claims (see check). Its results may be read once stop has
// returned.
type claimChecker struct {
	c      *failoverCluster
	httpc  *http.Client
	start  time.Time
	cancel context.CancelFunc
	done   chan struct{}

	// rounds counts the rounds in which two or more nodes answered, samples the answers.
	rounds, samples int
	violations      []string
	// reported holds the violations already recorded, so that one that lasts is reported once.
	reported map[string]bool
	// newest is, per partition, the highest primary epoch a node claimed it at so far.
	newest map[string]newestClaim
	// maxClaimers is the most nodes that claimed one partition in one round, overlapRounds how
	// many rounds had a partition with more than one claimer (at differing epochs: a map change
	// reaches the nodes at slightly different times).
	maxClaimers     int
	maxClaimersWhat string
	overlapRounds   int
	// longestDeposed is the longest a node was seen claiming a partition at a primary epoch
	// below another node's claim, from the round that first saw the newer claim.
	longestDeposed     time.Duration
	longestDeposedWhat string
}

// newestClaim is the highest primary epoch a partition was claimed at, by whom, and the start
// of the round that first saw it.
type newestClaim struct {
	epoch uint64
	node  string
	seen  time.Time
}

// maxDeposedFor bounds how long a deposed primary may keep claiming its partition once the new
// primary claims it: a node that follows the maps gets the new one within milliseconds, and one
// cut off from etcd fences itself at its lease deadline, within one lease TTL.
const maxDeposedFor = failoverTTL

// minClaimRounds is the fewest rounds of two or more answers the checker must make during
// TestFailover for its verdict to mean something: 764-935 were measured a run, with and without
// the race detector (the README quotes them).
const minClaimRounds = 500

func startClaimChecker(c *failoverCluster) *claimChecker {
	ctx, cancel := context.WithCancel(context.Background())
	k := &claimChecker{
		c:        c,
		httpc:    &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 2}},
		start:    time.Now(),
		cancel:   cancel,
		done:     make(chan struct{}),
		reported: map[string]bool{},
		newest:   map[string]newestClaim{},
	}
	go k.run(ctx)
	return k
}

func (k *claimChecker) stop() {
	k.cancel()
	<-k.done
	k.httpc.CloseIdleConnections()
}

func (k *claimChecker) run(ctx context.Context) {
	defer close(k.done)
	ticker := time.NewTicker(claimsEvery)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		var nodes []*nodeProcess
		for _, n := range k.c.nodes {
			if n.State() == proctest.Running {
				nodes = append(nodes, n)
			}
		}
		began := time.Now()
		answers := make([]*wiretest.Claims, len(nodes))
		var wg sync.WaitGroup
		for i, n := range nodes {
			wg.Go(func() {
				rctx, cancel := context.WithTimeout(ctx, time.Second)
				defer cancel()
				var a wiretest.Claims
				if fetchJSONContext(rctx, k.httpc, n.addr, "/cluster/claims", &a) == nil {
					answers[i] = &a
				}
			})
		}
		wg.Wait()
		if ctx.Err() != nil {
			return
		}
		k.check(answers, began, time.Now())
	}
}

// check evaluates one round of answers, asked from began and all in by ended. No two nodes may
// claim one partition at the same primary epoch. Two nodes may claim one partition at differing
// primary epochs while a new map reaches them one after the other; the deposed primary, the one
// at the lower epoch, must then hold a map older than the newer claim's primary epoch (so that a
// replica that has seen the new primary's epoch refuses its writes), and it must stop claiming
// within maxDeposedFor of the newer claim being seen. Its duration is counted from the start of
// the round that first saw the newer claim to the end of the round that still sees the older.
func (k *claimChecker) check(answers []*wiretest.Claims, began, ended time.Time) {
	at := began.Sub(k.start).Round(time.Millisecond)
	violate := func(key, format string, args ...any) {
		if !k.reported[key] {
			k.reported[key] = true
			k.violations = append(k.violations, fmt.Sprintf("at +%v ", at)+fmt.Sprintf(format, args...))
		}
	}
	claimers := map[string]map[string]uint64{} // partition -> node -> primary epoch
	answered := 0
	for _, a := range answers {
		if a == nil {
			continue
		}
		answered++
		for p, e := range a.Primaries {
			if claimers[p] == nil {
				claimers[p] = map[string]uint64{}
			}
			claimers[p][a.NodeID] = e
			if e > k.newest[p].epoch {
				k.newest[p] = newestClaim{epoch: e, node: a.NodeID, seen: began}
			}
		}
	}
	k.samples += answered
	if answered >= 2 {
		k.rounds++
	}
	for _, a := range answers {
		if a == nil {
			continue
		}
		for _, p := range slices.Sorted(maps.Keys(a.Primaries)) {
			e, newer := a.Primaries[p], k.newest[p]
			if e >= newer.epoch {
				continue
			}
			key := fmt.Sprintf("%s %s@%d", a.NodeID, p, e)
			if newer.node == a.NodeID {
				violate(key+" back", "%s claims %s at primary epoch %d after claiming it at %d: it went back to an older map",
					a.NodeID, p, e, newer.epoch)
				continue
			}
			if a.Epoch >= newer.epoch {
				violate(key+" map", "%s claims %s at primary epoch %d from its map of epoch %d, while %s claims it since primary epoch %d: no map at or past that epoch names %s primary",
					a.NodeID, p, e, a.Epoch, newer.node, newer.epoch, a.NodeID)
			}
			d := ended.Sub(newer.seen)
			if d > k.longestDeposed {
				k.longestDeposed = d
				k.longestDeposedWhat = fmt.Sprintf("%s still claimed %s at primary epoch %d (map epoch %d) %v after %s was seen claiming it at %d",
					a.NodeID, p, e, a.Epoch, d.Round(time.Millisecond), newer.node, newer.epoch)
			}
			if d > maxDeposedFor {
				violate(key+" long", "%s still claims %s at primary epoch %d (map epoch %d) %v after %s was seen claiming it at %d, more than %v",
					a.NodeID, p, e, a.Epoch, d.Round(time.Millisecond), newer.node, newer.epoch, maxDeposedFor)
			}
		}
	}
	overlap := false
	for _, p := range slices.Sorted(maps.Keys(claimers)) {
		byNode := claimers[p]
		if len(byNode) < 2 {
			continue
		}
		overlap = true
		byEpoch := map[uint64][]string{}
		for _, node := range slices.Sorted(maps.Keys(byNode)) {
			byEpoch[byNode[node]] = append(byEpoch[byNode[node]], node)
		}
		for e, nodes := range byEpoch {
			if len(nodes) > 1 {
				violate(fmt.Sprintf("%v %s@%d", nodes, p, e), "%v all claim %s at primary epoch %d", nodes, p, e)
			}
		}
		if len(byNode) > k.maxClaimers {
			k.maxClaimers = len(byNode)
			k.maxClaimersWhat = fmt.Sprintf("%s claimed by %v at +%v", p, byNode, at)
		}
	}
	if overlap {
		k.overlapRounds++
	}
}

// The checker's verdicts on rounds of answers, so that a violation is known to be reported.
func TestClaimCheckerVerdicts(t *testing.T) {
	type round struct {
		after   time.Duration // since the first round
		answers []*wiretest.Claims
	}
	claims := func(node string, mapEpoch uint64, primaries map[string]uint64) *wiretest.Claims {
		return &wiretest.Claims{NodeID: node, Epoch: mapEpoch, Primaries: primaries}
	}
	tests := []struct {
		name   string
		rounds []round
		want   []string // a substring of each violation, in order
	}{
		{"one primary each", []round{
			{0, []*wiretest.Claims{claims("a", 3, map[string]uint64{"p0": 1}), claims("b", 3, map[string]uint64{"p1": 3})}},
		}, nil},
		{"same primary epoch", []round{
			{0, []*wiretest.Claims{claims("a", 3, map[string]uint64{"p0": 2}), claims("b", 3, map[string]uint64{"p0": 2})}},
		}, []string{"[a b] all claim p0 at primary epoch 2"}},
		{"deposed briefly, from an older map", []round{
			{0, []*wiretest.Claims{claims("a", 4, map[string]uint64{"p0": 1}), claims("b", 5, map[string]uint64{"p0": 5})}},
			{20 * time.Millisecond, []*wiretest.Claims{claims("a", 5, nil), claims("b", 5, map[string]uint64{"p0": 5})}},
		}, nil},
		{"deposed, from a map that names the new primary", []round{
			{0, []*wiretest.Claims{claims("a", 5, map[string]uint64{"p0": 1}), claims("b", 5, map[string]uint64{"p0": 5})}},
		}, []string{"a claims p0 at primary epoch 1 from its map of epoch 5, while b claims it since primary epoch 5"}},
		{"deposed for longer than a lease", []round{
			{0, []*wiretest.Claims{claims("a", 4, map[string]uint64{"p0": 1}), claims("b", 5, map[string]uint64{"p0": 5})}},
			{maxDeposedFor / 2, []*wiretest.Claims{claims("a", 4, map[string]uint64{"p0": 1}), nil}},
			{maxDeposedFor + time.Millisecond, []*wiretest.Claims{claims("a", 4, map[string]uint64{"p0": 1}), nil}},
		}, []string{"a still claims p0 at primary epoch 1"}},
		{"back to an older map", []round{
			{0, []*wiretest.Claims{claims("a", 5, map[string]uint64{"p0": 5})}},
			{20 * time.Millisecond, []*wiretest.Claims{claims("a", 4, map[string]uint64{"p0": 1})}},
		}, []string{"it went back to an older map"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			k := &claimChecker{start: start, reported: map[string]bool{}, newest: map[string]newestClaim{}}
			for _, r := range tt.rounds {
				k.check(r.answers, start.Add(r.after), start.Add(r.after+time.Millisecond))
			}
			if len(k.violations) != len(tt.want) {
				t.Fatalf("violations %q, want %d containing %q", k.violations, len(tt.want), tt.want)
			}
			for i, w := range tt.want {
				if !strings.Contains(k.violations[i], w) {
					t.Errorf("violation %q, want it to contain %q", k.violations[i], w)
				}
			}
		})
	}
}
