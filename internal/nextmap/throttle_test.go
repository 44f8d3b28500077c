package nextmap

import (
	"fmt"
	"testing"
	"time"

	"github.com/clusterkit-go/clusterkit/internal/state"
)

// inflight counts the copies m has in flight into each node and out of each primary.
func inflight(m *state.Map) (into, outOf map[string]int, total int) {
	into, outOf = map[string]int{}, map[string]int{}
	for i := range m.Partitions {
		e := &m.Partitions[i]
		for _, pd := range e.Pending {
			into[pd.Node]++
			outOf[e.Holders[0]]++
			total++
		}
	}
	return into, outOf, total
}

// throttledInput is the input of a cluster of ids at 64 partitions, R=2, with the bounds given.
func throttledInput(cur *state.Map, perNode, total int, ids ...string) Input {
	in := Input{Current: cur, Nodes: nodes(ids...), Leader: ids[0], PartitionCount: 64, ReplicationFactor: 2,
		HandoffTimeout: time.Minute, Now: t0.Add(time.Second), MaxHandoffsPerNode: perNode, MaxHandoffs: total}
	if cur != nil {
		in.Now = t0.Add(time.Duration(cur.Epoch) * time.Second)
	}
	return in
}

// A join under MaxHandoffsPerNode: every map asks for at most that many copies into each node
// and out of each primary, the others wait queued with the partition's target kept, and acking
// what is in flight admits more until the map reaches the placement an unbounded join reaches.
func TestThrottledJoin(t *testing.T) {
	for _, tt := range []struct{ perNode, total int }{{2, 0}, {0, 3}, {3, 4}} {
		t.Run(fmt.Sprintf("per node %d, total %d", tt.perNode, tt.total), func(t *testing.T) {
			r, err := Next(throttledInput(nil, 0, 0, "a", "b"))
			if err != nil {
				t.Fatal(err)
			}
			free, err := Next(throttledInput(r.Map, 0, 0, "a", "b", "c"))
			if err != nil {
				t.Fatal(err)
			}
			_, _, wanted := inflight(free.Map)
			cur, maps, queuedSeen := r.Map, 0, false
			for {
				in := throttledInput(cur, tt.perNode, tt.total, "a", "b", "c")
				in.Acks = map[Ack]uint64{}
				for i, e := range cur.Partitions {
					for _, pd := range e.Pending {
						in.Acks[Ack{i, pd.Node}] = pd.Since
					}
				}
				res, err := Next(in)
				if err != nil {
					t.Fatal(err)
				}
				m := res.Map
				if m.SamePlacement(cur) {
					break
				}
				maps++
				into, outOf, total := inflight(m)
				for n, k := range into {
					if tt.perNode > 0 && (k > tt.perNode || outOf[n] > tt.perNode) {
						t.Fatalf("epoch %d: %d copies into %s, %d out of it, bound %d", m.Epoch, k, n, outOf[n], tt.perNode)
					}
				}
				if tt.total > 0 && total > tt.total {
					t.Fatalf("epoch %d: %d copies in flight, bound %d", m.Epoch, total, tt.total)
				}
				if q := Queued(m)["c"]; q > 0 {
					queuedSeen = true
					if total == 0 {
						t.Fatalf("epoch %d: %d copies queued and none in flight", m.Epoch, q)
					}
				}
				cur = m
				if maps > 200 {
					t.Fatal("no settled map after 200 maps")
				}
			}
			if !queuedSeen || Pending(cur) != 0 || len(Queued(cur)) != 0 {
				t.Fatalf("queued seen %v, %d pending and %v queued at the end", queuedSeen, Pending(cur), Queued(cur))
			}
			for i := range cur.Partitions {
				if got, want := cur.Partitions[i].Holders, free.Map.Partitions[i].Target; len(want) > 0 && !sameSet(got, want) {
					t.Fatalf("partition %d ends on %v, the unbounded join's target is %v", i, got, want)
				}
			}
			t.Logf("%d copies: %d maps under the bounds", wanted, maps)
		})
	}
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for _, x := range a {
		found := false
		for _, y := range b {
			found = found || x == y
		}
		if !found {
			return false
		}
	}
	return true
}

// Copies that restore a partition's replication are admitted before those that only balance:
// after a crash and two joins at once, with room for one copy, the copy asked for is one of a
// partition the crash left with one holder, though a balancing copy comes first in partition
// order.
func TestThrottleRepairsFirst(t *testing.T) {
	r, err := Next(throttledInput(nil, 0, 0, "a", "b", "c"))
	if err != nil {
		t.Fatal(err)
	}
	// a crashes while d and e join: the partitions a held are under-replicated.
	free, err := Next(throttledInput(r.Map, 0, 0, "b", "c", "d", "e"))
	if err != nil {
		t.Fatal(err)
	}
	firstRepair, firstBalance := -1, -1
	for i, e := range free.Map.Partitions {
		switch {
		case len(e.Pending) == 0:
		case len(e.Holders) < 2 && firstRepair < 0:
			firstRepair = i
		case len(e.Holders) >= 2 && firstBalance < 0:
			firstBalance = i
		}
	}
	if firstRepair < 0 || firstBalance < 0 || firstBalance > firstRepair {
		t.Fatalf("the scenario needs a balancing copy before the first repair: balance at %d, repair at %d", firstBalance, firstRepair)
	}
	res, err := Next(throttledInput(r.Map, 0, 1, "b", "c", "d", "e"))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, total := inflight(res.Map); total != 1 {
		t.Fatalf("%d copies in flight, bound 1", total)
	}
	for i, e := range res.Map.Partitions {
		if len(e.Pending) > 0 && len(e.Holders) >= 2 {
			t.Fatalf("partition %d (holders %v) copies before the partitions a left with one holder", i, e.Holders)
		}
	}
}
