package client

import (
	"crypto/md5"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/clusterkit-go/clusterkit/internal/topology"
	"github.com/clusterkit-go/clusterkit/internal/wiretest"
	"github.com/clusterkit-go/clusterkit/pkg/wire"
)

// routeFixture is a client holding a 64-partition map of 3 nodes, and keys to route.
func routeFixture(tb testing.TB) (*Client, []string) {
	var d wire.Cluster
	if err := json.Unmarshal(wiretest.ClusterBody(3, wiretest.HashConfig{Algorithm: "md5", Modulo: 64, Format: "partition-%d"}, 64), &d); err != nil {
		tb.Fatal(err)
	}
	t, err := topology.FromCluster(&d, `"c1-3"`)
	if err != nil {
		tb.Fatal(err)
	}
	c := &Client{log: zap.NewNop()}
	c.apply(t)
	keys := make([]string, 1024)
	for i := range keys {
		keys[i] = fmt.Sprintf("user:%d", i*7919)
	}
	return c, keys
}

// bareHash is the baseline: the md5 of the key and its first four bytes, nothing else.
func bareHash(key string) uint32 {
	sum := md5.Sum([]byte(key))
	return binary.BigEndian.Uint32(sum[:4])
}

var sink uint32

func TestRouteAllocatesNothing(t *testing.T) {
	c, keys := routeFixture(t)
	if n := testing.AllocsPerRun(1000, func() {
		r, _ := c.Route(keys[7])
		sink ^= uint32(len(r.Primary().ID))
	}); n != 0 {
		t.Fatalf("Route allocates %v times per call", n)
	}
}

// BenchmarkRoute runs Route and the bare md5 of the key alternately in one run and reports the
// difference and the ratio.
func BenchmarkRoute(b *testing.B) {
	c, keys := routeFixture(b)
	run := func(n int, f func(string) uint32) time.Duration {
		var acc uint32
		start := time.Now()
		for i := 0; i < n; i++ {
			acc ^= f(keys[i&1023])
		}
		d := time.Since(start)
		sink ^= acc
		return d
	}
	route := func(key string) uint32 {
		r, _ := c.Route(key)
		return uint32(len(r.Primary().ID)) ^ uint32(r.Index)
	}
	b.ReportAllocs()
	b.ResetTimer()
	// Alternate the two in rounds, so that a change in the machine's load hits both alike.
	const rounds = 20
	n := max(1, b.N/rounds)
	var base, ours time.Duration
	for r := 0; r < rounds; r++ {
		base += run(n, bareHash)
		ours += run(n, route)
	}
	b.StopTimer()
	per := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / float64(n*rounds) }
	b.ReportMetric(per(base), "md5-ns/op")
	b.ReportMetric(per(ours), "route-ns/op")
	b.ReportMetric(per(ours)-per(base), "ns-over-md5")
	b.ReportMetric(per(ours)/per(base), "route/md5")
}
