package clustertest_test

import (
	"context"
	"fmt"
	"maps"
	"sync"
	"testing"
	"time"

	"github.com/clusterkit-go/clusterkit/pkg/clusterkit"
	"github.com/clusterkit-go/clusterkit/pkg/clustertest"
)

// memStore is an application's storage on one node: partition -> key -> value. Its migration
// hook copies a partition in from every node that held it, as the README asks.
type memStore struct {
	id  string
	app *app
	mu  sync.Mutex
	d   map[string]map[string]string
}

// app is the application: one store per node, reachable by node ID (in a real deployment, over
// the network at the address the node publishes in its Metadata).
type app struct {
	mu     sync.Mutex
	stores map[string]*memStore
}

func (a *app) store(id string) *memStore {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.stores[id]
}

// attach creates the node's store and registers its migration hook before the node starts.
func (a *app) attach(ck *clusterkit.ClusterKit) {
	s := &memStore{id: ck.GetMyNodeID(), app: a, d: map[string]map[string]string{}}
	a.mu.Lock()
	a.stores[s.id] = s
	a.mu.Unlock()
	ck.OnPartitionChange(func(partitionID string, copyFrom []*clusterkit.Node, copyTo *clusterkit.Node) {
		if copyTo.ID != s.id {
			return
		}
		for _, from := range copyFrom {
			if src := a.store(from.ID); src != nil {
				s.merge(partitionID, src.snapshot(partitionID))
			}
		}
	})
}

func (s *memStore) snapshot(p string) map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.d[p])
}

func (s *memStore) merge(p string, kv map[string]string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.d[p] == nil {
		s.d[p] = map[string]string{}
	}
	maps.Copy(s.d[p], kv)
}

// put writes key to every holder of its partition, as a client of the application would.
func (a *app) put(ck *clusterkit.ClusterKit, key, value string) error {
	p, err := ck.GetPartition(key)
	if err != nil {
		return err
	}
	for _, n := range ck.GetNodes(p) {
		a.store(n.ID).merge(p.ID, map[string]string{key: value})
	}
	return nil
}

// check reports the first key that a holder of its partition lacks.
func (a *app) check(ck *clusterkit.ClusterKit, want map[string]string) error {
	for key, v := range want {
		p, err := ck.GetPartition(key)
		if err != nil {
			return err
		}
		for _, n := range ck.GetNodes(p) {
			if got := a.store(n.ID).snapshot(p.ID)[key]; got != v {
				return fmt.Errorf("%s on %s (holder of %s) is %q, want %q", key, n.ID, p.ID, got, v)
			}
		}
	}
	return nil
}

// An application tests its migration hook through a join, a crash and a drain: after each, once
// the cluster has converged, every holder of every partition has every key written before.
func TestApplicationMigrationHook(t *testing.T) {
	c := clustertest.New(t, clusterkit.Options{PartitionCount: 16, ReplicationFactor: 2})
	a := &app{stores: map[string]*memStore{}}
	for _, id := range []string{"node-1", "node-2"} {
		c.Add(id, a.attach)
	}
	c.WaitConverged(20 * time.Second)
	want := map[string]string{}
	for i := range 200 {
		key, value := fmt.Sprintf("user:%d", i), fmt.Sprintf("v%d", i)
		if err := a.put(c.Node("node-1"), key, value); err != nil {
			t.Fatal(err)
		}
		want[key] = value
	}

	steps := []struct {
		name string
		do   func()
	}{
		{"join", func() { c.Add("node-3", a.attach) }},
		{"crash", func() { c.Crash("node-1") }},
		{"join again", func() { c.Add("node-4", a.attach) }},
		{"drain", func() {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			c.Drain(ctx, "node-2")
		}},
	}
	for _, step := range steps {
		step.do()
		c.WaitConverged(20 * time.Second)
		for id, ck := range c.Nodes() {
			if err := a.check(ck, want); err != nil {
				t.Fatalf("after the %s, seen from %s: %v", step.name, id, err)
			}
		}
	}
	if bad := c.Violations(); len(bad) > 0 {
		t.Fatalf("invariants broken: %q", bad)
	}
}
