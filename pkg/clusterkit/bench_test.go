package clusterkit

import (
	"context"
	"crypto/md5"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/clusterkit-go/clusterkit/internal/mapstore"
	"github.com/clusterkit-go/clusterkit/internal/nextmap"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/clusterkit-go/clusterkit/internal/etcdtest"
	"github.com/clusterkit-go/clusterkit/internal/keys"
	"github.com/clusterkit-go/clusterkit/internal/state"
)

func lookupFixture(tb testing.TB) (*ClusterKit, []string) {
	ck, err := NewClusterKit(Options{NodeID: "node-1", HTTPAddr: ":0"})
	if err != nil {
		tb.Fatal(err)
	}
	var parts [][]string
	for i := 0; i < 64; i++ {
		parts = append(parts, []string{"node-1", "node-2", "node-3"})
	}
	ck.maps.snap.Store(newSnapshot(testMap(1, []string{"node-1", "node-2", "node-3"}, parts...), 1))
	keys := make([]string, 1024)
	for i := range keys {
		keys[i] = fmt.Sprintf("user:%d", i*7919)
	}
	return ck, keys
}

// bareHash is the baseline: the md5 of the key and its first four bytes, nothing else.
func bareHash(key string) uint32 {
	sum := md5.Sum([]byte(key))
	return binary.BigEndian.Uint32(sum[:4])
}

var (
	sinkU32  uint32
	sinkNode *Node
)

// The lookup path allocates nothing.
func TestLookupAllocatesNothing(t *testing.T) {
	ck, keys := lookupFixture(t)
	allocs := testing.AllocsPerRun(1000, func() {
		p, _ := ck.GetPartition(keys[7])
		sinkNode = ck.GetPrimary(p)
		_ = ck.IsPrimary(p) || ck.IsReplica(p)
		_ = ck.GetNodes(p)
		_ = ck.GetReplicas(p)
	})
	if allocs != 0 {
		t.Fatalf("lookups allocate %v times per call", allocs)
	}
}

// BenchmarkLookup runs GetPartition+GetPrimary and the bare md5 of the key in the same run, on
// one goroutine and on GOMAXPROCS goroutines, and reports the difference and the ratio.
func BenchmarkLookup(b *testing.B) {
	ck, keys := lookupFixture(b)
	n := b.N
	// run calls f for i in [0, n) spread over goroutines; each goroutine keeps its own
	// accumulator so that the measurement has no shared writes.
	run := func(goroutines int, f func(i int) uint32) time.Duration {
		var wg sync.WaitGroup
		sums := make([]uint32, goroutines*16)
		start := time.Now()
		for g := 0; g < goroutines; g++ {
			wg.Add(1)
			go func(g int) {
				defer wg.Done()
				var acc uint32
				for i := g; i < n; i += goroutines {
					acc ^= f(i)
				}
				sums[g*16] = acc
			}(g)
		}
		wg.Wait()
		elapsed := time.Since(start)
		for _, v := range sums {
			sinkU32 ^= v
		}
		return elapsed
	}
	hash := func(i int) uint32 { return bareHash(keys[i&1023]) }
	lookup := func(i int) uint32 {
		p, _ := ck.GetPartition(keys[i&1023])
		return uint32(len(ck.GetPrimary(p).ID))
	}
	b.ReportAllocs()
	b.ResetTimer()
	// Alternate the two in rounds, so that a change in the machine's load hits both alike.
	var base1, ours1, baseP, oursP time.Duration
	procs := runtime.GOMAXPROCS(0)
	const rounds = 20
	n = max(1, n/rounds)
	for r := 0; r < rounds; r++ {
		base1 += run(1, hash)
		ours1 += run(1, lookup)
		baseP += run(procs, hash)
		oursP += run(procs, lookup)
	}
	n *= rounds
	b.StopTimer()
	per := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / float64(n) }
	b.ReportMetric(per(base1), "md5-ns/op")
	b.ReportMetric(per(ours1), "lookup-ns/op")
	b.ReportMetric(per(ours1)-per(base1), "ns-over-md5")
	b.ReportMetric(per(ours1)/per(base1), "lookup/md5")
	// Throughput gain from 1 to GOMAXPROCS goroutines, ours and the baseline's.
	b.ReportMetric(per(ours1)/per(oursP), "lookup-speedup-parallel")
	b.ReportMetric(per(base1)/per(baseP), "md5-speedup-parallel")
}

// BenchmarkCommitToCallback measures, on one real etcd, the time from a write to the moment the
// application sees it: for a raw etcd put, until a watcher receives the event; for a ClusterKit
// map, until a partition-change hook runs on a node. The two alternate in the same run.
func BenchmarkCommitToCallback(b *testing.B) {
	srv := etcdtest.Start(b)
	ctx := context.Background()
	c := srv.Client
	wch := c.Watch(ctx, "/bench/raw")

	// The writer alternates partition-0's second holder, so that every map fires exactly one
	// hook for it.
	ck, err := NewClusterKit(Options{NodeID: "node-1", HTTPAddr: "127.0.0.1:0", EtcdClient: c, ClusterName: "bench", PartitionCount: 64, LeaseTTL: 10 * time.Second, DataDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	fired := make(chan struct{}, 1)
	ck.OnPartitionChange(func(id string, _ []*Node, to *Node) {
		if id == "partition-0" && to.ID != "node-1" {
			fired <- struct{}{}
		}
	})
	if err := ck.Start(); err != nil {
		b.Fatal(err)
	}
	defer ck.Stop()
	schema := keys.New("bench")
	cur, err := mapstore.ReadMap(ctx, c, schema, 0)
	if err != nil {
		b.Fatal(err)
	}
	m := cur.Map
	for _, id := range []string{"node-a", "node-b"} {
		m.Nodes[id] = state.Node{ID: id, IP: "127.0.0.1:1"}
	}
	var raw, ours time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		if _, err := c.Put(ctx, "/bench/raw", fmt.Sprint(i)); err != nil {
			b.Fatal(err)
		}
		<-wch
		raw += time.Since(start)

		m.Epoch++
		m.Partitions[0] = state.Entry{Holders: []string{"node-1", []string{"node-a", "node-b"}[i%2]}, PrimaryEpoch: 1}
		head, err := json.Marshal(m)
		if err != nil {
			b.Fatal(err)
		}
		start = time.Now()
		if _, err := c.Put(ctx, schema.Partitions(), string(head)); err != nil {
			b.Fatal(err)
		}
		<-fired
		ours += time.Since(start)
	}
	b.StopTimer()
	us := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1000 / float64(b.N) }
	b.ReportMetric(us(raw), "raw-put-to-watch-us")
	b.ReportMetric(us(ours), "map-to-hook-us")
	b.ReportMetric(us(ours)/us(raw), "ratio")
	b.ReportMetric(us(ours)-(1.2*us(raw)+100), "us-over-target")
}

// BenchmarkGracefulStop measures, with 5 nodes, the time from Stop on a sixth node to the moment
// all five hold a map without it; the baseline, in the same run, is a revoked lease reaching five
// raw etcd watchers. Each node has its own etcd connection, as separate processes would. Besides
// the mean it reports the median and the 90th percentile: on a shared machine a few slow
// iterations (a GC cycle, a descheduled etcd) move the mean more than the typical stop.
func BenchmarkGracefulStop(b *testing.B) {
	srv := etcdtest.Start(b)
	ctx := context.Background()
	c := srv.Client

	// Baseline: revoke -> five watchers see the key go.
	var raw time.Duration
	for i := 0; i < b.N; i++ {
		lease, err := c.Grant(ctx, 10)
		if err != nil {
			b.Fatal(err)
		}
		key := fmt.Sprintf("/bench/node-%d", i)
		if _, err := c.Put(ctx, key, "x", clientv3.WithLease(lease.ID)); err != nil {
			b.Fatal(err)
		}
		var chans []clientv3.WatchChan
		wctx, cancel := context.WithCancel(ctx)
		for w := 0; w < 5; w++ {
			chans = append(chans, c.Watch(wctx, key, clientv3.WithCreatedNotify()))
		}
		for _, ch := range chans {
			<-ch // created
		}
		start := time.Now()
		if _, err := c.Revoke(ctx, lease.ID); err != nil {
			b.Fatal(err)
		}
		for _, ch := range chans {
			<-ch
		}
		raw += time.Since(start)
		cancel()
	}

	var nodes []*ClusterKit
	start := func(id string) *ClusterKit {
		ck, err := NewClusterKit(Options{NodeID: id, HTTPAddr: "127.0.0.1:0", EtcdEndpoints: srv.Member.Endpoints(), ClusterName: "bench", LeaseTTL: 10 * time.Second, DataDir: b.TempDir()})
		if err != nil {
			b.Fatal(err)
		}
		if err := ck.Start(); err != nil {
			b.Fatal(err)
		}
		return ck
	}
	for i := 1; i <= 5; i++ {
		nodes = append(nodes, start(fmt.Sprintf("node-%d", i)))
	}
	defer func() {
		for _, ck := range nodes {
			ck.Stop()
		}
	}()
	lists := func(ck *ClusterKit, id string) bool {
		_, ok := ck.maps.snapshot().nodes[id]
		return ok
	}
	settled := func(ck *ClusterKit, id string) bool {
		s := ck.maps.snapshot()
		_, ok := s.nodes[id]
		return ok && nextmap.Pending(s.raw) == 0
	}
	var ours time.Duration
	samples := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		id := fmt.Sprintf("leaver-%d", i)
		leaver := start(id)
		// Wait until the leaver holds its share (its handoffs are done) and the coalescing
		// window has passed: a lone Stop is what is measured.
		for _, ck := range nodes {
			for {
				ch := ck.maps.changes()
				if settled(ck, id) {
					break
				}
				<-ch
			}
		}
		time.Sleep(DefaultCoalesceWindow)
		b.StartTimer()
		begin := time.Now()
		go leaver.Stop()
		for _, ck := range nodes {
			for {
				ch := ck.maps.changes()
				if !lists(ck, id) {
					break
				}
				<-ch
			}
		}
		took := time.Since(begin)
		ours += took
		samples = append(samples, took)
	}
	b.StopTimer()
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	slices.Sort(samples)
	b.ReportMetric(ms(raw)/float64(b.N), "raw-revoke-to-5-watchers-ms")
	b.ReportMetric(ms(ours)/float64(b.N), "stop-to-5-maps-ms")
	b.ReportMetric(ms(samples[len(samples)/2]), "p50-ms")
	b.ReportMetric(ms(samples[len(samples)*9/10]), "p90-ms")
	b.ReportMetric(ms(ours)/ms(raw), "ratio")
}
