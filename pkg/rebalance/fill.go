package rebalance

// Phase 3 of a Compute call: fillEmpty gives the free slots (of a fresh placement, of dead or
// dropped holders) to the nodes furthest below their replica target.

import "container/heap"

// deficitHeap orders nodes by how many replicas they still need, largest first. Ties are broken by a
// hash of the node and its deficit, so equal nodes take turns instead of always pairing the same way.
type deficitHeap struct {
	s     *placer
	nodes []int32
}

func (h *deficitHeap) key(n int32) (int, uint64) {
	d := h.s.quota[n] - h.s.load[n]
	return d, mix(h.s.nodes[n].hash ^ uint64(d)*0x9e3779b97f4a7c15)
}

// before reports whether node a comes before node b.
func (h *deficitHeap) before(a, b int32) bool {
	da, ta := h.key(a)
	db, tb := h.key(b)
	if da != db {
		return da > db
	}
	if ta != tb {
		return ta < tb
	}
	return a < b
}

func (h *deficitHeap) Len() int           { return len(h.nodes) }
func (h *deficitHeap) Less(i, j int) bool { return h.before(h.nodes[i], h.nodes[j]) }
func (h *deficitHeap) Swap(i, j int)      { h.nodes[i], h.nodes[j] = h.nodes[j], h.nodes[i] }
func (h *deficitHeap) Push(x any)         { h.nodes = append(h.nodes, x.(int32)) }
func (h *deficitHeap) Pop() any {
	n := h.nodes[len(h.nodes)-1]
	h.nodes = h.nodes[:len(h.nodes)-1]
	return n
}

// fillEmpty gives each empty slot to the allowed node furthest below its target. It returns the
// partitions whose slot no node below target could take.
//
// Nodes below target wait in one heap per zone of several nodes, plus one heap for the nodes that are
// alone in their zone. A slot looks at the top of each heap its zone rule allows, so a zone whose
// nodes all need a little less than the others is still reached in one step, not after popping every
// node of the other zones.
func (s *placer) fillEmpty() (pending []int) {
	group := make([]int, len(s.zones)) // heap of each zone; 0 is the shared one
	heaps := []*deficitHeap{{s: s}}
	for z, zone := range s.zones {
		if len(zone.nodes) > 1 {
			group[z] = len(heaps)
			heaps = append(heaps, &deficitHeap{s: s})
		}
	}
	for n := range s.nodes {
		if s.load[n] < s.quota[n] {
			h := heaps[group[s.zoneOf[n]]]
			h.nodes = append(h.nodes, int32(n))
		}
	}
	for _, h := range heaps {
		heap.Init(h)
	}
	var skipped []int32
	for _, p32 := range s.short {
		p := int(p32)
		for k := p * s.r; k < (p+1)*s.r; k++ {
			if s.slots[k] >= 0 {
				continue
			}
			// The best allowed node at the top of each heap; disallowed tops are set aside.
			best, bestHeap := int32(-1), -1
			for g, h := range heaps {
				for h.Len() > 0 {
					n := h.nodes[0]
					if s.allowed(p, -1, n) {
						if best < 0 || h.before(n, best) {
							best, bestHeap = n, g
						}
						break
					}
					skipped = append(skipped, heap.Pop(h).(int32))
					if g > 0 && s.zoneFull(p, n) {
						break // the whole zone is full for p
					}
				}
			}
			if best >= 0 {
				// best is still the top of its heap: the nodes set aside go back only after.
				heap.Pop(heaps[bestHeap])
				if p == s.trace {
					s.note(p, "%s fills a free slot: it had %d replicas, target %d", s.id(best), s.load[best], s.quota[best])
				}
				s.fill(p, best)
				if s.load[best] < s.quota[best] {
					skipped = append(skipped, best)
				}
			} else {
				pending = append(pending, p)
			}
			for _, n := range skipped {
				heap.Push(heaps[group[s.zoneOf[n]]], n)
			}
			skipped = skipped[:0]
		}
	}
	return pending
}
