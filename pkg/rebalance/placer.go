package rebalance

import (
	"cmp"
	"container/heap"
	"fmt"
	"math"
	"math/big"
	"slices"
)

// placer holds the working state of one Compute call. Nodes are numbered by ID order, so nothing below
// depends on the order the caller listed them in.
type placer struct {
	parts int // P
	r     int // holders per partition: min(R, live nodes)
	prev  Map // nil when there is no usable previous placement

	nodes   []pnode
	index   *idIndex
	zones   []pzone
	loZones []int32 // zones that every partition must use at least lo times
	zoneOf  []int32 // zone of each node
	zoneHi  []int32 // hi of each zone, a compact copy for the hot loops
	zoneCap []int32 // hi of each zone whose nodes cannot all hold one partition, else MaxInt32

	slots []int32 // slots[p*r+k] is a holder of p, -1 if empty
	old   []bool  // old[p*r+k]: that holder already held p in prev
	prim  []int32 // primary of p, -1 while undecided
	dirty []bool  // p's row differs from prev's (holders, their order, or primary)
	short []int32 // partitions with a free slot after keepPrevious, in order
	lost  []bool  // p's previous primary is gone: its role goes to a surviving holder
	left  []bool  // a live node listed in prev[p] no longer holds p: it could take p back for free

	prevNodes [][]int32 // previousHolders of each partition, nil until asked for

	load, quota    []int  // replicas per node, and the target
	rfloor         []int  // the integer part of each node's fair replica share
	rfrac          []bool // whether that share has a fractional part
	zquota, zfloor []int  // each zone's replica target and the integer part of its share
	zfrac          []bool // whether the zone's share has a fractional part
	pcount, pquota []int  // primaries per node, and the target
	pfloor         []int  // the integer part of each node's fair primary share
	pfrac          []bool // whether that share has a fractional part (pquota may be pfloor+1)
	pfast          bool   // no replica target caps a primary share
	weight         int64  // total weight of the live nodes

	holdings  [][]int32 // partitions each tracked node holds, possibly some it handed on since
	tracked   []bool    // holdings[n] is built and added to
	prims     [][]int32 // partitions each node is primary of; may hold stale entries
	pdist     []int     // primaryDistances, nil when stale
	proot     []int32   // the source each node's distance was measured from
	claimed   []int     // excess primaries spoken for by roles taken further along a chain
	pdistRuns int       // how many times primaryDistances ran in this call
	cursor    []int     // where shedOne's next scan of each node's holdings starts, -1: not yet
	bestSeen  []int     // the best shedScore a full scan of each node's holdings found
	underFrom int       // receivers before this index in shedExcess's list are at their target
	over      []int32   // the nodes shedExcess found above their replica target

	stamp  int32 // search marks
	mark   []int32
	parent []hop

	trace int      // partition whose decisions are recorded in notes, -1 for none
	notes []string // what Explain reports
}

type pnode struct {
	id     string
	weight int64
	hash   uint64
}

type pzone struct {
	name   string // "" for the zone of a node without a zone
	hash   uint64
	weight int64
	nodes  []int32
	lo, hi int // every partition has between lo and hi holders in this zone
}

// hop is one step of an augmenting path: the node reached took (or took the primary role of)
// partition part from node from (-1: an empty slot).
type hop struct {
	from int32
	part int32
}

func newPlacer(prev Map, nodes []Node, cfg Config) (*placer, error) {
	sorted, err := validate(nodes, cfg)
	if err != nil {
		return nil, err
	}

	s := &placer{
		parts: cfg.Partitions,
		r:     min(cfg.ReplicationFactor, len(nodes)),
		index: newIDIndex(len(nodes)),
		trace: -1,
	}
	if len(prev) == cfg.Partitions {
		s.prev = prev
	}
	zoneIndex := make(map[string]int32)
	for i, n := range sorted {
		w := int64(n.Weight)
		if w == 0 {
			w = 1
		}
		pn := pnode{id: n.ID, weight: w, hash: hashString(n.ID)}
		z, ok := zoneIndex[n.Zone]
		if !ok || n.Zone == "" {
			z = int32(len(s.zones))
			s.zones = append(s.zones, pzone{name: n.Zone, hash: hashString(n.Zone + "\x00" + n.ID)})
			if n.Zone != "" {
				zoneIndex[n.Zone] = z
				s.zones[z].hash = hashString(n.Zone)
			}
		}
		s.zoneOf = append(s.zoneOf, z)
		s.zones[z].weight += w
		s.zones[z].nodes = append(s.zones[z].nodes, int32(i))
		s.nodes = append(s.nodes, pn)
		s.index.put(n.ID, int32(i))
	}
	// The spread rule: c is the smallest per-zone count that fits r holders. Every partition then
	// has min(n_z, c) or min(n_z, c-1) holders in zone z: distinct zones when there are at least r
	// zones, the most even split the zone sizes allow otherwise.
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
	n := len(s.nodes)
	s.load, s.quota = make([]int, n), make([]int, n)
	s.pcount, s.pquota = make([]int, n), make([]int, n)
	s.pfloor, s.pfrac = make([]int, n), make([]bool, n)
	s.mark, s.parent = make([]int32, n), make([]hop, n)
	return s, nil
}

// hashString is a stable pseudo-random rank for tie-breaks.
func hashString(s string) uint64 { return mix(idHash(s)) }

// mix is the splitmix64 finaliser.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// note records a decision about partition p for Explain. Callers check p == s.trace first, so that
// the untraced path does not box the arguments.
func (s *placer) note(p int, format string, args ...any) {
	s.notes = append(s.notes, fmt.Sprintf(format, args...))
}

func (s *placer) id(n int32) string { return s.nodes[n].id }

func (s *placer) run() {
	s.keepPrevious()
	s.replicaQuotas()
	s.primaryQuotas()
	pendingSlots := s.fillEmpty()
	pendingNodes := s.shedExcess()
	s.repair(pendingSlots, pendingNodes)
	s.assignPrimaries()
}

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
			if !s.shedOne(i, under) && !s.shedInstead(i, under) {
				pending = append(pending, i)
				break
			}
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

// touched reports whether a slot of p has changed holder (or is still empty) in this call.
func (s *placer) touched(p int) bool {
	for k := p * s.r; k < (p+1)*s.r; k++ {
		if !s.old[k] {
			return true
		}
	}
	return false
}

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

// wasHolder reports whether node n is listed in prev as a holder of p.
func (s *placer) wasHolder(p int, n int32) bool {
	return s.prev != nil && slices.Contains(s.prev[p], s.nodes[n].id)
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

// result lists each partition's holders, primary first. A partition whose row did not change keeps
// prev's row itself, so a small change allocates little.
func (s *placer) result() Map {
	out := make(Map, s.parts)
	if s.prev != nil {
		copy(out, s.prev) // one bulk copy; the rows that changed are overwritten below
	}
	changed := 0
	for _, d := range s.dirty {
		if d {
			changed++
		}
	}
	buf := make([]string, changed*s.r)
	for p := range s.parts {
		if !s.dirty[p] {
			continue
		}
		row := buf[:0:s.r]
		buf = buf[s.r:]
		row = append(row, s.id(s.prim[p]))
		for _, h := range s.slots[p*s.r : (p+1)*s.r] {
			if h >= 0 && h != s.prim[p] {
				row = append(row, s.id(h))
			}
		}
		out[p] = row
	}
	return out
}
