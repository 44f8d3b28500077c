package e2e

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(removeBuiltEtcdAfter{m},
		// etcd's client starts this process-wide worker once and never stops it.
		goleak.IgnoreTopFunction("go.opencensus.io/stats/view.(*worker).start"),
	)
}

// removeBuiltEtcdAfter runs the tests, then deletes the etcd binary they built (if any), which
// outlives any single test because it is built once per test binary.
type removeBuiltEtcdAfter struct{ m *testing.M }

func (r removeBuiltEtcdAfter) Run() int {
	code := r.m.Run()
	if builtEtcd.dir != "" {
		os.RemoveAll(builtEtcd.dir)
	}
	return code
}
