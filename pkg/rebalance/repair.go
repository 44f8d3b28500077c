package rebalance

// Phase 5 of a Compute call: repair settles the free slots and excess replicas that the greedy
// phases left, each along a chain of hand-overs that adds the fewest copies (an augmenting path).

import "slices"

// repair settles what the greedy passes left: each pending empty slot or excess replica is routed
// along a shortest chain of hand-overs ending at a node below target (an augmenting path). When no
// chain exists the slot still gets a holder, the allowed node least loaded against its target.
func (s *placer) repair(slots []int, nodes []int32) {
	for _, p := range slots {
		if s.augment(p, -1) {
			continue
		}
		best := int32(-1)
		for n := range s.nodes {
			in := int32(n)
			if s.allowed(p, -1, in) && (best < 0 || s.load[in]-s.quota[in] < s.load[best]-s.quota[best]) {
				best = in
			}
		}
		if p == s.trace {
			s.note(p, "%s takes a free slot above its target: no node below target may hold this partition", s.id(best))
		}
		s.fill(p, best)
	}
	for _, n := range nodes {
		for s.load[n] > s.quota[n] && s.augment(-1, n) {
		}
	}
}

// augment searches for a chain that places one replica: starting from the empty slot of src
// (srcNode < 0) or from one excess replica of srcNode, each step lets a node take a slot and hand one
// of its own partitions on, until a node below its target takes the last one. A step costs a copy
// unless the slot handed on was received in this call, or goes back to the node that held it in
// prev; the search runs level by level in that cost (a 0-1 breadth-first search), so the chain it
// returns adds the fewest copies.
func (s *placer) augment(src int, srcNode int32) bool {
	s.augments++
	if s.tracked == nil || slices.Contains(s.tracked, false) {
		all := make([]int32, len(s.nodes))
		for n := range all {
			all[n] = int32(n)
		}
		s.track(all)
	}
	s.stamp++
	unvisited := make([]int32, 0, len(s.nodes))
	for n := range s.nodes {
		if int32(n) != srcNode {
			unvisited = append(unvisited, int32(n))
		}
	}
	end := int32(-1)
	reach := func(p int, out, m int32, dst *[]int32) {
		s.mark[m] = s.stamp
		s.parent[m] = hop{from: out, part: int32(p)}
		if s.load[m] < s.quota[m] {
			end = m
		} else {
			*dst = append(*dst, m)
		}
	}
	// offerAll offers the slot of p that out gives up (out = -1: an empty slot) to every node not
	// reached yet.
	offerAll := func(p int, out int32, dst *[]int32) {
		kept := unvisited[:0]
		for _, m := range unvisited {
			if s.mark[m] == s.stamp {
				continue
			}
			if end < 0 && s.allowed(p, out, m) {
				reach(p, out, m, dst)
				continue
			}
			kept = append(kept, m)
		}
		unvisited = kept
	}
	// expand offers node n's replicas: the free hops (replicas n received in this call to anyone,
	// replicas n held before back to their other previous holders) or the costly ones.
	// A costly hop offers first the partitions that nothing has touched in this call, so that a
	// chain copies a partition already copied once only when it has no other way.
	expand := func(n int32, costly bool, dst *[]int32) {
		sweeps := 1
		if costly {
			sweeps = 2
		}
		for sweep := range sweeps {
			for _, q := range s.holdings[n] {
				p := int(q)
				if end >= 0 {
					return
				}
				if !s.holds(p, n) || s.onPath(n, p) {
					continue
				}
				received := !s.heldBefore(p, n)
				switch {
				case received && !costly:
					offerAll(p, n, dst)
				case !received && costly:
					if s.touched(p) == (sweep == 0) {
						continue
					}
					offerAll(p, n, dst)
				case !received && !costly && s.left[p]:
					for _, m := range s.previousHolders(p) {
						if s.mark[m] != s.stamp && s.allowed(p, n, m) {
							reach(p, n, m, dst)
							if end >= 0 {
								return
							}
						}
					}
				}
			}
		}
	}
	var level []int32
	if srcNode >= 0 {
		s.mark[srcNode] = s.stamp
		s.parent[srcNode] = hop{from: -1, part: -1}
		level = append(level, srcNode)
	} else {
		offerAll(src, -1, &level)
	}
	for end < 0 && len(level) > 0 {
		for i := 0; i < len(level) && end < 0; i++ {
			expand(level[i], false, &level)
		}
		for i := 0; i < len(level) && end < 0; i++ {
			if s.moveReplicaExtra(level[i]) {
				if level[i] == srcNode {
					return true // srcNode's excess was only the rounding
				}
				end = level[i]
			}
		}
		var next []int32
		for i := 0; i < len(level) && end < 0; i++ {
			expand(level[i], true, &next)
		}
		level = next
	}
	if end < 0 {
		return false
	}
	for cur := end; ; {
		h := s.parent[cur]
		if h.from < 0 {
			if int(h.part) == s.trace {
				s.note(int(h.part), "%s fills a free slot through a chain of hand-overs", s.id(cur))
			}
			s.fill(int(h.part), cur)
			return true
		}
		if int(h.part) == s.trace {
			s.note(int(h.part), "%s hands its replica to %s to make room along a chain of hand-overs", s.id(h.from), s.id(cur))
		}
		s.replace(int(h.part), h.from, cur, false)
		if h.from == srcNode {
			return true
		}
		cur = h.from
	}
}

// moveReplicaExtra gives node to a +1 on its replica target, taken from a node still below its
// target that holds one, when both fair shares allow it: nodes of one zone trade at node level,
// nodes alone in their zone at zone level. The rounding of shares picks who gets the +1s without
// looking at which partitions a node may take; a search that reaches no node below target calls this
// to move a +1 within its reach instead of copying more. It reports whether it moved one.
func (s *placer) moveReplicaExtra(to int32) bool {
	z := s.zoneOf[to]
	single := len(s.zones[z].nodes) == 1
	switch {
	case !single && (!s.rfrac[to] || s.quota[to] != s.rfloor[to]):
		return false
	case single && (!s.zfrac[z] || s.zquota[z] != s.zfloor[z]):
		return false
	}
	for n := range s.nodes {
		d := int32(n)
		dz := s.zoneOf[d]
		if d == to || s.load[d] >= s.quota[d] || s.mark[d] == s.stamp {
			continue
		}
		if !single && dz == z && s.quota[d] == s.rfloor[d]+1 {
			s.quota[d]--
			s.quota[to]++
			return true
		}
		if single && len(s.zones[dz].nodes) == 1 && s.zquota[dz] == s.zfloor[dz]+1 {
			s.quota[d]--
			s.zquota[dz]--
			s.quota[to]++
			s.zquota[z]++
			return true
		}
	}
	return false
}

// previousHolders returns the live nodes listed in prev[p], in prev's order, without repeats.
// Searches ask for the same partitions many times, and a row of prev is a pointer away and its IDs
// need a lookup each, so each row is converted once per call into node numbers.
func (s *placer) previousHolders(p int) []int32 {
	if s.prevNodes == nil {
		s.prevNodes = make([][]int32, s.parts)
	}
	if s.prevNodes[p] == nil {
		row := make([]int32, 0, len(s.prev[p]))
		for _, id := range s.prev[p] {
			if m, ok := s.index.lookup(id); ok && !slices.Contains(row, m) {
				row = append(row, m)
			}
		}
		s.prevNodes[p] = row
	}
	return s.prevNodes[p]
}

// heldBefore reports whether node n held p in prev and still holds it.
func (s *placer) heldBefore(p int, n int32) bool {
	for k := p * s.r; k < (p+1)*s.r; k++ {
		if s.slots[k] == n {
			return s.old[k]
		}
	}
	return false
}

// onPath reports whether partition q already changes hands on the path that reached node n, so one
// chain never moves two slots of the same partition against a zone check made for only one.
func (s *placer) onPath(n int32, q int) bool {
	for cur := n; ; {
		h := s.parent[cur]
		if h.part < 0 {
			return false
		}
		if int(h.part) == q {
			return true
		}
		if h.from < 0 {
			return false
		}
		cur = h.from
	}
}
