package rebalance

// Phase 6 of a Compute call: assignPrimaries gives every partition a primary among its holders and
// balances the primary roles by swaps among holders, which copy no data.

// assignPrimaries gives every partition a primary among its holders so that each node has its
// primary target: partitions without one go to a holder below target (surviving holders first,
// which have the data), nodes above target hand roles to other holders, and chains of role swaps
// (no data moves) settle the rest.
func (s *placer) assignPrimaries() {
	var lacking []int
	for p := range s.parts {
		if s.prim[p] >= 0 {
			continue
		}
		if h := s.primaryCandidate(p, -1, s.hasOld(p)); h >= 0 {
			if p == s.trace {
				s.note(p, "%s becomes primary: it had %d primaries, target %d", s.id(h), s.pcount[h], s.pquota[h])
			}
			s.setPrimary(p, h)
		} else {
			lacking = append(lacking, p)
		}
	}
	s.prims = make([][]int32, len(s.nodes))
	for n := range s.nodes {
		s.prims[n] = make([]int32, 0, s.pquota[n]+2)
	}
	for p, n := range s.prim {
		if n >= 0 {
			s.prims[n] = append(s.prims[n], int32(p))
		}
	}
	var excess []int32
	for n := range s.nodes {
		u := int32(n)
		for t := 0; t < len(s.prims[u]) && s.pcount[u] > s.pquota[u]; t++ {
			p := int(s.prims[u][t])
			if s.prim[p] != u {
				continue
			}
			if h := s.primaryCandidate(p, u, true); h >= 0 {
				if p == s.trace {
					s.note(p, "%s takes the primary role from %s: %s had %d primaries, target %d", s.id(h), s.id(u), s.id(u), s.pcount[u], s.pquota[u])
				}
				s.setPrimary(p, h)
			}
		}
		if s.pcount[u] > s.pquota[u] {
			excess = append(excess, u)
		}
	}
	for _, oldOnly := range []bool{true, false} {
		rest := lacking[:0]
		for _, p := range lacking {
			if !s.primaryPath(p, -1, oldOnly) {
				rest = append(rest, p)
			}
		}
		lacking = rest
		moreExcess := excess[:0]
		for _, u := range excess {
			for s.pcount[u] > s.pquota[u] && s.primaryPath(-1, u, oldOnly) {
			}
			if s.pcount[u] > s.pquota[u] {
				moreExcess = append(moreExcess, u)
			}
		}
		excess = moreExcess
	}
	for _, p := range lacking {
		best, bestOld := int32(-1), false
		for k := p * s.r; k < (p+1)*s.r; k++ {
			h := s.slots[k]
			if h < 0 {
				continue
			}
			better := best < 0 || (s.old[k] && !bestOld) ||
				(s.old[k] == bestOld && s.pcount[h]-s.pquota[h] < s.pcount[best]-s.pquota[best])
			if better {
				best, bestOld = h, s.old[k]
			}
		}
		if p == s.trace {
			s.note(p, "%s becomes primary above its primary target: no holder was below target", s.id(best))
		}
		s.setPrimary(p, best)
	}
}

// primaryCandidate returns the holder of p, other than except, that is furthest below its primary
// target, preferring holders that already held p (oldOnly: only those); -1 if none is below target.
func (s *placer) primaryCandidate(p int, except int32, oldOnly bool) int32 {
	best, bestOld := int32(-1), false
	for k := p * s.r; k < (p+1)*s.r; k++ {
		h := s.slots[k]
		if h < 0 || h == except || s.pcount[h] >= s.pquota[h] || (oldOnly && !s.old[k]) {
			continue
		}
		better := best < 0 || (s.old[k] && !bestOld) ||
			(s.old[k] == bestOld && s.pquota[h]-s.pcount[h] > s.pquota[best]-s.pcount[best])
		if better {
			best, bestOld = h, s.old[k]
		}
	}
	return best
}

// hasOld reports whether some holder of p already held it in prev.
func (s *placer) hasOld(p int) bool {
	for k := p * s.r; k < (p+1)*s.r; k++ {
		if s.old[k] {
			return true
		}
	}
	return false
}

func (s *placer) setPrimary(p int, h int32) {
	s.dirty[p] = true
	if k := s.prim[p]; k >= 0 {
		s.pcount[k]--
	}
	s.prim[p] = h
	s.pcount[h]++
	if s.prims != nil {
		s.prims[h] = append(s.prims[h], int32(p))
	}
}

// primaryPath moves primary roles along a chain of swaps (see rolePath) that gives partition src a
// primary (srcNode < 0) or takes one role from srcNode. When no chain reaches a node below its
// primary target, the rounding of the primary shares put the +1s out of reach, and primaryPath moves
// one: to a node the search reached whose fair share allows a +1, from a node that holds a +1 and
// is below target, or else from one at target that can pass a role on. That is the step of a flow
// that rounds the shares and assigns the roles together.
func (s *placer) primaryPath(src int, srcNode int32, oldOnly bool) bool {
	if found := s.rolePath(src, srcNode, oldOnly); found >= 0 {
		s.applyRolePath(found, srcNode)
		return true
	}
	reached := make([]bool, len(s.nodes))
	eligible := int32(-1)
	for n := range s.nodes {
		if s.mark[n] == s.stamp {
			reached[n] = true
			if eligible < 0 && s.pfrac[n] && s.pquota[n] == s.pfloor[n] {
				eligible = int32(n)
			}
		}
	}
	if eligible < 0 {
		return false
	}
	moved := false
	for n := range s.nodes {
		if s.pcount[n] < s.pquota[n] && s.pquota[n] > s.pfloor[n] {
			s.pquota[n]--
			moved = true
			break
		}
	}
	for u, tries := 0, 0; !moved && u < len(s.nodes) && tries < maxExtraTries; u++ {
		if reached[u] || s.pquota[u] == s.pfloor[u] || s.pcount[u] != s.pquota[u] {
			continue
		}
		tries++
		s.pquota[u]--
		if found := s.rolePath(-1, int32(u), oldOnly); found >= 0 {
			s.applyRolePath(found, int32(u))
			moved = true
		} else {
			s.pquota[u]++
		}
	}
	if !moved {
		return false
	}
	s.pquota[eligible]++
	if eligible == srcNode {
		return true // srcNode's excess was only the rounding
	}
	found := s.rolePath(src, srcNode, oldOnly)
	if found < 0 {
		return false // not reached: eligible was reached by the same search
	}
	s.applyRolePath(found, srcNode)
	return true
}

// maxExtraTries bounds the searches primaryPath makes for a +1 to move.
const maxExtraTries = 16

// rolePath searches breadth first for a chain of primary-role swaps that gives partition src a
// primary (srcNode < 0) or takes one role from srcNode, ending at a node below its primary target,
// and returns that node (-1 if none). A role moves from a partition's primary to another holder;
// with oldOnly, or for a partition whose primary died, only to a holder that already had the data.
func (s *placer) rolePath(src int, srcNode int32, oldOnly bool) int32 {
	s.stamp++
	var queue []int32
	found := int32(-1)
	try := func(p int, from int32) {
		for k := p * s.r; k < (p+1)*s.r && found < 0; k++ {
			h := s.slots[k]
			if h < 0 || h == from || s.mark[h] == s.stamp || (!s.old[k] && (oldOnly || s.lost[p])) {
				continue
			}
			s.mark[h] = s.stamp
			s.parent[h] = hop{from: from, part: int32(p)}
			if s.pcount[h] < s.pquota[h] {
				found = h
				return
			}
			queue = append(queue, h)
		}
	}
	if srcNode >= 0 {
		s.mark[srcNode] = s.stamp
		s.parent[srcNode] = hop{from: -1, part: -1}
		queue = append(queue, srcNode)
	} else {
		try(src, -1)
	}
	for head := 0; found < 0 && head < len(queue); head++ {
		u := queue[head]
		for _, p := range s.prims[u] {
			if s.prim[p] == u {
				try(int(p), u)
				if found >= 0 {
					break
				}
			}
		}
	}
	return found
}

// applyRolePath moves the roles along the chain rolePath found, from its end back to its source.
func (s *placer) applyRolePath(found, srcNode int32) {
	for cur := found; ; {
		h := s.parent[cur]
		if int(h.part) == s.trace {
			if h.from < 0 {
				s.note(int(h.part), "%s becomes primary through a chain of role swaps", s.id(cur))
			} else {
				s.note(int(h.part), "%s takes the primary role from %s to balance primaries (no data moves)", s.id(cur), s.id(h.from))
			}
		}
		s.setPrimary(int(h.part), cur)
		if h.from < 0 || h.from == srcNode {
			return
		}
		cur = h.from
	}
}
