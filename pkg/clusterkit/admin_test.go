package clusterkit_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/clusterkit-go/clusterkit/internal/etcdtest"
	"github.com/clusterkit-go/clusterkit/internal/keys"
	"github.com/clusterkit-go/clusterkit/internal/state"
	"github.com/clusterkit-go/clusterkit/pkg/clusterkit"
	"github.com/clusterkit-go/clusterkit/pkg/clustertest"
	"github.com/clusterkit-go/clusterkit/pkg/wire"
)

// Operators' actions written under admin/ steer the placement the leader publishes: a drain
// empties a node and ends with its record, maintenance holds a join back until it ends, a move
// pins a partition to a node; an invalid record is skipped.
func TestAdminActions(t *testing.T) {
	c := clustertest.New(t, clusterkit.Options{PartitionCount: 16, ReplicationFactor: 2})
	for i := 1; i <= 3; i++ {
		c.Add(fmt.Sprintf("node-%d", i), copying)
	}
	c.WaitConverged(20 * time.Second)
	s := keys.New(c.Name())
	ctx := context.Background()
	var lastAt time.Time // the time of the last record put
	put := func(kind, name string, a state.AdminAction) {
		t.Helper()
		a.Kind, a.At = kind, time.Now().UTC().Truncate(time.Millisecond)
		lastAt = a.At
		b, err := json.Marshal(a)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Etcd().Put(ctx, s.Admin(kind, name), string(b)); err != nil {
			t.Fatal(err)
		}
	}
	del := func(kind, name string) {
		t.Helper()
		if _, err := c.Etcd().Delete(ctx, s.Admin(kind, name)); err != nil {
			t.Fatal(err)
		}
	}
	held := func(node string) int {
		n := 0
		for _, e := range clusterkit.RawMap(c.Node("node-1")).Partitions {
			if slices.Contains(e.Holders, node) {
				n++
			}
		}
		return n
	}
	settled := func(what string, ok func() error) {
		t.Helper()
		etcdtest.WaitFor(t, 20*time.Second, what, func() error {
			if err := c.Converged(); err != nil {
				return err
			}
			return ok()
		})
	}

	// The map of the drain, and the map of its end, have the cause admin, and their history
	// records name the action and who wrote it.
	epoch := c.Node("node-1").Epoch()
	put(state.AdminDrain, "node-3", state.AdminAction{Node: "node-3", Reason: "disk swap", By: "ops@host-1"})
	settled("node-3 drained", func() error {
		if n := held("node-3"); n != 0 {
			return fmt.Errorf("node-3 holds %d partitions", n)
		}
		return nil
	})
	want := wire.AdminChange{Action: "drain", Kind: "drain", Node: "node-3", Reason: "disk swap", By: "ops@host-1", At: lastAt}
	if rec := firstAfter(t, c, epoch); rec.Cause.Reason != "admin" || !slices.Equal(rec.Cause.Nodes, []string{"node-3"}) ||
		rec.CopiesStarted == 0 || len(rec.Admin) != 1 || rec.Admin[0] != want {
		t.Errorf("the map of the drain: %+v; want the cause admin about node-3, copies, and the action %+v", rec, want)
	}
	epoch = c.Node("node-1").Epoch()
	del(state.AdminDrain, "node-3")
	settled("node-3 back", func() error {
		if n := held("node-3"); n == 0 {
			return fmt.Errorf("node-3 holds nothing after its drain ended")
		}
		return nil
	})
	want.Action, want.Removed = "uncordon", true
	if rec := firstAfter(t, c, epoch); rec.Cause.Reason != "admin" || len(rec.Admin) != 1 || rec.Admin[0] != want {
		t.Errorf("the map of the uncordon: %+v; want the cause admin and the drain removed, %+v", rec, want)
	}

	epoch = c.Node("node-1").Epoch()
	put(state.AdminMaintenance, "upgrade", state.AdminAction{Reason: "upgrade"})
	// An invalid record is skipped, not applied: a drain of no node.
	lastMaintenance := lastAt
	if _, err := c.Etcd().Put(ctx, s.Admin(state.AdminDrain, "x"), `{"kind":"drain"}`); err != nil {
		t.Fatal(err)
	}
	c.Add("node-4", copying)
	settled("node-4 joined during maintenance", func() error {
		if n := held("node-4"); n != 0 {
			return fmt.Errorf("node-4 holds %d partitions during maintenance", n)
		}
		return nil
	})
	// The maintenance moved nothing, so no map was published for it: the join's map, the next
	// one, lists it.
	want = wire.AdminChange{Action: "maintenance on", Kind: "maintenance", Reason: "upgrade", At: lastMaintenance}
	if rec := firstAfter(t, c, epoch); rec.Cause.Reason != "join" || len(rec.Admin) != 1 || rec.Admin[0] != want {
		t.Errorf("the map of the join during maintenance: %+v; want the cause join and the action %+v", rec, want)
	}
	del(state.AdminMaintenance, "upgrade")
	settled("maintenance over", func() error {
		if n := held("node-4"); n == 0 {
			return fmt.Errorf("node-4 holds nothing after maintenance")
		}
		return nil
	})

	part := slices.IndexFunc(clusterkit.RawMap(c.Node("node-1")).Partitions, func(e state.Entry) bool { return !slices.Contains(e.Holders, "node-2") })
	c.WaitConverged(20 * time.Second)
	epoch = c.Node("node-1").Epoch()
	put(state.AdminMove, fmt.Sprint(part), state.AdminAction{Node: "node-2", Partition: &part, By: "ops@host-1"})
	settled("partition moved to node-2", func() error {
		if h := clusterkit.RawMap(c.Node("node-1")).Partitions[part].Holders; !slices.Contains(h, "node-2") {
			return fmt.Errorf("partition-%d is on %v", part, h)
		}
		return nil
	})
	want = wire.AdminChange{Action: "move", Kind: "move", Node: "node-2", Partition: clusterkit.PartitionID(part), By: "ops@host-1", At: lastAt}
	if rec := firstAfter(t, c, epoch); rec.Cause.Reason != "admin" || !slices.Equal(rec.Cause.Nodes, []string{"node-2"}) ||
		len(rec.Admin) != 1 || rec.Admin[0] != want {
		t.Errorf("the map of the move: %+v; want the cause admin about node-2 and the action %+v", rec, want)
	}
}
