// Package syncexample_test runs the sync example as real processes: the server built with `go build`,
// node-1 with its embedded etcd, a node joining, and the primary of the busiest partitions
// killed with SIGKILL while the client writes to every holder through pkg/client.
package syncexample_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/clusterkit-go/clusterkit/examples/internal/report"
	"github.com/clusterkit-go/clusterkit/examples/internal/store"
	"github.com/clusterkit-go/clusterkit/examples/internal/workload"
	"github.com/clusterkit-go/clusterkit/examples/sync/quorum"
	"github.com/clusterkit-go/clusterkit/internal/etcdtest"
	"github.com/clusterkit-go/clusterkit/internal/proctest"
	"github.com/clusterkit-go/clusterkit/pkg/client"
)

func TestMain(m *testing.M) { os.Exit(etcdtest.RunWithoutLeaks(m)) }

const (
	keys      = 120
	keyPrefix = "k-"
)

// Writes go on while a node joins and the node that is primary of the most keys is killed with
// SIGKILL: not one write acknowledged by a majority of its holders is lost, and none fails (the
// majority that survives acknowledges it).
func TestKillBusiestPrimaryDuringWrites(t *testing.T) {
	began := time.Now()
	bin := proctest.Build(t, "github.com/clusterkit-go/clusterkit/examples/sync/server")
	httpc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{}}
	defer httpc.CloseIdleConnections()

	seed := proctest.StartNode(t, bin, "node-1", "", "")
	settle := func(n int) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if _, err := report.Settled(ctx, httpc, seed.Addr, n); err != nil {
			t.Fatal(err)
		}
	}
	nodes := []*proctest.Node{seed}
	for _, id := range []string{"node-2", "node-3", "node-4", "node-5"} {
		nodes = append(nodes, proctest.StartNode(t, bin, id, "", seed.Addr))
	}
	settle(5)
	t.Logf("built and 5 nodes settled in %v", time.Since(began).Round(time.Millisecond))

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var seeds []string
	for _, n := range nodes {
		seeds = append(seeds, n.Addr)
	}
	c, err := client.New(ctx, client.Config{Seeds: seeds})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	kv := quorum.NewKV(c, httpc, "e2e")
	defer kv.Close()

	feed, stopFeeding := context.WithCancel(ctx)
	done := make(chan *workload.Result, 1)
	go func() {
		done <- workload.Run(feed, kv, workload.Config{Ops: 100000, Keys: keys, Prefix: keyPrefix, Concurrency: 4,
			Rate: 100, ReadEvery: 5, OpTimeout: 30 * time.Second, Seed: 1})
	}()
	time.Sleep(time.Second)
	joiner := proctest.StartNode(t, bin, "node-6", "", seed.Addr)
	time.Sleep(time.Second)
	victim, led := busiestPrimary(t, c, nodes)
	t.Logf("killing %s with SIGKILL: primary of %d of the %d keys being written", victim.ID, led, keys)
	victim.Kill(t)
	// Keep writing through the failover: the lease (2s) expires and the victim's partitions get
	// new primaries; the writes stop once the seed's map no longer lists it, and a moment later.
	failover, cancelFailover := context.WithTimeout(ctx, 30*time.Second)
	_, err = report.WaitMap(failover, httpc, seed.Addr, report.Without(victim.ID))
	cancelFailover()
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	stopFeeding()
	res := <-done
	t.Logf("during the join and the kill:\n%s", res.Summary())
	t.Logf("quorum rounds retried: %d", kv.Retries.Load())
	if res.Errors > 0 || res.StaleReads > 0 {
		t.Errorf("%d operations failed and %d reads were stale", res.Errors, res.StaleReads)
	}
	if res.Writes < 200 {
		t.Errorf("only %d writes acknowledged", res.Writes)
	}

	settle(5)
	checkCtx, cancelCheck := context.WithTimeout(ctx, time.Minute)
	defer cancelCheck()
	if bad := workload.Check(checkCtx, kv, res.State); len(bad) > 0 {
		t.Errorf("%d of %d keys do not hold their last acknowledged value: %v", len(bad), len(res.State), bad)
	}
	st, err := store.StatsAt(checkCtx, httpc, joiner.KVAddr)
	if err != nil {
		t.Fatal(err)
	}
	if st.PartitionsCopiedIn == 0 || st.KeysCopiedIn == 0 || st.ReplicaApplied == 0 {
		t.Errorf("node-6 copied in %d partitions and %d keys and stored %d client writes: want some of each",
			st.PartitionsCopiedIn, st.KeysCopiedIn, st.ReplicaApplied)
	}
	// The processes are killed when the test ends: graceful stops are the server-side example's
	// test.
}

// busiestPrimary returns the node that the client's map makes primary of the most workload
// keys, other than node-1 (the bootstrap node, which the test asks whether the cluster settled).
func busiestPrimary(t *testing.T, c *client.Client, nodes []*proctest.Node) (*proctest.Node, int) {
	t.Helper()
	led := map[string]int{}
	for i := 0; i < keys; i++ {
		r, err := c.Route(fmt.Sprintf("%s%d", keyPrefix, i))
		if err != nil {
			t.Fatal(err)
		}
		led[r.Primary().ID]++
	}
	var best *proctest.Node
	for _, n := range nodes[1:] {
		if best == nil || led[n.ID] > led[best.ID] {
			best = n
		}
	}
	if best == nil || led[best.ID] == 0 {
		t.Fatalf("no node but node-1 leads a key: %v", led)
	}
	return best, led[best.ID]
}
