package rebalance

// The zone spread rule: setSpreadRule derives each zone's bounds from the zone sizes and the
// replication factor, and every phase checks a slot against them with allowed.

import "math"

// setSpreadRule sets the bounds of each zone. c is the smallest per-zone count that fits r holders.
// Every partition then has min(n_z, c) or min(n_z, c-1) holders in zone z: distinct zones when there
// are at least r zones, the most even split the zone sizes allow otherwise.
func (s *placer) setSpreadRule() {
	c := 1
	for {
		total := 0
		for _, z := range s.zones {
			total += min(len(z.nodes), c)
		}
		if total >= s.r {
			break
		}
		c++
	}
	for i := range s.zones {
		z := &s.zones[i]
		z.hi = min(len(z.nodes), c)
		z.lo = min(len(z.nodes), c-1)
		if z.lo > 0 {
			s.loZones = append(s.loZones, int32(i))
		}
		s.zoneHi = append(s.zoneHi, int32(z.hi))
		zoneCap := int32(math.MaxInt32)
		if z.hi < len(z.nodes) {
			zoneCap = int32(z.hi)
		}
		s.zoneCap = append(s.zoneCap, zoneCap)
	}
}

// zoneFull reports whether p already has as many holders in node n's zone as the spread rule
// allows. A zone whose every node may hold p needs no count: distinct holders are checked apart.
func (s *placer) zoneFull(p int, n int32) bool {
	z := s.zoneOf[n]
	return s.zoneCap[z] != math.MaxInt32 && s.zoneCount(p, z, -1) >= int(s.zoneCap[z])
}

// zoneCount counts the holders of p in zone z, not counting node out.
func (s *placer) zoneCount(p int, z, out int32) int {
	c := 0
	for _, h := range s.slots[p*s.r : (p+1)*s.r] {
		if h >= 0 && h != out && s.zoneOf[h] == z {
			c++
		}
	}
	return c
}

// lowNeed is how many of p's empty slots must go to zones still below their lower bound, not
// counting node out as a holder.
func (s *placer) lowNeed(p int, out int32) int {
	need := 0
	for _, z := range s.loZones {
		if c := s.zoneCount(p, z, out); c < s.zones[z].lo {
			need += s.zones[z].lo - c
		}
	}
	return need
}

// allowed reports whether node in may take the slot of p that out holds (out = -1: an empty slot)
// without breaking distinct holders or the zone spread rule.
func (s *placer) allowed(p int, out, in int32) bool {
	zin := s.zoneOf[in]
	filled, same := 0, 0
	for _, h := range s.slots[p*s.r : (p+1)*s.r] {
		if h < 0 || h == out {
			continue
		}
		if h == in {
			return false
		}
		filled++
		if s.zoneOf[h] == zin {
			same++
		}
	}
	if same >= int(s.zoneHi[zin]) {
		return false
	}
	if len(s.loZones) == 0 {
		return true
	}
	need := 0
	for _, z := range s.loZones {
		c := s.zoneCount(p, z, out)
		if z == zin {
			c++
		}
		if c < s.zones[z].lo {
			need += s.zones[z].lo - c
		}
	}
	return need <= s.r-filled-1
}
