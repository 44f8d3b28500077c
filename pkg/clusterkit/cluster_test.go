package clusterkit_test

import (
	"testing"

	"github.com/clusterkit-go/clusterkit/pkg/clusterkit"
	"github.com/clusterkit-go/clusterkit/pkg/clustertest"
)

// The cluster tests of the package run on pkg/clustertest, from outside the package (the kit
// imports it). export_test.go gives them the few internals they check.

// leaderOf returns the live node that leads, or nil.
func leaderOf(c *clustertest.Cluster) *clusterkit.ClusterKit {
	for _, ck := range c.Nodes() {
		if ck.IsLeader() {
			return ck
		}
	}
	return nil
}

// anyNode returns one of the live nodes, nil when there is none.
func anyNode(c *clustertest.Cluster) *clusterkit.ClusterKit {
	for _, ck := range c.Nodes() {
		return ck
	}
	return nil
}

// pickVictim returns node-2 or node-3, whichever does not lead, and node-1 to observe the
// cluster from.
func pickVictim(c *clustertest.Cluster) (string, *clusterkit.ClusterKit) {
	victim := "node-2"
	if c.Node(victim).IsLeader() {
		victim = "node-3"
	}
	return victim, c.Node("node-1")
}

// settleHooks waits until every live node has run the hooks of the map it holds.
func settleHooks(t *testing.T, c *clustertest.Cluster) {
	t.Helper()
	for _, ck := range c.Nodes() {
		clusterkit.SettleHooks(t, ck)
	}
}
