package rebalance

// The driver of a Compute call: the placer's state, newPlacer, run, which takes the state through
// the phases of a placement (one file each), and result.

import "fmt"

// placer holds the working state of one Compute call. Nodes are numbered by ID order, so no phase
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
	// touchedCursor is where shedTouched's next scan of each node's holdings starts;
	// onlyTouched marks the nodes it served, whose untouched partitions are exhausted.
	touchedCursor []int
	onlyTouched   []bool
	// augments counts repair's chain searches, each a pass over much of the map (tests read it).
	augments  int
	underFrom int     // receivers before this index in shedExcess's list are at their target
	over      []int32 // the nodes shedExcess found above their replica target

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
	s.setSpreadRule()
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

// run places the partitions in phases, each in a file of its own:
//
//	keep.go       keepPrevious: keep the previous holders that are still allowed
//	quota.go      replicaQuotas, primaryQuotas: each node's replica and primary target
//	fill.go       fillEmpty: free slots to the nodes furthest below their target
//	shed.go       shedExcess: replicas from nodes above their target to nodes below it
//	repair.go     repair: what the greedy phases left, along chains of hand-overs
//	primaries.go  assignPrimaries: a primary for every partition, balanced by role swaps
//
// zones.go holds the spread rule that the phases check, and slots.go the slot table they change.
func (s *placer) run() {
	s.keepPrevious()
	s.replicaQuotas()
	s.primaryQuotas()
	pendingSlots := s.fillEmpty()
	pendingNodes := s.shedExcess()
	s.repair(pendingSlots, pendingNodes)
	s.assignPrimaries()
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
