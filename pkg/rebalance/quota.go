package rebalance

// Phase 2 of a Compute call: the targets. replicaQuotas and primaryQuotas set how many replicas and
// primary roles each node should have: exact fair shares (ratioShare, waterFill) rounded to
// neighbouring integers (apportion). Which nodes get the +1s of the rounding is a free choice, which
// later phases trade (moveExtra) where that saves a copy or a role swap.

import (
	"math/big"
	"math/bits"
	"slices"
)

// replicaQuotas sets each node's target replica count: the weighted fair share of P·r slots within
// the zone bounds, rounded to a neighbouring integer. Zones are rounded first, then the nodes inside
// each zone, so both levels stay within one slot of their fair share.
func (s *placer) replicaQuotas() {
	P, T := int64(s.parts), int64(s.parts*s.r)
	var W int64
	for _, n := range s.nodes {
		W += n.weight
	}
	zoneSh := make([]share, len(s.zones))
	nodeSh := make([]share, len(s.nodes))
	fast := true
	for _, z := range s.zones {
		if !mulLE(uint64(P)*uint64(z.lo), uint64(W), uint64(T), uint64(z.weight)) ||
			!mulLE(uint64(T), uint64(z.weight), uint64(P)*uint64(z.hi), uint64(W)) {
			fast = false
			break
		}
	}
	for _, n := range s.nodes {
		if !mulLE(uint64(T), uint64(n.weight), uint64(P), uint64(W)) {
			fast = false
			break
		}
	}
	if fast {
		// No bound binds: every share is T·w/W.
		for i, z := range s.zones {
			zoneSh[i] = ratioShare(uint64(T), uint64(z.weight), uint64(W))
		}
		for i, n := range s.nodes {
			nodeSh[i] = ratioShare(uint64(T), uint64(n.weight), uint64(W))
		}
	} else {
		w, lo, hi := make([]int64, len(s.zones)), make([]int64, len(s.zones)), make([]int64, len(s.zones))
		for i, z := range s.zones {
			w[i], lo[i], hi[i] = z.weight, P*int64(z.lo), P*int64(z.hi)
		}
		zs := waterFill(w, lo, hi, new(big.Rat).SetInt64(T))
		for i, z := range s.zones {
			zoneSh[i] = ratShare(zs[i])
			if len(z.nodes) == 1 {
				nodeSh[z.nodes[0]] = zoneSh[i]
				continue
			}
			nw, nlo, nhi := make([]int64, len(z.nodes)), make([]int64, len(z.nodes)), make([]int64, len(z.nodes))
			for k, n := range z.nodes {
				nw[k], nhi[k] = s.nodes[n].weight, P
			}
			for k, x := range waterFill(nw, nlo, nhi, zs[i]) {
				nodeSh[z.nodes[k]] = ratShare(x)
			}
		}
	}
	level := make([]int, len(s.zones))
	hash := make([]uint64, len(s.zones))
	for i, z := range s.zones {
		var cur int64
		for _, n := range z.nodes {
			cur += int64(s.load[n])
		}
		if cur > zoneSh[i].floor {
			level[i] = 1
		}
		hash[i] = z.hash
	}
	zoneQuota := apportion(zoneSh, T, level, hash)
	s.rfloor, s.rfrac = make([]int, len(s.nodes)), make([]bool, len(s.nodes))
	for n, sh := range nodeSh {
		s.rfloor[n], s.rfrac[n] = int(sh.floor), sh.frac
	}
	s.zquota, s.zfloor, s.zfrac = make([]int, len(s.zones)), make([]int, len(s.zones)), make([]bool, len(s.zones))
	for i, sh := range zoneSh {
		s.zquota[i], s.zfloor[i], s.zfrac[i] = int(zoneQuota[i]), int(sh.floor), sh.frac
	}
	for i, z := range s.zones {
		if len(z.nodes) == 1 {
			s.quota[z.nodes[0]] = int(zoneQuota[i])
			continue
		}
		sh := make([]share, len(z.nodes))
		lv := make([]int, len(z.nodes))
		hs := make([]uint64, len(z.nodes))
		for k, n := range z.nodes {
			sh[k] = nodeSh[n]
			if int64(s.load[n]) > sh[k].floor {
				lv[k] = 1
			}
			hs[k] = s.nodes[n].hash
		}
		for k, q := range apportion(sh, zoneQuota[i], lv, hs) {
			s.quota[z.nodes[k]] = int(q)
		}
	}
}

// primaryQuotas sets each node's target primary count: the weighted fair share of P primaries,
// capped by the node's replica target (a node is primary only of partitions it holds). The +1s go
// to nodes that already hold that many primaries, then to nodes that are surviving holders of
// partitions that lost their primary, so that as few primary roles as possible change.
func (s *placer) primaryQuotas() {
	P := int64(s.parts)
	var W int64
	for _, n := range s.nodes {
		W += n.weight
	}
	sh := make([]share, len(s.nodes))
	fast := true
	for i, n := range s.nodes {
		if !mulLE(uint64(P), uint64(n.weight), uint64(s.quota[i]), uint64(W)) {
			fast = false
			break
		}
	}
	s.pfast, s.weight = fast, W
	if fast {
		for i, n := range s.nodes {
			sh[i] = ratioShare(uint64(P), uint64(n.weight), uint64(W))
		}
	} else {
		w, lo, hi := make([]int64, len(s.nodes)), make([]int64, len(s.nodes)), make([]int64, len(s.nodes))
		for i, n := range s.nodes {
			w[i], hi[i] = n.weight, int64(s.quota[i])
		}
		for i, x := range waterFill(w, lo, hi, new(big.Rat).SetInt64(P)) {
			sh[i] = ratShare(x)
		}
	}
	// bonus counts the partitions that lost their primary and that a node survives in; handy says
	// whether a node leads a partition that a replica-overloaded node holds, whose role can travel
	// with the replica a joiner takes. handy matters only for a node above the floor of its share,
	// so the pass skips the other partitions after one load.
	bonus, handy := make([]int, len(s.nodes)), make([]bool, len(s.nodes))
	over := make([]bool, len(s.nodes))
	overloaded := false
	for n := range s.nodes {
		over[n] = s.load[n] > s.quota[n]
		overloaded = overloaded || over[n]
	}
	for p, k := range s.prim {
		holders := s.slots[p*s.r : (p+1)*s.r]
		if k < 0 {
			for _, h := range holders {
				if h >= 0 {
					bonus[h]++
				}
			}
			continue
		}
		if !overloaded || handy[k] || int64(s.pcount[k]) <= sh[k].floor {
			continue
		}
		for _, h := range holders {
			if h >= 0 && over[h] {
				handy[k] = true
				break
			}
		}
	}
	// Levels for the +1s, highest first: nodes that already lead that many partitions and whose
	// roles cannot travel with a replica; then those whose roles can (when +1s run short, they are
	// the ones to give a role up, with no extra swap); then survivors of lost primaries.
	level := make([]int, len(s.nodes))
	hash := make([]uint64, len(s.nodes))
	for i := range s.nodes {
		switch {
		case int64(s.pcount[i]) > sh[i].floor && !handy[i]:
			level[i] = 3
		case int64(s.pcount[i]) > sh[i].floor:
			level[i] = 2
		case int64(s.pcount[i]+bonus[i]) > sh[i].floor:
			level[i] = 1
		}
		hash[i] = s.nodes[i].hash
	}
	for i, q := range apportion(sh, P, level, hash) {
		s.pquota[i] = int(q)
		s.pfloor[i], s.pfrac[i] = int(sh[i].floor), sh[i].frac
	}
}

// extraClass is the set of nodes among which the +1s of replica rounding can be exchanged: the nodes
// of one zone (rounded at node level), or all the nodes alone in their zone (rounded at zone level).
func (s *placer) extraClass(n int32) int32 {
	if z := s.zoneOf[n]; len(s.zones[z].nodes) > 1 {
		return z
	}
	return -1
}

// replicaExtra is 1 if node n's replica target is its share rounded up, 0 if rounded down, and -1 if
// the share is whole (nothing to exchange).
func (s *placer) replicaExtra(n int32) int {
	z := s.zoneOf[n]
	if len(s.zones[z].nodes) == 1 {
		if !s.zfrac[z] {
			return -1
		}
		return s.zquota[z] - s.zfloor[z]
	}
	if !s.rfrac[n] {
		return -1
	}
	return s.quota[n] - s.rfloor[n]
}

// replicaCanShrink reports whether node n's replica target can lose its +1 without changing its
// fair primary share: primary shares are capped by replica targets, so only when no cap binds.
func (s *placer) replicaCanShrink(n int32) bool {
	return s.pfast && mulLE(uint64(s.parts), uint64(s.nodes[n].weight), uint64(s.quota[n]-1), uint64(s.weight))
}

// moveExtra moves the +1 of replica rounding from node from to node to, of the same extraClass.
func (s *placer) moveExtra(from, to int32) {
	s.quota[from]--
	s.quota[to]++
	if s.extraClass(from) < 0 {
		s.zquota[s.zoneOf[from]]--
		s.zquota[s.zoneOf[to]]++
	}
}

// share is an exact fair share of slots, split into its integer part and whether a fractional part
// remains; rank is that fractional part as a float, used only to order who gets the remainders.
type share struct {
	floor int64
	frac  bool
	rank  float64
}

// ratioShare returns the exact share t·w/W. w ≤ W, so the quotient fits in 64 bits.
func ratioShare(t, w, W uint64) share {
	hi, lo := bits.Mul64(t, w)
	q, rem := bits.Div64(hi, lo, W)
	return share{floor: int64(q), frac: rem != 0, rank: float64(rem) / float64(W)}
}

// mulLE reports whether a·b ≤ c·d without overflow.
func mulLE(a, b, c, d uint64) bool {
	h1, l1 := bits.Mul64(a, b)
	h2, l2 := bits.Mul64(c, d)
	return h1 < h2 || (h1 == h2 && l1 <= l2)
}

func ratShare(x *big.Rat) share {
	q, r := new(big.Int).QuoRem(x.Num(), x.Denom(), new(big.Int))
	rank, _ := new(big.Rat).SetFrac(r, x.Denom()).Float64()
	return share{floor: q.Int64(), frac: r.Sign() != 0, rank: rank}
}

// waterFill returns x_i = clamp(λ·w_i, lo_i, hi_i) with Σx_i = total: the weighted fair split of total
// when every item has bounds. It needs Σlo ≤ total ≤ Σhi and w_i ≥ 1. Each round fixes the items that
// violate a bound on the side the solution lies, so it ends within len(w) rounds, and in one round
// when no bound binds.
func waterFill(w, lo, hi []int64, total *big.Rat) []*big.Rat {
	n := len(w)
	const (
		free = iota
		atLo
		atHi
	)
	state := make([]int, n)
	lambda := new(big.Rat)
	x := new(big.Rat)
	for {
		rest := new(big.Rat).Set(total)
		var wFree int64
		for i := range n {
			switch state[i] {
			case atLo:
				rest.Sub(rest, new(big.Rat).SetInt64(lo[i]))
			case atHi:
				rest.Sub(rest, new(big.Rat).SetInt64(hi[i]))
			default:
				wFree += w[i]
			}
		}
		if wFree == 0 {
			break
		}
		lambda.Quo(rest, new(big.Rat).SetInt64(wFree))
		over, under := new(big.Rat), new(big.Rat)
		var overs, unders []int
		for i := range n {
			if state[i] != free {
				continue
			}
			x.Mul(lambda, new(big.Rat).SetInt64(w[i]))
			if b := new(big.Rat).SetInt64(hi[i]); x.Cmp(b) > 0 {
				over.Add(over, b.Sub(x, b))
				overs = append(overs, i)
			} else if b := new(big.Rat).SetInt64(lo[i]); x.Cmp(b) < 0 {
				under.Add(under, b.Sub(b, x))
				unders = append(unders, i)
			}
		}
		if len(overs) == 0 && len(unders) == 0 {
			break
		}
		c := over.Cmp(under)
		if c >= 0 {
			for _, i := range overs {
				state[i] = atHi
			}
		}
		if c <= 0 {
			for _, i := range unders {
				state[i] = atLo
			}
		}
	}
	out := make([]*big.Rat, n)
	for i := range n {
		switch state[i] {
		case atLo:
			out[i] = new(big.Rat).SetInt64(lo[i])
		case atHi:
			out[i] = new(big.Rat).SetInt64(hi[i])
		default:
			out[i] = new(big.Rat).Mul(lambda, new(big.Rat).SetInt64(w[i]))
		}
	}
	return out
}

// apportion rounds shares to integers q_i ∈ {floor_i, floor_i+1} with Σq_i = total (which must lie
// between Σfloor and Σceil). The +1s go first to items with a higher level (the caller's way to say
// "this one already has it, so giving it there moves nothing"), then to larger fractional parts, then
// by hash, so the result does not depend on the order of the items.
func apportion(sh []share, total int64, level []int, hash []uint64) []int64 {
	q := make([]int64, len(sh))
	var cand []int
	for i, s := range sh {
		q[i] = s.floor
		total -= s.floor
		if s.frac {
			cand = append(cand, i)
		}
	}
	if total <= 0 {
		return q
	}
	slices.SortFunc(cand, func(a, b int) int {
		if level[a] != level[b] {
			return level[b] - level[a]
		}
		if sh[a].rank != sh[b].rank {
			if sh[a].rank > sh[b].rank {
				return -1
			}
			return 1
		}
		if hash[a] != hash[b] {
			if hash[a] < hash[b] {
				return -1
			}
			return 1
		}
		return a - b
	})
	for _, i := range cand[:total] {
		q[i]++
	}
	return q
}
