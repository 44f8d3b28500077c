package client

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"go.uber.org/zap"

	"github.com/clusterkit-go/clusterkit/internal/topology"
	"github.com/clusterkit-go/clusterkit/internal/wiretest"
	"github.com/clusterkit-go/clusterkit/pkg/wire"
)

// A client applies only newer maps, and refuses a node of another cluster.
func TestNeverGoesBack(t *testing.T) {
	md5 := wiretest.HashConfig{Algorithm: "md5", Modulo: 8, Format: "partition-%d"}
	c := &Client{log: zap.NewNop()}
	build := func(epoch uint64) *topology.Topology {
		var d wire.Cluster
		if err := json.Unmarshal(wiretest.ClusterBody(epoch, md5, 8), &d); err != nil {
			t.Fatal(err)
		}
		top, err := topology.FromCluster(&d, fmt.Sprintf(`"c1-%d"`, epoch))
		if err != nil {
			t.Fatal(err)
		}
		return top
	}
	for _, tt := range []struct {
		epoch   uint64
		applied bool
		want    uint64
	}{{5, true, 5}, {4, false, 5}, {5, false, 5}, {7, true, 7}, {1, false, 7}} {
		if got := c.apply(build(tt.epoch)); got != tt.applied || c.Epoch() != tt.want {
			t.Fatalf("apply epoch %d: applied %v, client at %d; want %v, %d", tt.epoch, got, c.Epoch(), tt.applied, tt.want)
		}
	}
	other := wiretest.ClusterBody(9, md5, 8)
	other = []byte(strings.Replace(string(other), `"id":"c1"`, `"id":"c2"`, 1))
	c.httpc = http.DefaultClient
	if _, err := c.fetch(context.Background(), serve(t, other), "", 0); err == nil || !strings.Contains(err.Error(), "another cluster") {
		t.Fatalf("fetch from another cluster: %v", err)
	}
}
