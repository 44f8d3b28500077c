package clustertest_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/clusterkit-go/clusterkit/internal/etcdtest"
	"github.com/clusterkit-go/clusterkit/pkg/clusterkit"
	"github.com/clusterkit-go/clusterkit/pkg/clustertest"
)

func TestMain(m *testing.M) { os.Exit(etcdtest.RunWithoutLeaks(m)) }

// The kit's own operations: add, crash, pause and resume, stop, each followed by convergence,
// with every published map checked.
func TestClusterOperations(t *testing.T) {
	c := clustertest.New(t, clusterkit.Options{PartitionCount: 16})
	rec := clustertest.NewRecorder()
	for _, id := range []string{"node-1", "node-2", "node-3"} {
		c.Add(id, rec.Attach)
	}
	c.WaitConverged(20 * time.Second)
	if len(rec.Calls()) == 0 || len(rec.Events()) == 0 {
		t.Fatalf("recorded %d calls and %d events", len(rec.Calls()), len(rec.Events()))
	}

	// A crash is noticed at once: the lease is revoked.
	c.Crash("node-3")
	if c.Node("node-3") != nil {
		t.Fatal("a crashed node is still listed")
	}
	c.WaitConverged(10 * time.Second)

	// A paused node loses its lease after its TTL, fences itself, and comes back on Resume.
	c.Add("node-4")
	c.WaitConverged(20 * time.Second)
	paused := c.Node("node-4")
	c.Pause("node-4")
	etcdtest.WaitFor(t, 15*time.Second, "the paused node fenced and dropped from the map", func() error {
		if !paused.IsFenced() {
			return errors.New("node-4 is not fenced")
		}
		for _, id := range []string{"node-1", "node-2"} {
			for _, n := range c.Node(id).Nodes() {
				if n.ID == "node-4" {
					return fmt.Errorf("%s still lists node-4", id)
				}
			}
		}
		return nil
	})
	c.Resume("node-4")
	c.WaitConverged(30 * time.Second)
	if paused.IsFenced() {
		t.Fatal("node-4 still fenced after it came back")
	}

	c.Stop("node-1")
	c.WaitConverged(10 * time.Second)
	if n := c.MapsChecked(); n < 5 {
		t.Fatalf("the checker saw %d maps", n)
	}
	if bad := c.Violations(); len(bad) > 0 {
		t.Fatalf("violations: %q", bad)
	}
}

func TestDrain(t *testing.T) {
	c := clustertest.New(t, clusterkit.Options{PartitionCount: 8, ReplicationFactor: 2})
	for _, id := range []string{"a", "b", "c"} {
		c.Add(id)
	}
	c.WaitConverged(20 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c.Drain(ctx, "b")
	c.WaitConverged(10 * time.Second)
	if len(c.Nodes()) != 2 {
		t.Fatalf("nodes after the drain: %v", c.Nodes())
	}
}
