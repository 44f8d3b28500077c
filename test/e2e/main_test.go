package e2e

import (
	"os"
	"testing"

	"github.com/clusterkit-go/clusterkit/internal/etcdtest"
)

func TestMain(m *testing.M) {
	code := etcdtest.RunWithoutLeaks(m)
	// The etcd and deployenv binaries the tests built (if any) outlive any single test: they are
	// built once per test binary.
	for _, dir := range []string{builtEtcd.dir, builtDeployEnv.dir} {
		if dir != "" {
			os.RemoveAll(dir)
		}
	}
	os.Exit(code)
}
