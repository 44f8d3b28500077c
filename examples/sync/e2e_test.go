// Package syncexample_test runs the sync example as real processes: the server built with `go build`,
// node-1 with its embedded etcd, a node joining, a busy primary killed with SIGKILL, another
// paused with SIGSTOP and the leader killed, while the client writes to every holder through
// pkg/client.
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
	"github.com/clusterkit-go/clusterkit/pkg/wire"
)

func TestMain(m *testing.M) { os.Exit(etcdtest.RunWithoutLeaks(m)) }

const (
	keys      = 120
	keyPrefix = "k-"
)

// Writes go on while a node joins, the node that is primary of the most keys is killed with
// SIGKILL, another busy primary is paused with SIGSTOP past its lease and then continued, and
// the leader is killed with SIGKILL: not one write acknowledged by a majority of its holders is
// lost, no read is stale, and none fails (the majority that survives acknowledges it).
//
// Nodes 1 to 3 run the embedded etcd's members: the kill and the pause hit nodes 4 to 6, so that
// when the leader is killed (a member, as a rule) two of the three members are still running.
func TestFailuresDuringWrites(t *testing.T) {
	began := time.Now()
	bin := proctest.Build(t, "github.com/clusterkit-go/clusterkit/examples/sync/server")
	httpc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{}}
	defer httpc.CloseIdleConnections()

	seed := proctest.StartNode(t, bin, "node-1", "", "")
	nodes := []*proctest.Node{seed}
	for _, id := range []string{"node-2", "node-3", "node-4", "node-5"} {
		nodes = append(nodes, proctest.StartNode(t, bin, id, "", seed.Addr))
	}
	// observer is the node asked whether the cluster settled: one that the test does not stop.
	observer := nodes[1]
	waitMap := func(what string, cond func(*wire.Cluster) error) *wire.Cluster {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		c, err := report.WaitMap(ctx, &report.ClusterKit{HTTP: httpc}, observer.Addr, cond)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		return c
	}
	settle := func(n int) *wire.Cluster {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		c, err := report.Settled(ctx, &report.ClusterKit{HTTP: httpc}, observer.Addr, n)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	settle(5)
	t.Logf("built and 5 nodes settled in %v", time.Since(began).Round(time.Millisecond))

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
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
	nodes = append(nodes, joiner)
	time.Sleep(time.Second)

	// 1. SIGKILL: the lease (2s) expires and the victim's partitions get new primaries.
	killed, led := busiestPrimary(t, c, nodes[3:5])
	t.Logf("killing %s with SIGKILL: primary of %d of the %d keys being written", killed.ID, led, keys)
	killed.Kill(t)
	waitMap("after the kill", report.Without(killed.ID))
	settle(5)

	// 2. SIGSTOP past the lease: the others take its partitions over while it cannot know;
	// continued, it finds its lease gone, stops serving the map it held, registers again and
	// copies partitions back in.
	var rest []*proctest.Node
	for _, n := range nodes[3:] {
		if n != killed {
			rest = append(rest, n)
		}
	}
	paused, led := busiestPrimary(t, c, rest)
	t.Logf("pausing %s with SIGSTOP: primary of %d of the %d keys being written", paused.ID, led, keys)
	paused.Pause(t)
	waitMap("while paused", report.Without(paused.ID))
	time.Sleep(time.Second)
	paused.Resume(t)
	t.Logf("%s continued with SIGCONT", paused.ID)
	waitMap("after the pause", func(m *wire.Cluster) error {
		if _, ok := m.Cluster.Nodes[paused.ID]; !ok {
			return fmt.Errorf("epoch %d does not list %s again", m.Cluster.Epoch, paused.ID)
		}
		return nil
	})
	settle(5)

	// 3. SIGKILL of the leader: another node wins the election once its lease expires and
	// publishes the map without it.
	leaderID := settle(5).Cluster.Leader
	var leader *proctest.Node
	for _, n := range nodes {
		if n.ID == leaderID {
			leader = n
		}
	}
	if leader == nil {
		t.Fatalf("the map names leader %q, not a node of the test", leaderID)
	}
	if leader == observer {
		observer = nodes[2]
	}
	t.Logf("killing the leader %s with SIGKILL", leader.ID)
	leader.Kill(t)
	after := waitMap("after the leader's kill", func(m *wire.Cluster) error {
		if err := report.Without(leader.ID)(m); err != nil {
			return err
		}
		if m.Cluster.Leader == leader.ID {
			return fmt.Errorf("epoch %d published by the killed leader", m.Cluster.Epoch)
		}
		return nil
	})
	t.Logf("epoch %d published by the new leader %s", after.Cluster.Epoch, after.Cluster.Leader)
	time.Sleep(time.Second)
	stopFeeding()
	res := <-done
	t.Logf("during the join, the kill, the pause and the leader's kill:\n%s", res.Summary())
	t.Logf("quorum rounds retried: %d", kv.Retries.Load())
	if res.Errors > 0 || res.StaleReads > 0 {
		t.Errorf("%d operations failed and %d reads were stale: %v", res.Errors, res.StaleReads, res.FirstErrors)
	}
	if res.Writes < 300 {
		t.Errorf("only %d writes acknowledged", res.Writes)
	}

	settle(4)
	checkCtx, cancelCheck := context.WithTimeout(ctx, time.Minute)
	defer cancelCheck()
	if bad := workload.Check(checkCtx, kv, res.State); len(bad) > 0 {
		t.Errorf("%d of %d keys do not hold their last acknowledged value: %v", len(bad), len(res.State), bad)
	}
	for _, n := range []*proctest.Node{joiner, paused} {
		if n == leader {
			continue
		}
		st, err := store.StatsAt(checkCtx, httpc, n.KVAddr)
		if err != nil {
			t.Fatal(err)
		}
		if st.PartitionsCopiedIn == 0 || st.KeysCopiedIn == 0 || st.ReplicaApplied == 0 {
			t.Errorf("%s copied in %d partitions and %d keys and stored %d client writes: want some of each",
				n.ID, st.PartitionsCopiedIn, st.KeysCopiedIn, st.ReplicaApplied)
		}
	}
	// The processes are killed when the test ends: graceful stops are the server-side example's
	// test.
}

// busiestPrimary returns the one of candidates that the client's map makes primary of the most
// workload keys.
func busiestPrimary(t *testing.T, c *client.Client, candidates []*proctest.Node) (*proctest.Node, int) {
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
	for _, n := range candidates {
		if best == nil || led[n.ID] > led[best.ID] {
			best = n
		}
	}
	if best == nil || led[best.ID] == 0 {
		t.Fatalf("none of the candidates leads a key: %v", led)
	}
	return best, led[best.ID]
}
