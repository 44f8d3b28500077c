// Package crash lets the test kit (pkg/clustertest) and the scale harness (test/scale) stop a
// node as a killed process would: every goroutine ends, nothing is said to etcd, and the node's
// lease is left to expire (they then revoke it, so that the cluster notices at once).
// pkg/clusterkit registers the function when it is loaded; nothing else calls it.
package crash

import "sync/atomic"

var stop atomic.Pointer[func(node any) bool]

// Register sets the function Stop calls; pkg/clusterkit calls it from init.
func Register(f func(node any) bool) { stop.Store(&f) }

// Stop stops node without a word to etcd. It reports false when node is not a node of a
// registered kind.
func Stop(node any) bool {
	f := stop.Load()
	return f != nil && (*f)(node)
}
