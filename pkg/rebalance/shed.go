package rebalance

// Phase 4 of a Compute call: shedExcess hands replicas from nodes above their replica target to
// nodes below it, one copy each, and where it can lets the primary role travel with the replica, so
// that primaries are balanced with as few role moves as possible.

import (
	"cmp"
	"slices"
)

// shedExcess moves replicas from nodes above their target straight to nodes below it. It returns
// the nodes that kept an excess because no node below target could take any of their partitions.
func (s *placer) shedExcess() (pending []int32) {
	var over, under []int32
	for n := range s.nodes {
		switch {
		case s.load[n] > s.quota[n]:
			over = append(over, int32(n))
		case s.load[n] < s.quota[n]:
			under = append(under, int32(n))
		}
	}
	if len(over) == 0 {
		return nil
	}
	byGap := func(a, b int32) int {
		ga, gb := s.load[a]-s.quota[a], s.load[b]-s.quota[b]
		if ga < 0 {
			ga, gb = -ga, -gb
		}
		if ga != gb {
			return gb - ga
		}
		return cmp.Compare(s.nodes[a].hash, s.nodes[b].hash)
	}
	slices.SortFunc(over, byGap)
	slices.SortFunc(under, byGap)
	s.track(over)
	s.over = over
	// The most constrained nodes shed first: a node that has few partitions a node below target
	// may take (zones) must not find them taken by a node that could have given anything.
	// The count looks at a bounded sample (a few times the excess, against the neediest receivers),
	// which is enough to tell constrained nodes from free ones.
	choice := make([]int, len(s.nodes))
	for _, i := range over {
		limit := 4 * (s.load[i] - s.quota[i])
		hs := s.holdings[i][:min(len(s.holdings[i]), 8*limit)]
		for _, p := range hs {
			if !s.holds(int(p), i) {
				continue
			}
			for _, j := range under[:min(len(under), 16)] {
				if s.allowed(int(p), i, j) {
					choice[i]++
					break
				}
			}
			if choice[i] >= limit {
				break
			}
		}
	}
	slices.SortStableFunc(over, func(a, b int32) int { return choice[a] - choice[b] })
	s.cursor, s.bestSeen = make([]int, len(s.nodes)), make([]int, len(s.nodes))
	for n := range s.cursor {
		s.cursor[n], s.bestSeen[n] = -1, primaryScore
	}
	s.shedWithPrimary(under)
	s.shedNearestRoles(over, under)
	for _, i := range over {
		for s.load[i] > s.quota[i] {
			if s.load[i]-s.quota[i] > bulkExcess && s.onlyTouched != nil && s.onlyTouched[i] {
				if s.shedTouched(i, under) {
					continue
				}
			}
			if s.shedOne(i, under) || s.shedInstead(i, under) {
				continue
			}
			if s.load[i]-s.quota[i] > bulkExcess && s.shedTouched(i, under) {
				s.onlyTouched[i] = true
				continue
			}
			pending = append(pending, i)
			break
		}
	}
	return pending
}

// shedInstead helps an overloaded node that has no partition a node below target may take (zones
// forbid them all): when its excess is only the rounding of its share (it lacks the +1), a node
// of its extraClass that has the +1 and is at its target takes over the excess and sheds one of its
// own replicas instead. Balance is the same, and it costs one copy where a chain of hand-overs
// from the first node costs two or more. It reports whether a replica moved.
func (s *placer) shedInstead(i int32, under []int32) bool {
	if s.load[i] != s.quota[i]+1 || s.replicaExtra(i) != 0 {
		return false
	}
	c := s.extraClass(i)
	var cands []int32
	for n := range s.nodes {
		u := int32(n)
		if u != i && s.extraClass(u) == c && s.load[u] == s.quota[u] && s.replicaExtra(u) == 1 && s.replicaCanShrink(u) {
			cands = append(cands, u)
			if len(cands) == maxShedInstead {
				break
			}
		}
	}
	if len(cands) == 0 {
		return false
	}
	s.track(cands)
	for _, u := range cands {
		s.moveExtra(u, i)
		if s.shedOne(u, under) {
			return true
		}
		s.moveExtra(i, u)
	}
	return false
}

// maxShedInstead bounds the nodes shedInstead tries for one replica.
const maxShedInstead = 64

// shedWithPrimary lets nodes below both targets take, from overloaded holders, partitions whose
// primary is above its primary target, together with the primary role: each such hand-over fixes a
// replica and a primary imbalance with one copy and one primary move, where doing them apart would
// cost a chain of role swaps.
func (s *placer) shedWithPrimary(under []int32) {
	var takers []int32
	for _, j := range under {
		if s.pcount[j] < s.pquota[j] {
			takers = append(takers, j)
		}
	}
	if len(takers) == 0 {
		return
	}
	for p := range s.parts {
		k := s.prim[p]
		if k < 0 || s.pcount[k] <= s.pquota[k] || s.touched(p) {
			continue
		}
	slots:
		for _, i := range s.slots[p*s.r : (p+1)*s.r] {
			if s.load[i] <= s.quota[i] {
				continue
			}
			for _, j := range takers {
				if s.load[j] < s.quota[j] && s.pcount[j] < s.pquota[j] && s.allowed(p, i, j) {
					if p == s.trace {
						s.note(p, "%s hands its replica to %s, which also takes the primary role from %s: %s had %d primaries, target %d",
							s.id(i), s.id(j), s.id(k), s.id(k), s.pcount[k], s.pquota[k])
					}
					s.replace(p, i, j, true)
					break slots
				}
			}
		}
	}
	for _, j := range takers {
		if s.load[j] < s.quota[j] && s.pcount[j] < s.pquota[j] {
			s.shedWithMovedExtras(takers)
			return
		}
	}
}

// shedWithMovedExtras finishes shedWithPrimary's work when too few partitions have both an
// overloaded holder and a primary above its target. Which nodes get the +1s of the rounded shares is
// a free choice among nodes whose fair share has a fractional part, so a node at its target that
// holds such a +1 may pass it to a node one above its target only because it lacks the +1, and then
// hand over a replica or a primary role itself. Balance and the number of copies stay the same; the
// primary role travels with the replica instead of through a chain of role swaps.
func (s *placer) shedWithMovedExtras(takers []int32) {
	var pSpare []int32
	rSpare := map[int32][]int32{}
	for n := range s.nodes {
		u := int32(n)
		if s.pcount[u] > s.pquota[u] && s.pquota[u] == s.pfloor[u] && s.pfrac[u] {
			pSpare = append(pSpare, u)
		}
		if s.load[u] > s.quota[u] && s.replicaExtra(u) == 0 {
			c := s.extraClass(u)
			rSpare[c] = append(rSpare[c], u)
		}
	}
	// spare returns a node of list other than not that is above its target and lacks its +1,
	// dropping from the front the nodes that no longer are.
	spare := func(list *[]int32, not int32, valid func(int32) bool) int32 {
		for len(*list) > 0 && !valid((*list)[0]) {
			*list = (*list)[1:]
		}
		for _, u := range *list {
			if u != not && valid(u) {
				return u
			}
		}
		return -1
	}
	pValid := func(u int32) bool { return s.pcount[u] > s.pquota[u] && s.pquota[u] == s.pfloor[u] }
	rValid := func(u int32) bool { return s.load[u] > s.quota[u] && s.replicaExtra(u) == 0 }
	want := 0
	for _, j := range takers {
		want += max(0, min(s.quota[j]-s.load[j], s.pquota[j]-s.pcount[j]))
	}
	for p := 0; p < s.parts && want > 0; p++ {
		k := s.prim[p]
		if k < 0 || s.touched(p) {
			continue
		}
		// The primary side: k above its target, or at it with a +1 that a spare can take.
		pFrom := int32(-1)
		if s.pcount[k] <= s.pquota[k] {
			if s.pcount[k] != s.pquota[k] || s.pquota[k] != s.pfloor[k]+1 || !s.pfrac[k] {
				continue
			}
			if pFrom = spare(&pSpare, k, pValid); pFrom < 0 {
				continue
			}
		}
	slots:
		for _, i := range s.slots[p*s.r : (p+1)*s.r] {
			rFrom := int32(-1)
			if s.load[i] <= s.quota[i] {
				if s.load[i] != s.quota[i] || s.replicaExtra(i) != 1 || !s.replicaCanShrink(i) {
					continue
				}
				list := rSpare[s.extraClass(i)]
				rFrom = spare(&list, i, rValid)
				rSpare[s.extraClass(i)] = list
				if rFrom < 0 {
					continue
				}
			}
			for _, j := range takers {
				if s.load[j] >= s.quota[j] || s.pcount[j] >= s.pquota[j] || !s.allowed(p, i, j) {
					continue
				}
				if pFrom >= 0 {
					s.pquota[k]--
					s.pquota[pFrom]++
				}
				if rFrom >= 0 {
					s.moveExtra(i, rFrom)
				}
				if p == s.trace {
					s.note(p, "%s hands its replica to %s, which also takes the primary role from %s (the rounding of the shares is settled so that this balances both)",
						s.id(i), s.id(j), s.id(k))
				}
				s.replace(p, i, j, true)
				want--
				break slots
			}
		}
	}
}

// shedNearestRoles serves receivers that still need primary roles after shedWithPrimary: each takes,
// from all overloaded nodes at once, the partition whose primary is fewest role swaps away from a
// node above its primary target, with its role. Choosing per overloaded node (as shedOne does) would
// settle for the first node's nearest, which may be much further than another node's. The scans are
// bounded by maxRoleScan slots; past that shedOne carries on.
func (s *placer) shedNearestRoles(over, under []int32) {
	budget := maxRoleScan
	for budget > 0 {
		j := int32(-1)
		for _, u := range under {
			if s.load[u] < s.quota[u] && s.pcount[u] < s.pquota[u] {
				j = u
				break
			}
		}
		if j < 0 {
			return
		}
		dist := s.primaryDistances()
		best, from, bestScore := -1, int32(-1), primaryScore-len(s.nodes)
		for _, i := range over {
			if s.load[i] <= s.quota[i] {
				continue
			}
			budget -= len(s.holdings[i])
			for _, q := range s.holdings[i] {
				p := int(q)
				if !s.holds(p, i) || !s.allowed(p, i, j) {
					continue
				}
				if sc := s.shedScore(p, i, dist); sc > bestScore {
					best, from, bestScore = p, i, sc
				}
			}
		}
		if best < 0 {
			return
		}
		k := s.prim[best]
		if best == s.trace {
			s.note(best, "%s hands its replica to %s, which takes the primary role from %s, the fewest role swaps (%d) away from a node above its primary target",
				s.id(from), s.id(j), s.id(k), primaryScore-bestScore)
		}
		s.staleDistances(k)
		s.replace(best, from, j, true)
	}
}

// maxRoleScan bounds the slots shedNearestRoles reads in one call.
const maxRoleScan = 1 << 20

// shedOne moves one replica of overloaded node i to a node below target. Among i's partitions it
// prefers, for a receiver that needs primaries, the one whose primary is fewest role swaps away from
// a node with too many primaries (zero: that node itself), and the receiver takes the role: the
// chain of swaps that settles it later is then as short as it can be. Otherwise it prefers a
// partition i is not primary of, then one i is primary of while above its primary target.
func (s *placer) shedOne(i int32, under []int32) bool {
	// Receivers only gain here, so the ones at their target at the front can be skipped for good.
	for s.underFrom < len(under) && s.load[under[s.underFrom]] >= s.quota[under[s.underFrom]] {
		s.underFrom++
	}
	for _, j := range under[s.underFrom:] {
		if s.load[j] >= s.quota[j] {
			continue
		}
		var dist []int
		want := 2
		if s.otherOverloaded(i) {
			want = 3 // see shedScore
		}
		if s.pcount[j] < s.pquota[j] {
			dist = s.primaryDistances()
			want = primaryScore
		}
		// Scan i's partitions from where the last scan for i stopped, so that handing on many
		// replicas reads each entry about once, and stop at the first one as good as any seen in
		// a full scan before.
		hs := s.holdings[i]
		if s.cursor[i] < 0 {
			s.cursor[i] = int(mix(s.nodes[i].hash^s.nodes[j].hash) % uint64(len(hs)))
		}
		want = min(want, s.bestSeen[i])
		// A 3 only spares another overloaded node a lost role, so the search for one gives up
		// after a few 2s: where 3s are scarce, scanning for them would cost more than they save.
		best, bestScore, bestAt := -1, -1, 0
		twos, full := 0, true
		for t := range hs {
			at := (s.cursor[i] + t) % len(hs)
			p := int(hs[at])
			if !s.holds(p, i) || !s.allowed(p, i, j) {
				continue
			}
			sc := s.shedScore(p, i, dist)
			if sc > bestScore {
				best, bestScore, bestAt = p, sc, at
				if sc >= want {
					break
				}
			}
			if want == 3 && sc == 2 {
				if twos++; twos == maxTwos {
					full = false
					break
				}
			}
		}
		if best < 0 {
			continue
		}
		if bestScore < want && full {
			s.bestSeen[i] = bestScore
		}
		s.cursor[i] = bestAt + 1
		if best == s.trace {
			s.note(best, "%s hands its replica to %s: %s had %d replicas, target %d; %s had %d, target %d",
				s.id(i), s.id(j), s.id(i), s.load[i], s.quota[i], s.id(j), s.load[j], s.quota[j])
		}
		takePrimary := bestScore > primaryScore-len(s.nodes)
		if takePrimary {
			k := s.prim[best]
			if best == s.trace {
				s.note(best, "%s takes the primary role from %s: %s had %d primaries, target %d",
					s.id(j), s.id(k), s.id(k), s.pcount[k], s.pquota[k])
			}
			s.staleDistances(k)
		}
		s.replace(best, i, j, takePrimary)
		return true
	}
	return false
}

// bulkExcess is the excess above which an overloaded node that has no untouched partition to
// hand on gives a touched one (shedTouched) rather than leave the rest to repair.
const bulkExcess = 64

// shedTouched moves one replica of overloaded node i to a node below target when every partition
// i may hand on has already changed in this call. Many nodes joining at once need more than one
// new holder for some partitions (three nodes joining three, R=3: half of all replicas move); a
// direct hand-over costs one copy, where repair's chains of hand-overs search the whole map for
// each replica, which on a large map with thousands of replicas left takes minutes. Repair can
// still beat a direct hand-over in copies (a chain may hand a replica back to a node that held it
// before, for free), so only a bulk excess (over bulkExcess) goes this way. Once a node had to,
// its later replicas skip shedOne's full scan, which would fail the same way. It reports whether
// a replica moved.
func (s *placer) shedTouched(i int32, under []int32) bool {
	hs := s.holdings[i]
	for s.underFrom < len(under) && s.load[under[s.underFrom]] >= s.quota[under[s.underFrom]] {
		s.underFrom++
	}
	if s.touchedCursor == nil {
		s.touchedCursor, s.onlyTouched = make([]int, len(s.nodes)), make([]bool, len(s.nodes))
	}
	for _, j := range under[s.underFrom:] {
		if s.load[j] >= s.quota[j] {
			continue
		}
		for t := range hs {
			at := (s.touchedCursor[i] + t) % len(hs)
			p := int(hs[at])
			if !s.holds(p, i) || !s.allowed(p, i, j) {
				continue
			}
			s.touchedCursor[i] = at + 1
			if p == s.trace {
				s.note(p, "%s hands a second replica of the partition to %s: %s had %d replicas, target %d; %s had %d, target %d",
					s.id(i), s.id(j), s.id(i), s.load[i], s.quota[i], s.id(j), s.load[j], s.quota[j])
			}
			s.replace(p, i, j, false)
			return true
		}
	}
	return false
}

// maxTwos is how many partitions of score 2 shedOne passes over while looking for a 3.
const maxTwos = 8

// otherOverloaded reports whether a node other than i is still above its replica target, so that
// a partition it leads can score 3 in shedScore; otherwise a scan need not look for one.
func (s *placer) otherOverloaded(i int32) bool {
	for _, o := range s.over {
		if o != i && s.load[o] > s.quota[o] {
			return true
		}
	}
	return false
}

// primaryScore is the shedScore of a partition whose primary is above its primary target; each role
// swap further away scores one less.
const primaryScore = 1 << 30

// shedScore ranks partition p as the replica i hands on. dist, when the receiver needs primaries,
// is primaryDistances.
func (s *placer) shedScore(p int, i int32, dist []int) int {
	if s.touched(p) {
		// Another slot of p already changed in this call: never move a second one here, so a
		// partition is not copied twice in one step (a repair chain may still do it).
		return -1
	}
	k := s.prim[p]
	switch {
	case dist != nil && k >= 0 && dist[k] >= 0:
		return primaryScore - dist[k]
	case k >= 0 && k != i && s.load[k] > s.quota[k]:
		// k must shed replicas too, and cannot hand on p without its role: leave k the
		// partitions that others lead.
		return 3
	case k != i:
		return 2
	case s.pcount[i] > s.pquota[i]:
		return 1
	}
	return 0
}

// staleDistances is called when a hand-over takes the primary role from k. If k was not above its
// primary target, a chain of role swaps will later bring it one back from the source its distance
// was measured from; that source's excess is then spoken for and stops counting. Recomputing the
// distances costs a pass over all partitions, so that is done a bounded number of times per call;
// after that only k's own excess is tracked.
func (s *placer) staleDistances(k int32) {
	if s.pdist != nil && s.pdist[k] > 0 {
		s.claimed[s.proot[k]]++
	}
	if s.pdistRuns < maxDistanceRuns && s.pdistRuns*len(s.slots) < maxDistanceWork {
		s.pdist = nil
	} else if s.pdist != nil && s.pcount[k]-1 <= s.pquota[k] && s.pdist[k] == 0 {
		s.pdist[k] = -1
	}
}

// maxDistanceRuns and maxDistanceWork (in slots read) bound the primaryDistances passes in one
// call: many on a small map, where they are cheap, a few on a large one.
const (
	maxDistanceRuns = 32
	maxDistanceWork = 1 << 20
)

// primaryDistances returns, per node, the fewest role swaps that bring it one more primary role
// from a node above its primary target (0 for such a node, -1 if none can), by a breadth-first
// search from those nodes: a role moves from the primary of a partition to another holder of it.
// A source whose excess earlier hand-overs have spoken for (claimed) does not count. proot records
// the source each node was reached from. The result is cached until a hand-over takes a primary role.
func (s *placer) primaryDistances() []int {
	if s.pdist != nil {
		return s.pdist
	}
	n := len(s.nodes)
	if s.claimed == nil {
		s.claimed, s.proot = make([]int, n), make([]int32, n)
	}
	first, next := make([]int32, n), make([]int32, s.parts)
	for u := range first {
		first[u] = -1
	}
	for p, u := range s.prim {
		if u >= 0 {
			next[p], first[u] = first[u], int32(p)
		}
	}
	dist := make([]int, n)
	var queue []int32
	for u := range dist {
		dist[u] = -1
		if s.pcount[u]-s.claimed[u] > s.pquota[u] {
			dist[u] = 0
			s.proot[u] = int32(u)
			queue = append(queue, int32(u))
		}
	}
	for head := 0; head < len(queue); head++ {
		u := queue[head]
		for p := first[u]; p >= 0; p = next[p] {
			for _, h := range s.slots[int(p)*s.r : (int(p)+1)*s.r] {
				if h >= 0 && dist[h] < 0 {
					dist[h] = dist[u] + 1
					s.proot[h] = s.proot[u]
					queue = append(queue, h)
				}
			}
		}
	}
	s.pdist = dist
	s.pdistRuns++
	return dist
}
