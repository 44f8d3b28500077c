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

// removeBuiltEtcdAfter runs the tests, then deletes the etcd and deployenv binaries they built
// (if any), which outlive any single test because they are built once per test binary.
type removeBuiltEtcdAfter struct{ m *testing.M }

func (r removeBuiltEtcdAfter) Run() int {
	code := r.m.Run()
	for _, dir := range []string{builtEtcd.dir, builtDeployEnv.dir} {
		if dir != "" {
			os.RemoveAll(dir)
		}
	}
	return code
}
