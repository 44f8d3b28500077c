package clusterkit

import "github.com/clusterkit-go/clusterkit/internal/crash"

// The test kit (pkg/clustertest) crashes nodes through internal/crash.
func init() {
	crash.Register(func(node any) bool {
		ck, ok := node.(*ClusterKit)
		if ok {
			ck.shutdown(stopCrash)
		}
		return ok
	})
}
