package rebalance

// The zone spread rule: setSpreadRule derives each zone's bounds from the zone sizes and the
// replication factor, and every phase checks a slot against them with allowed.

import "math"

// spreadCount is the smallest per-zone count c that fits r holders in zones of the sizes given
// (their sum at least r): the spread rule gives every partition min(size, c) or min(size, c-1)
// holders in each zone.
func spreadCount(sizes []int, r int) int {
	c := 1
	for {
		total := 0
		for _, n := range sizes {
			total += min(n, c)
		}
		if total >= r {
			return c
		}
		c++
	}
}

// SpreadLimits says how many holders of one partition each zone may have under the spread rule
// that Compute follows for nodes and cfg: by zone name, for the zones of the nodes that have
// one. A node without a zone is a zone of its own, of limit 1. It is nil without nodes or
// without zones, and safe for concurrent use.
func SpreadLimits(nodes []Node, cfg Config) map[string]int {
	sizes := map[string]int{}
	var all []int
	for _, n := range nodes {
		if n.Zone == "" {
			all = append(all, 1)
			continue
		}
		sizes[n.Zone]++
	}
	if len(sizes) == 0 {
		return nil
	}
	for _, n := range sizes {
		all = append(all, n)
	}
	c := spreadCount(all, min(cfg.ReplicationFactor, len(nodes)))
	out := make(map[string]int, len(sizes))
	for z, n := range sizes {
		out[z] = min(n, c)
	}
	return out
}

// setSpreadRule sets the bounds of each zone. c is the smallest per-zone count that fits r holders.
// Every partition then has min(n_z, c) or min(n_z, c-1) holders in zone z: distinct zones when there
// are at least r zones, the most even split the zone sizes allow otherwise.
func (s *placer) setSpreadRule() {
	sizes := make([]int, len(s.zones))
	for i, z := range s.zones {
		sizes[i] = len(z.nodes)
	}
	c := spreadCount(sizes, s.r)
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
