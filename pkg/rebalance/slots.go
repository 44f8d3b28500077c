package rebalance

// The slot table that the phases change: fill and replace give a slot to a node and keep the loads,
// the primary counts and the holdings lists in step.

import "slices"

// track builds the holdings lists of the given nodes, which fill and replace then add to.
// Lists are built only for the nodes that shed replicas or lie on a search, since one pass over all
// slots is a good part of a call's cost.
func (s *placer) track(nodes []int32) {
	if s.holdings == nil {
		s.holdings = make([][]int32, len(s.nodes))
		s.tracked = make([]bool, len(s.nodes))
	}
	fresh := make([]bool, len(s.nodes))
	total := 0
	for _, n := range nodes {
		if !s.tracked[n] {
			fresh[n] = true
			total += s.load[n] + 4
		}
	}
	if total == 0 {
		return
	}
	buf := make([]int32, 0, total)
	for _, n := range nodes {
		if fresh[n] {
			// Room for a few gains before append has to copy.
			s.holdings[n] = buf[len(buf) : len(buf) : len(buf)+s.load[n]+4]
			buf = buf[:len(buf)+s.load[n]+4]
			s.tracked[n] = true
		}
	}
	for k, n := range s.slots {
		if n >= 0 && fresh[n] {
			s.holdings[n] = append(s.holdings[n], int32(k/s.r))
		}
	}
}

func (s *placer) addHolding(n int32, p int) {
	if s.tracked != nil && s.tracked[n] {
		s.holdings[n] = append(s.holdings[n], int32(p))
	}
}

// holds reports whether node n holds p. Holdings lists are not pruned when a node hands a
// partition on (that would cost a search per hand-over), so their readers check with holds.
func (s *placer) holds(p int, n int32) bool {
	return slices.Contains(s.slots[p*s.r:(p+1)*s.r], n)
}

// fill gives an empty slot of p to node in.
func (s *placer) fill(p int, in int32) {
	s.dirty[p] = true
	for k := p * s.r; k < (p+1)*s.r; k++ {
		if s.slots[k] < 0 {
			s.slots[k], s.old[k] = in, s.wasHolder(p, in)
			break
		}
	}
	s.load[in]++
	s.addHolding(in, p)
}

// replace moves the slot of p from out to in. With takePrimary, in also takes the primary role;
// otherwise, if out was primary, p is left without one for assignPrimaries to settle.
func (s *placer) replace(p int, out, in int32, takePrimary bool) {
	s.dirty[p] = true
	for k := p * s.r; k < (p+1)*s.r; k++ {
		if s.slots[k] == out {
			s.left[p] = s.left[p] || s.old[k]
			s.slots[k], s.old[k] = in, s.wasHolder(p, in)
			break
		}
	}
	s.load[out]--
	s.load[in]++
	s.addHolding(in, p)
	switch {
	case takePrimary:
		if k := s.prim[p]; k >= 0 {
			s.pcount[k]--
		}
		s.prim[p] = in
		s.pcount[in]++
	case s.prim[p] == out:
		s.prim[p] = -1
		s.pcount[out]--
	}
}

// touched reports whether a slot of p has changed holder (or is still empty) in this call.
func (s *placer) touched(p int) bool {
	for k := p * s.r; k < (p+1)*s.r; k++ {
		if !s.old[k] {
			return true
		}
	}
	return false
}

// wasHolder reports whether node n is listed in prev as a holder of p.
func (s *placer) wasHolder(p int, n int32) bool {
	return s.prev != nil && slices.Contains(s.prev[p], s.nodes[n].id)
}
