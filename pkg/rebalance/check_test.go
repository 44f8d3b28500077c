package rebalance

import (
	"fmt"
	"math"
	"slices"
	"testing"
)

// This file holds the independent checks the tests assert with. They recompute every target from
// the definitions in the package documentation, in floating point and by bisection, so they share no
// code with the placer.

// zoneOf returns each node's failure domain: its Zone, or its own ID when it has none.
func zoneOf(nodes []Node) map[string]string {
	z := make(map[string]string, len(nodes))
	for _, n := range nodes {
		if n.Zone == "" {
			z[n.ID] = "node:" + n.ID
		} else {
			z[n.ID] = "zone:" + n.Zone
		}
	}
	return z
}

func weightOf(n Node) float64 {
	if n.Weight == 0 {
		return 1
	}
	return float64(n.Weight)
}

// spreadBounds returns, per zone, the fewest and most holders a partition may have there: the most
// even split of r holders over zones of the given sizes.
func spreadBounds(nodes []Node, r int) (lo, hi map[string]int) {
	size := map[string]int{}
	for _, z := range zoneOf(nodes) {
		size[z]++
	}
	for c := 1; ; c++ {
		total := 0
		for _, n := range size {
			total += min(n, c)
		}
		if total >= r {
			lo, hi = map[string]int{}, map[string]int{}
			for z, n := range size {
				lo[z], hi[z] = min(n, c-1), min(n, c)
			}
			return lo, hi
		}
	}
}

// bisect finds x with f(x) = target for a non-decreasing f.
func bisect(f func(float64) float64, target, hiX float64) float64 {
	lo, hi := 0.0, hiX
	for range 200 {
		mid := (lo + hi) / 2
		if f(mid) < target {
			lo = mid
		} else {
			hi = mid
		}
	}
	return (lo + hi) / 2
}

func clamp(x, lo, hi float64) float64 { return math.Max(lo, math.Min(hi, x)) }

// fairReplicas returns each node's fair replica share: zones get the weighted share of P·r within
// [P·lo, P·hi], nodes the weighted share of their zone's load capped at P.
func fairReplicas(nodes []Node, cfg Config) map[string]float64 {
	r := min(cfg.ReplicationFactor, len(nodes))
	P := float64(cfg.Partitions)
	zones := zoneOf(nodes)
	lo, hi := spreadBounds(nodes, r)
	zw := map[string]float64{}
	members := map[string][]Node{}
	var total float64
	for _, n := range nodes {
		zw[zones[n.ID]] += weightOf(n)
		members[zones[n.ID]] = append(members[zones[n.ID]], n)
		total += weightOf(n)
	}
	zoneLoad := func(l float64) map[string]float64 {
		out := map[string]float64{}
		for z, w := range zw {
			out[z] = clamp(l*w, P*float64(lo[z]), P*float64(hi[z]))
		}
		return out
	}
	sum := func(m map[string]float64) (s float64) {
		for _, v := range m {
			s += v
		}
		return s
	}
	l := bisect(func(l float64) float64 { return sum(zoneLoad(l)) }, P*float64(r), P*float64(r)*10)
	fair := map[string]float64{}
	for z, load := range zoneLoad(l) {
		ms := members[z]
		mu := bisect(func(mu float64) float64 {
			s := 0.0
			for _, n := range ms {
				s += math.Min(P, mu*weightOf(n))
			}
			return s
		}, load, load+P)
		for _, n := range ms {
			fair[n.ID] = math.Min(P, mu*weightOf(n))
		}
	}
	return fair
}

// fairPrimaries returns each node's fair primary share: the weighted share of P, capped by the
// replicas it holds.
func fairPrimaries(nodes []Node, cfg Config, replicas map[string]int) map[string]float64 {
	P := float64(cfg.Partitions)
	share := func(mu float64) map[string]float64 {
		out := map[string]float64{}
		for _, n := range nodes {
			out[n.ID] = math.Min(float64(replicas[n.ID]), mu*weightOf(n))
		}
		return out
	}
	mu := bisect(func(mu float64) float64 {
		s := 0.0
		for _, v := range share(mu) {
			s += v
		}
		return s
	}, P, P+1)
	return share(mu)
}

func loads(m Map) (replicas, primaries map[string]int) {
	replicas, primaries = map[string]int{}, map[string]int{}
	for _, hs := range m {
		for k, h := range hs {
			replicas[h]++
			if k == 0 {
				primaries[h]++
			}
		}
	}
	return replicas, primaries
}

func within(got int, fair float64) bool {
	const eps = 1e-6
	return float64(got) >= math.Floor(fair+eps) && float64(got) <= math.Ceil(fair-eps)
}

// placementErrors lists every way m breaks the guarantees for these nodes: shape, distinct live
// holders, zone spread, replica and primary balance.
func placementErrors(m Map, nodes []Node, cfg Config) []string {
	return checkErrors(m, nodes, cfg, false)
}

// holderErrors is placementErrors without the primary balance, for placements whose holders are
// listed in no particular order.
func holderErrors(m Map, nodes []Node, cfg Config) []string {
	return checkErrors(m, nodes, cfg, true)
}

func checkErrors(m Map, nodes []Node, cfg Config, holdersOnly bool) []string {
	var errs []string
	add := func(format string, args ...any) {
		if len(errs) < 10 {
			errs = append(errs, fmt.Sprintf(format, args...))
		}
	}
	if len(m) != cfg.Partitions {
		return []string{fmt.Sprintf("map has %d partitions, want %d", len(m), cfg.Partitions)}
	}
	r := min(cfg.ReplicationFactor, len(nodes))
	zones := zoneOf(nodes)
	lo, hi := spreadBounds(nodes, r)
	var mustUse []string
	for z, l := range lo {
		if l > 0 {
			mustUse = append(mustUse, z)
		}
	}
	for p, hs := range m {
		if len(hs) != r {
			add("partition %d has %d holders %v, want %d", p, len(hs), hs, r)
		}
		count := map[string]int{}
		for k, h := range hs {
			if _, ok := zones[h]; !ok {
				add("partition %d holder %s is not live", p, h)
			}
			if slices.Contains(hs[:k], h) {
				add("partition %d lists %s twice", p, h)
			}
			count[zones[h]]++
		}
		// Zones that hold none of p can break only a lower bound: check those zones alone, not
		// every zone for every partition.
		for z, c := range count {
			if c < lo[z] || c > hi[z] {
				add("partition %d has %d holders in %s, want %d..%d (%v)", p, c, z, lo[z], hi[z], hs)
			}
		}
		for _, z := range mustUse {
			if count[z] == 0 {
				add("partition %d has no holder in %s, want %d..%d (%v)", p, z, lo[z], hi[z], hs)
			}
		}
	}
	replicas, primaries := loads(m)
	fairR := fairReplicas(nodes, cfg)
	for _, n := range nodes {
		if !within(replicas[n.ID], fairR[n.ID]) {
			add("node %s holds %d replicas, fair share %.3f", n.ID, replicas[n.ID], fairR[n.ID])
		}
	}
	if !holdersOnly {
		fairP := fairPrimaries(nodes, cfg, replicas)
		for _, n := range nodes {
			if !within(primaries[n.ID], fairP[n.ID]) {
				add("node %s is primary of %d, fair share %.3f", n.ID, primaries[n.ID], fairP[n.ID])
			}
		}
	}
	return errs
}

func checkPlacement(t *testing.T, m Map, nodes []Node, cfg Config) {
	t.Helper()
	for _, e := range placementErrors(m, nodes, cfg) {
		t.Error(e)
	}
}

func copies(moves []Move) int {
	n := 0
	for _, mv := range moves {
		if mv.To != "" {
			n++
		}
	}
	return n
}

// minCopies is a lower bound on the replica copies any balanced placement needs after prev: every
// live node must reach at least the floor of its fair share, and the remaining ceil slots cost a copy
// each unless they go to nodes that already hold that many.
func minCopies(prev Map, nodes []Node, cfg Config) int {
	const eps = 1e-6
	if len(prev) != cfg.Partitions {
		prev = nil
	}
	held, _ := loads(prev)
	fair := fairReplicas(nodes, cfg)
	r := min(cfg.ReplicationFactor, len(nodes))
	rest := cfg.Partitions * r
	need, free := 0, 0
	for _, n := range nodes {
		f, c, l := int(math.Floor(fair[n.ID]+eps)), int(math.Ceil(fair[n.ID]-eps)), held[n.ID]
		rest -= f
		need += max(0, f-l)
		if c > f && l >= c {
			free++
		}
	}
	return need + max(0, rest-free)
}
