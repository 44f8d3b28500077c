package nextmap

import (
	"fmt"
	"testing"
	"time"

	"github.com/clusterkit-go/clusterkit/internal/state"
)

// leaveCost publishes, through Next and state.EncodeNext, the maps of one graceful leave in a
// settled cluster of n nodes and p partitions (R=3): the leaver drains, its copies are
// acknowledged in two batches, it leaves. It returns the bytes of those maps' writes and of the
// whole map written as one checkpoint.
func leaveCost(t testing.TB, p, n int) (written, full, maps int) {
	t.Helper()
	ns := map[string]state.Node{}
	for i := range n {
		id := fmt.Sprintf("node-%d", i+1)
		ns[id] = state.Node{ID: id, IP: fmt.Sprintf("127.0.0.1:%d", 8080+i), Weight: 1,
			Instance: fmt.Sprintf("%016x", i*7919), StartedAt: t0.Add(time.Duration(i) * time.Second)}
	}
	in := Input{Nodes: ns, Leader: "node-1", PartitionCount: p, ReplicationFactor: 3,
		HandoffTimeout: time.Minute, Now: t0}
	r, err := Next(in)
	if err != nil {
		t.Fatal(err)
	}
	cur := r.Map
	enc, err := state.EncodeNext(nil, cur, state.MaxValue)
	if err != nil {
		t.Fatal(err)
	}
	full = enc.Bytes()
	publish := func(in Input) {
		t.Helper()
		in.Current = cur
		in.Now = in.Now.Add(time.Duration(cur.Epoch) * 100 * time.Millisecond)
		r, err := Next(in)
		if err != nil {
			t.Fatal(err)
		}
		enc, err := state.EncodeNext(cur, r.Map, state.MaxValue)
		if err != nil {
			t.Fatal(err)
		}
		written += enc.Bytes()
		maps++
		cur = r.Map
	}
	leaver := fmt.Sprintf("node-%d", n)
	ns = with(ns, leaver, state.NodeDraining)
	in.Nodes = ns
	publish(in)
	// Half the copies are acknowledged, then the rest.
	for half := range 2 {
		acks := map[Ack]uint64{}
		k := 0
		for i := range cur.Partitions {
			for _, pd := range cur.Partitions[i].Pending {
				if k%2 == half || half == 1 {
					acks[Ack{i, pd.Node}] = pd.Since
				}
				k++
			}
		}
		in.Acks = acks
		publish(in)
	}
	if c := Pending(cur); c != 0 {
		t.Fatalf("%d copies still pending after every acknowledgement", c)
	}
	delete(ns, leaver)
	in.Nodes, in.Acks, in.Departed = ns, nil, map[string]bool{leaver: true}
	publish(in)
	return written, full, maps
}

// TestLeaveWriteCost holds the stored map to its promise at the scale the README states: one
// graceful leave in 100 nodes at 65536 partitions writes at most 10% of the map, counted in the
// bytes of the values written (heads, deltas, node tables) against the whole map written as a
// checkpoint with its node table.
func TestLeaveWriteCost(t *testing.T) {
	written, full, maps := leaveCost(t, 65536, 100)
	t.Logf("P=65536 N=100: a graceful leave wrote %d bytes in %d maps, %.1f%% of the %d-byte map", written, maps, 100*float64(written)/float64(full), full)
	if written*10 > full {
		t.Errorf("a graceful leave wrote %d bytes, more than 10%% of the %d-byte map", written, full)
	}
}
