package proctest

import (
	"testing"
	"time"
)

// Node is an example server (see examples/internal/kvnode) started by StartNode.
type Node struct {
	*Process
	// ID is the node ID, Addr its ClusterKit HTTP address, KVAddr its data API address.
	ID, Addr, KVAddr string
}

// StartNode starts an example server as node id with a 2s lease and 16 partitions, its data API
// on kvAddr (a free port when empty), joining the node at join unless join is empty (it then
// starts the cluster's embedded etcd), and waits until it is ready. Extra flags follow. The first
// three nodes to join run the embedded etcd's members: tests that kill or pause nodes start them
// in an order that says which ones those are.
func StartNode(t *testing.T, bin, id, kvAddr, join string, extra ...string) *Node {
	t.Helper()
	n := LaunchNode(t, bin, id, kvAddr, join, extra...)
	n.WaitNode(t)
	return n
}

// LaunchNode is StartNode without the wait: call WaitNode before using the node's Addr. Nodes
// launched together join concurrently.
func LaunchNode(t *testing.T, bin, id, kvAddr, join string, extra ...string) *Node {
	t.Helper()
	if kvAddr == "" {
		kvAddr = FreeAddr(t)
	}
	n := &Node{ID: id, KVAddr: kvAddr}
	args := []string{"-id", id, "-addr", "127.0.0.1:0", "-kv-addr", n.KVAddr, "-data-dir", t.TempDir(),
		"-lease-ttl", "2s", "-partitions", "16"}
	if join != "" {
		args = append(args, "-join", join)
	}
	n.Process = Start(t, id, bin, append(args, extra...)...)
	return n
}

// WaitNode waits until a launched node is ready and records its ClusterKit address.
func (n *Node) WaitNode(t *testing.T) {
	t.Helper()
	ready := n.WaitReady(t, time.Minute)
	if len(ready) != 2 || ready[0] != n.ID {
		t.Fatalf("%s printed ready %v, want its ID and address", n.ID, ready)
	}
	n.Addr = ready[1]
}
