package proctest

import (
	"slices"
	"testing"
	"time"
)

// Node is an example server (see examples/internal/kvnode) started by StartNode.
type Node struct {
	*Process
	// ID is the node ID, Addr its ClusterKit HTTP address, KVAddr its data API address.
	ID, Addr, KVAddr string
	// pickedKV is set when LaunchNode chose KVAddr: WaitNode may then choose another one.
	pickedKV bool
	// launches counts the starts WaitNode made for a port that was taken.
	launches int
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
	n := &Node{ID: id, KVAddr: kvAddr}
	if kvAddr == "" {
		n.KVAddr, n.pickedKV = FreeAddr(t), true
	}
	args := []string{"-id", id, "-addr", "127.0.0.1:0", "-kv-addr", n.KVAddr, "-data-dir", t.TempDir(),
		"-lease-ttl", "2s", "-partitions", "16"}
	if join != "" {
		args = append(args, "-join", join)
	}
	n.Process = Start(t, id, bin, append(args, extra...)...)
	return n
}

// maxLaunches bounds the starts of a node whose ports were taken.
const maxLaunches = 3

// WaitNode waits until a launched node is ready and records its ClusterKit address. A node that
// exited before its first ready line because a port was taken before it bound it (its data
// API's, or one its embedded etcd chose) is started again, with a new data directory and, when
// LaunchNode chose the data API's address, a new one: it had not joined the cluster yet.
func (n *Node) WaitNode(t *testing.T) {
	t.Helper()
	for {
		ready, err := n.AwaitReady(time.Minute)
		if err == nil {
			if len(ready) != 2 || ready[0] != n.ID {
				t.Fatalf("%s printed ready %v, want its ID and address", n.ID, ready)
			}
			n.Addr = ready[1]
			return
		}
		n.launches++
		if !n.PortTaken() || n.Addr != "" || n.launches >= maxLaunches {
			t.Fatal(err)
		}
		t.Logf("%s: a port was taken before the node bound it; starting it again", n.ID)
		if n.pickedKV {
			n.KVAddr = FreeAddr(t)
			setFlag(n.Args, "-kv-addr", n.KVAddr)
		}
		setFlag(n.Args, "-data-dir", t.TempDir())
		n.Start(t)
	}
}

// setFlag sets the value of the flag name in args, given as "-name value".
func setFlag(args []string, name, value string) {
	if i := slices.Index(args, name); i >= 0 && i+1 < len(args) {
		args[i+1] = value
	}
}
