// Package nextmap decides the partition map that follows the current one: a pure function of
// the current map, the node records, the handoff acknowledgements, the cluster's settings and
// the time. It does no I/O, keeps no clock and logs nothing: the leader reads etcd, calls Next,
// then writes the map it returns and reports the facts it lists.
//
// The placement (pkg/rebalance) says where each partition should end up; the map keeps routing
// to the current holders until every newcomer has acknowledged its copy (a handoff), promotes a
// surviving holder at once when the primary is gone, and keeps a crashed node's places during
// the grace period.
package nextmap

import (
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/clusterkit-go/clusterkit/internal/state"
	"github.com/clusterkit-go/clusterkit/pkg/rebalance"
	"github.com/clusterkit-go/clusterkit/pkg/wire"
)

// Ack names one handoff acknowledgement: Node copied Partition in.
type Ack struct {
	Partition int
	Node      string
}

// Input is everything the next map depends on.
type Input struct {
	// Current is the published map; nil when there is none or it is unreadable (the next map
	// is then placed from scratch).
	Current *state.Map
	// Nodes are the node records in etcd, leaving and draining ones included.
	Nodes map[string]state.Node
	// Departed are nodes seen leaving on purpose since Current was published: their absence
	// is a leave, not a crash.
	Departed map[string]bool
	// Acks maps each acknowledgement to the epoch it names (the Since of its request).
	Acks map[Ack]uint64
	// Leader is the node computing the map; with Leaving it is left out (it is stopping).
	Leader  string
	Leaving bool

	PartitionCount    int
	ReplicationFactor int
	// HandoffTimeout is how long a copy may take before it is asked again.
	HandoffTimeout time.Duration
	// CrashGracePeriod is how long a crashed node keeps its places in the targets.
	CrashGracePeriod time.Duration
	// MaxHandoffsPerNode bounds the copies in flight into each node and out of each node (a
	// copy counts against the node copying in and the partition's primary, which it copies
	// from); MaxHandoffs bounds them in the whole cluster. 0: no bound. A copy that would pass a
	// bound waits, queued: the partition keeps its target, and the copy is asked for in a later
	// map, when copies in flight have finished. Queued copies are admitted partitions below
	// their replication first, then those that give a partition its new primary, then the rest,
	// each group in partition order.
	MaxHandoffsPerNode int
	MaxHandoffs        int
	// Admin holds the operators' constraints on placement (see Constraints).
	Admin Constraints
	// AdminChanges are the operators' actions that came into force or ended since Current was
	// published (AdminChanges lists them): with any, the map's cause is ReasonAdmin, about the
	// nodes they name, unless a crash, leave, drain or join comes first.
	AdminChanges []wire.AdminChange
	// Now is the time of the decision; the map's UpdatedAt and new handoffs carry it.
	Now time.Time
}

// Retry is a copy asked again because it was not acknowledged within the handoff timeout.
type Retry struct {
	Partition int
	Node      string
	// Attempt is the attempt that timed out; the new request is Attempt+1.
	Attempt int
}

// Result is the decision.
type Result struct {
	// Map is the next map, or nil when no node is live (the last map is kept). It may equal
	// Current in placement (state.Map.SamePlacement): then there is nothing to publish.
	Map *state.Map
	// Retries are the copies this map asks again.
	Retries []Retry
}

// Next computes the map that follows in.Current. It fails only when the placement cannot be
// computed from the settings.
func Next(in Input) (Result, error) {
	pi := placementInput(in)
	if len(pi.live) == 0 {
		return Result{}, nil // nobody to hold anything: keep the last map
	}
	cur, absent, live, cause := pi.cur, pi.absent, pi.live, pi.cause
	nodes := placed(live, absent, in.Admin)
	target, err := rebalance.Compute(previous(cur), nodes, pi.config)
	if err != nil {
		return Result{}, fmt.Errorf("compute placement: %w", err)
	}
	in.Admin.apply(target, previous(cur), live, nodes, in.ReplicationFactor)
	epoch := uint64(1)
	if cur != nil {
		epoch = cur.Epoch + 1
	}
	next := &state.Map{
		Epoch:      epoch,
		Leader:     in.Leader,
		UpdatedAt:  in.Now.Truncate(time.Millisecond),
		Nodes:      live,
		Partitions: make([]state.Entry, len(target)),
	}
	if len(absent) > 0 {
		next.Absent = absent
	}
	if cur == nil {
		for i, t := range target {
			next.Partitions[i] = state.Entry{Holders: t, PrimaryEpoch: epoch}
		}
		next.Cause = state.Cause{Reason: state.ReasonCreate}
		return Result{Map: next}, nil
	}
	var res Result
	var asks []ask
	for i, t := range target {
		e, completed, retried, want := nextEntry(&cur.Partitions[i], i, t, live, &in, epoch)
		next.Partitions[i] = e
		if completed {
			cause.add(state.ReasonHandoff, "")
		}
		for _, r := range retried {
			res.Retries = append(res.Retries, Retry{Partition: i, Node: r.Node, Attempt: r.Attempt - 1})
			cause.add(state.ReasonTimeout, "")
		}
		asks = append(asks, want...)
	}
	admit(next, asks, &in, min(len(live), in.ReplicationFactor))
	for _, c := range in.AdminChanges {
		cause.add(state.ReasonAdmin, c.Node)
	}
	next.Cause = cause.cause()
	res.Map = next
	return res, nil
}

// Explanation says why Next would aim a partition where it does.
type Explanation struct {
	// Explanation is rebalance.Explain's, for the placement before the operators' constraints:
	// its Holders are where the placement alone puts the partition.
	rebalance.Explanation
	// Target is where Next aims the partition, the constraints applied (the places kept for
	// absent nodes included).
	Target []string
	// Notes are the decisions the operators' constraints took about the partition, in the
	// order they were taken: drains, cordons, maintenance, pins.
	Notes []Note
}

// Explain says why Next would place partition p where it does: it runs rebalance.Explain on
// the placement inputs Next computes from in (the placement the current map aims for, the live
// nodes that are not draining or drained and the absent ones in their grace period), then
// applies the operators' constraints to the partition as Next does, noting each decision. It
// is an error when no node is live (wrapping rebalance.ErrNoNodes) or p is outside
// [0, PartitionCount) (rebalance.ErrInvalidPartition). Operators' tools call it; Next does not.
func Explain(in Input, p int) (Explanation, error) {
	pi := placementInput(in)
	nodes := placed(pi.live, pi.absent, in.Admin)
	prev := previous(pi.cur)
	ex, err := rebalance.Explain(prev, nodes, pi.config, p)
	if err != nil {
		return Explanation{}, err
	}
	out := Explanation{Explanation: ex, Target: ex.Holders}
	if prev != nil {
		a := applier{c: in.Admin, live: pi.live, nodes: nodes, replication: in.ReplicationFactor}
		tr := &trace{holders: pi.cur.Partitions[p].Holders}
		out.Target = a.partition(p, slices.Clone(ex.Holders), prev[p], tr)
		out.Notes = tr.notes
	}
	return out, nil
}

// placementIn is what Next derives from its input before it places anything.
type placementIn struct {
	// live are the node records that may hold partitions (leaving nodes are not).
	live map[string]state.Node
	// absent are the crashed nodes whose places are kept (grace period).
	absent map[string]state.Absent
	// cur is in.Current when it fits the partition count, else nil (placed from scratch).
	cur *state.Map
	// cause holds the membership changes from cur: joins, leaves, crashes, drains.
	cause  causeBuilder
	config rebalance.Config
}

// placementInput sorts in's nodes into live and absent ones and notes the membership changes,
// for Next and Explain alike.
func placementInput(in Input) placementIn {
	pi := placementIn{
		live:   make(map[string]state.Node, len(in.Nodes)),
		absent: map[string]state.Absent{},
		cur:    in.Current,
		config: rebalance.Config{Partitions: in.PartitionCount, ReplicationFactor: in.ReplicationFactor},
	}
	for id, n := range in.Nodes {
		if n.State == state.NodeLeaving || in.Leaving && id == in.Leader {
			continue
		}
		pi.live[id] = n
	}
	if pi.cur != nil && len(pi.cur.Partitions) != in.PartitionCount {
		pi.cur = nil // unreadable map: place from scratch
	}
	cur, live := pi.cur, pi.live
	if cur == nil || len(live) == 0 {
		return pi
	}
	for id, a := range cur.Absent {
		if _, ok := live[id]; !ok && in.Now.Sub(a.Since) < in.CrashGracePeriod {
			pi.absent[id] = a
		}
	}
	for id, n := range cur.Nodes {
		if _, ok := live[id]; ok {
			continue
		}
		if in.Departed[id] || in.Leaving && id == in.Leader {
			pi.cause.add(state.ReasonLeave, id)
			continue
		}
		pi.cause.add(state.ReasonCrash, id)
		if in.CrashGracePeriod > 0 {
			pi.absent[id] = state.Absent{Since: in.Now, Zone: n.Zone, Weight: n.Weight}
		}
	}
	for id, n := range live {
		old, known := cur.Nodes[id]
		switch {
		case !known:
			pi.cause.add(state.ReasonJoin, id)
		case n.State == state.NodeDraining && old.State != state.NodeDraining:
			pi.cause.add(state.ReasonDrain, id)
		}
	}
	return pi
}

// placed lists the nodes the placement may use: live nodes that are not draining or drained,
// with the weights operators set, and absent nodes (which keep their places during
// the grace period). When no live node may be used, they keep what they have.
func placed(live map[string]state.Node, absent map[string]state.Absent, c Constraints) []rebalance.Node {
	var out []rebalance.Node
	node := func(id string, n state.Node) rebalance.Node {
		return rebalance.Node{ID: id, Zone: n.Zone, Weight: c.Weight(id, n.Weight)}
	}
	for _, id := range slices.Sorted(maps.Keys(live)) {
		if n := live[id]; c.State(id, n) != StateDraining {
			out = append(out, node(id, n))
		}
	}
	if len(out) == 0 {
		for _, id := range slices.Sorted(maps.Keys(live)) {
			out = append(out, node(id, live[id]))
		}
		return out
	}
	for _, id := range slices.Sorted(maps.Keys(absent)) {
		a := absent[id]
		out = append(out, rebalance.Node{ID: id, Zone: a.Zone, Weight: a.Weight})
	}
	return out
}

// previous is the placement each partition of cur is meant to have, nil without a map.
func previous(cur *state.Map) rebalance.Map {
	if cur == nil {
		return nil
	}
	prev := make(rebalance.Map, len(cur.Partitions))
	for i := range cur.Partitions {
		prev[i] = cur.Partitions[i].Placement()
	}
	return prev
}

// nextEntry moves partition p a step towards its target t. It returns the new entry, whether
// a copy completed, the pending records it renewed after a timeout, and the new copies the
// entry needs, which admit adds to it.
func nextEntry(old *state.Entry, p int, t []string, live map[string]state.Node, in *Input, epoch uint64) (e state.Entry, completed bool, retried []state.Pending, asks []ask) {
	isLive := func(id string) bool { _, ok := live[id]; return ok }
	var serving []string
	for _, h := range old.Holders {
		if isLive(h) {
			serving = append(serving, h)
		}
	}
	for _, pd := range old.Pending {
		if isLive(pd.Node) && slices.Contains(t, pd.Node) && in.Acks[Ack{p, pd.Node}] == pd.Since && !slices.Contains(serving, pd.Node) {
			serving = append(serving, pd.Node)
			completed = true
		}
	}
	var want []string // the target's live nodes
	for _, n := range t {
		if isLive(n) {
			want = append(want, n)
		}
	}
	var missing []string
	for _, n := range want {
		if !slices.Contains(serving, n) {
			missing = append(missing, n)
		}
	}
	if len(serving) > 0 && len(missing) > 0 {
		// A node without a copy hook has nothing to copy: it serves at once, as it would one
		// map later, once its acknowledgement (written as soon as it was asked) was read.
		kept := missing[:0]
		for _, n := range missing {
			if live[n].NoHandoff {
				serving = append(serving, n)
				continue
			}
			kept = append(kept, n)
		}
		missing = kept
	}
	switch {
	case len(serving) == 0 || len(missing) == 0:
		// Either every holder is gone (nothing to copy from: the target serves at once), or
		// every newcomer has its copy: switch to the target and release the others.
		e.Holders = want
		if len(e.Holders) == 0 {
			e.Holders = serving
		}
	default:
		e.Holders = orderServing(serving, t, old.Holders)
		e.Target = t
		for _, n := range missing {
			pd, ok := old.PendingFor(n)
			switch {
			case !ok:
				asks = append(asks, ask{partition: p, node: n, serving: len(serving), primary: n == t[0]})
				continue
			case in.Now.Sub(pd.Started) >= in.HandoffTimeout:
				pd = state.Pending{Node: n, Since: epoch, Started: in.Now.Truncate(time.Millisecond), Attempt: pd.Attempt + 1}
				retried = append(retried, pd)
			}
			e.Pending = append(e.Pending, pd)
		}
	}
	if len(old.Holders) > 0 && e.Holders[0] == old.Holders[0] {
		e.PrimaryEpoch = old.PrimaryEpoch
	} else {
		e.PrimaryEpoch = epoch
	}
	return e, completed, retried, asks
}

// orderServing puts the primary first while a partition moves: the target's primary if it
// already serves, else the current primary if it still serves, else the first serving node of
// the target (a survivor promoted without copying). The rest follow the target's order, then
// the holders that will be released.
func orderServing(serving, t, oldHolders []string) []string {
	primary := ""
	switch {
	case slices.Contains(serving, t[0]):
		primary = t[0]
	case len(oldHolders) > 0 && slices.Contains(serving, oldHolders[0]):
		primary = oldHolders[0]
	default:
		for _, n := range t {
			if slices.Contains(serving, n) {
				primary = n
				break
			}
		}
		if primary == "" {
			primary = serving[0]
		}
	}
	out := []string{primary}
	for _, n := range t {
		if n != primary && slices.Contains(serving, n) {
			out = append(out, n)
		}
	}
	for _, n := range serving {
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out
}

// causeBuilder picks the reason of a map by precedence and collects the nodes it is about.
type causeBuilder struct {
	reasons map[string][]string
}

func (c *causeBuilder) add(reason, node string) {
	if c.reasons == nil {
		c.reasons = map[string][]string{}
	}
	list := c.reasons[reason]
	if node != "" {
		list = append(list, node)
	}
	c.reasons[reason] = list
}

func (c *causeBuilder) cause() state.Cause {
	for _, r := range []string{state.ReasonCrash, state.ReasonLeave, state.ReasonDrain, state.ReasonJoin, state.ReasonAdmin,
		state.ReasonHandoff, state.ReasonTimeout} {
		if nodes, ok := c.reasons[r]; ok {
			slices.Sort(nodes)
			return state.Cause{Reason: r, Nodes: slices.Compact(nodes)}
		}
	}
	return state.Cause{Reason: state.ReasonRebalance}
}

// Wake is how long after now the map m needs another decision without any other change: the
// next handoff deadline or grace-period end, at least a millisecond; an hour when nothing waits.
func Wake(m *state.Map, handoffTimeout, crashGracePeriod time.Duration, now time.Time) time.Duration {
	wake := time.Hour
	if m == nil {
		return wake
	}
	for _, a := range m.Absent {
		wake = min(wake, a.Since.Add(crashGracePeriod).Sub(now))
	}
	for i := range m.Partitions {
		for _, p := range m.Partitions[i].Pending {
			wake = min(wake, p.Started.Add(handoffTimeout).Sub(now))
		}
	}
	return max(wake, time.Millisecond)
}

// Pending counts the copies m waits for.
func Pending(m *state.Map) int {
	n := 0
	for i := range m.Partitions {
		n += len(m.Partitions[i].Pending)
	}
	return n
}

// AllAcknowledged reports whether every copy m waits for is acknowledged: the next map then
// completes every handoff of m at once.
func AllAcknowledged(m *state.Map, acks map[Ack]uint64) bool {
	if m == nil {
		return false
	}
	for i := range m.Partitions {
		for _, pd := range m.Partitions[i].Pending {
			if since, ok := acks[Ack{i, pd.Node}]; !ok || since != pd.Since {
				return false
			}
		}
	}
	return true
}

// ask is a copy a partition needs that is not in flight yet.
type ask struct {
	partition int
	node      string
	// serving is how many holders serve the partition; primary is true when the copy makes
	// node the partition's primary.
	serving int
	primary bool
}

// admit adds the copies of asks to next's entries within in's bounds, the copies already in
// flight counted first: those of partitions below want holders, then those that give a
// partition its primary, then the rest, each in partition order. The others stay queued.
func admit(next *state.Map, asks []ask, in *Input, want int) {
	if len(asks) == 0 {
		return
	}
	limited := in.MaxHandoffsPerNode > 0 || in.MaxHandoffs > 0
	inflight, into, outOf := 0, map[string]int{}, map[string]int{}
	if limited {
		for i := range next.Partitions {
			e := &next.Partitions[i]
			for _, pd := range e.Pending {
				inflight++
				into[pd.Node]++
				outOf[e.Holders[0]]++
			}
		}
		class := func(a ask) int {
			switch {
			case a.serving < want:
				return 0
			case a.primary:
				return 1
			}
			return 2
		}
		slices.SortStableFunc(asks, func(a, b ask) int { return class(a) - class(b) })
	}
	started := in.Now.Truncate(time.Millisecond)
	for _, a := range asks {
		e := &next.Partitions[a.partition]
		from := e.Holders[0]
		if limited {
			if in.MaxHandoffs > 0 && inflight >= in.MaxHandoffs ||
				in.MaxHandoffsPerNode > 0 && (into[a.node] >= in.MaxHandoffsPerNode || outOf[from] >= in.MaxHandoffsPerNode) {
				continue
			}
			inflight++
			into[a.node]++
			outOf[from]++
		}
		e.Pending = append(e.Pending, state.Pending{Node: a.node, Since: next.Epoch, Started: started, Attempt: 1})
		if len(e.Pending) > 1 {
			// In the target's order, as nextEntry keeps them: the same copies in flight make the
			// same entry in the maps after this one.
			slices.SortStableFunc(e.Pending, func(x, y state.Pending) int {
				return slices.Index(e.Target, x.Node) - slices.Index(e.Target, y.Node)
			})
		}
	}
}

// Queued counts, for each node, the copies into it that m's partitions wait for but have not
// asked for yet (held back by MaxHandoffsPerNode or MaxHandoffs): nodes in a partition's target
// that neither serve it nor copy it in.
func Queued(m *state.Map) map[string]int {
	out := map[string]int{}
	for i := range m.Partitions {
		e := &m.Partitions[i]
		for _, n := range e.Target {
			if !slices.Contains(e.Holders, n) && !slices.ContainsFunc(e.Pending, func(p state.Pending) bool { return p.Node == n }) {
				out[n]++
			}
		}
	}
	return out
}
