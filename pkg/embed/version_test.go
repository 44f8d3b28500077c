package embed

import (
	"context"
	"net/http"
	"testing"
	"time"
)

// A started member reports a decided cluster version on its client URL's /version, which Join
// waits for; an endpoint that serves nothing there is not waited for.
func TestWaitClusterVersion(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	m, err := Start(ctx, Config{Name: "a", Dir: t.TempDir(), UnsafeNoFsync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if err := waitClusterVersion(ctx, m.Endpoints(), nil); err != nil {
		t.Fatal(err)
	}
	httpc := &http.Client{Timeout: time.Second}
	v, err := clusterVersion(ctx, httpc, m.Endpoints()[0])
	if err != nil || v == "" || v == "not_decided" {
		t.Fatalf("cluster version %q, %v after the wait", v, err)
	}
	// Nothing listens there: the wait does not block.
	if err := waitClusterVersion(ctx, []string{"http://127.0.0.1:1"}, nil); err != nil {
		t.Fatal(err)
	}
}
