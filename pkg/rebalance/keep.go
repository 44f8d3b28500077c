package rebalance

// Phase 1 of a Compute call: keepPrevious keeps the holders of prev that are still allowed, and
// counts what they hold.

import "math"

// keepPrevious copies the previous holders that are still usable: live, not repeated, within r and
// within the zone spread rule. The previous primary stays primary if it is kept. It reads every slot
// of prev, which makes it the largest part of a call that changes little: one pass does the checks,
// the counts and the list of partitions with free slots.
func (s *placer) keepPrevious() {
	r := s.r
	s.slots = make([]int32, s.parts*r)
	s.old = make([]bool, s.parts*r)
	s.prim = make([]int32, s.parts)
	s.dirty = make([]bool, s.parts)
	s.lost = make([]bool, s.parts)
	s.left = make([]bool, s.parts)
	for p := range s.parts {
		s.prim[p] = -1
		base, k := p*r, 0
		row := s.slots[base : base+r]
		if s.prev == nil {
			for t := range row {
				row[t] = -1
			}
			s.dirty[p] = true
			s.short = append(s.short, int32(p))
			continue
		}
		for j, id := range s.prev[p] {
			n, ok := s.index.lookup(id)
			if !ok {
				if p == s.trace {
					s.note(p, "%s is not live: its slot is free", id)
				}
				continue
			}
			// Holders in n's zone are counted only when the zone's cap can bind: without zones,
			// every node is a zone of its own and can never be over.
			z := s.zoneOf[n]
			limited := s.zoneCap[z] != math.MaxInt32
			repeated, same := false, int32(0)
			for _, h := range row[:k] {
				repeated = repeated || h == n
				if limited && s.zoneOf[h] == z {
					same++
				}
			}
			switch {
			case repeated:
				if p == s.trace {
					s.note(p, "%s is listed twice: the second entry is dropped", id)
				}
			case k == r:
				s.left[p] = true
				if p == s.trace {
					s.note(p, "%s dropped: the partition already has %d holders (replication factor %d, %d live nodes)", id, r, r, len(s.nodes))
				}
			case same >= s.zoneCap[z]:
				s.left[p] = true
				if p == s.trace {
					s.note(p, "%s dropped: zone %q already has %d holder(s) of this partition, the most the spread rule allows", id, s.zones[z].name, s.zones[z].hi)
				}
			default:
				row[k] = n
				s.old[base+k] = true
				k++
				if j == 0 {
					s.prim[p] = n
				}
				if p == s.trace {
					s.note(p, "%s keeps its replica", id)
				}
			}
		}
		for t := k; t < r; t++ {
			row[t] = -1
		}
		// Too few zones represented to meet the lower bounds: drop holders from zones above theirs.
		for len(s.loZones) > 0 && s.lowNeed(p, -1) > r-k {
			victim := -1
			for t := k - 1; t >= 0; t-- {
				z := s.zoneOf[s.slots[base+t]]
				if s.zoneCount(p, z, -1) > s.zones[z].lo && (victim < 0 || s.slots[base+victim] == s.prim[p]) {
					victim = t
				}
			}
			n := s.slots[base+victim]
			if p == s.trace {
				s.note(p, "%s dropped: its zone %q has more holders of this partition than the spread rule allows while another zone has too few", s.id(n), s.zones[s.zoneOf[n]].name)
			}
			if s.prim[p] == n {
				s.prim[p] = -1
			}
			s.left[p] = true
			copy(s.slots[base+victim:base+k], s.slots[base+victim+1:base+k])
			copy(s.old[base+victim:base+k], s.old[base+victim+1:base+k])
			k--
			s.slots[base+k], s.old[base+k] = -1, false
		}
		if k != r || k != len(s.prev[p]) || s.prim[p] < 0 {
			s.dirty[p] = true
		}
		if k < r {
			s.short = append(s.short, int32(p))
		}
		for _, n := range row[:k] {
			s.load[n]++
		}
		if n := s.prim[p]; n >= 0 {
			s.pcount[n]++
		}
		if s.prim[p] < 0 && len(s.prev[p]) > 0 {
			s.lost[p] = k > 0
			if p == s.trace {
				s.note(p, "previous primary %s is gone: a surviving holder will take the primary role", s.prev[p][0])
			}
		}
	}
}
