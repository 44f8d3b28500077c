package client

import (
	"os/exec"
	"strings"
	"testing"
)

// A client binary carries no etcd server: the package does not depend on pkg/clusterkit.
func TestNoServerDependency(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, dep := range strings.Fields(string(out)) {
		if strings.HasPrefix(dep, "go.etcd.io/etcd/server/") || strings.HasSuffix(dep, "/pkg/clusterkit") || strings.HasSuffix(dep, "/pkg/embed") {
			t.Errorf("pkg/client depends on %s", dep)
		}
	}
}
