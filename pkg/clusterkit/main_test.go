package clusterkit

import (
	"os"
	"testing"

	"github.com/clusterkit-go/clusterkit/internal/etcdtest"
)

// TestMain checks for leaked goroutines once for the whole test binary: the internal tests and
// the cluster tests of package clusterkit_test (on pkg/clustertest) share it.
func TestMain(m *testing.M) { os.Exit(etcdtest.RunWithoutLeaks(m)) }

// waitFor polls cond until it holds, failing the test after within.
var waitFor = etcdtest.WaitFor
