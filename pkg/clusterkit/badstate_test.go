package clusterkit_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/clusterkit-go/clusterkit/internal/keys"
	"github.com/clusterkit-go/clusterkit/pkg/clusterkit"
	"github.com/clusterkit-go/clusterkit/pkg/clustertest"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// What etcdctl can write into a cluster's keys cannot stall or split it. Each test injects
// the fault with a plain etcd client, as `etcdctl put` or `etcdctl del` would.

// faultCluster is a cluster whose nodes all log to one observer, to count what a fault makes
// them log.
type faultCluster struct {
	*clustertest.Cluster
	logs *observer.ObservedLogs
}

// threeNodes starts node-1 to node-3 and waits until they agree.
func threeNodes(t *testing.T) faultCluster {
	t.Helper()
	core, logs := observer.New(zap.WarnLevel)
	c := clustertest.New(t, clusterkit.Options{PartitionCount: 16, Logger: zap.New(core)})
	for i := 1; i <= 3; i++ {
		c.Add(fmt.Sprintf("node-%d", i))
	}
	c.WaitConverged(10 * time.Second)
	return faultCluster{c, logs}
}

// maxFaultLines bounds the warnings and errors all nodes log about one fault: each is logged
// once per revision or with backoff, never in a loop.
const maxFaultLines = 60

// recovered waits until the cluster converges again after a fault injected at start from epoch,
// logs the figures of the README's table (time, maps published, lines logged) and checks that
// the nodes did not log in a loop.
func (c faultCluster) recovered(t *testing.T, within time.Duration, start time.Time, epoch uint64, lines0 int) {
	t.Helper()
	c.WaitConverged(within)
	lines := c.logs.Len() - lines0
	t.Logf("recovered in %v, %d maps published, %d warning and error lines", time.Since(start).Round(time.Millisecond),
		c.Node("node-1").Epoch()-epoch, lines)
	if lines > maxFaultLines {
		for _, e := range c.logs.All()[lines0:] {
			t.Log(e.Level, e.LoggerName, e.Message, e.ContextMap())
		}
		t.Fatalf("%d warning and error lines for one fault, more than %d", lines, maxFaultLines)
	}
}

// etcdPut puts value under key as `etcdctl put` would.
func etcdPut(c faultCluster, key, value string) {
	c.Inject(func(ctx context.Context, etcd *clientv3.Client) error {
		_, err := etcd.Put(ctx, key, value)
		return err
	})
}

// epochsAbove fails the test unless every live node holds a map above epoch.
func epochsAbove(t *testing.T, c faultCluster, epoch uint64) {
	t.Helper()
	for id, ck := range c.Nodes() {
		if ck.Epoch() <= epoch {
			t.Fatalf("%s holds epoch %d, not above %d", id, ck.Epoch(), epoch)
		}
	}
}

// A node record that no node could have written (a weight over the maximum, or not JSON) is
// skipped: a crash is still placed, and the record never enters the map.
func TestInvalidNodeRecordIsSkipped(t *testing.T) {
	c := threeNodes(t)
	s := keys.New(c.Name())
	epoch, lines, start := c.Node("node-1").Epoch(), c.logs.Len(), time.Now()
	etcdPut(c, s.Node("evil"), `{"id":"evil","ip":"127.0.0.1:1","weight":2000000000,"started_at":"2026-01-01T00:00:00Z"}`)
	etcdPut(c, s.Node("garbage"), `not a record`)
	c.Kill("node-3")
	c.recovered(t, clustertest.DefaultLeaseTTL+10*time.Second, start, epoch, lines)
	epochsAbove(t, c, epoch)
	c.Add("node-4")
	c.WaitConverged(10 * time.Second)
	if v := c.Violations(); len(v) > 0 {
		t.Fatalf("invariant violations: %v", v)
	}
}

// A map overwritten with garbage is replaced, with no other change to prompt it, by a map
// above every epoch a node held; the cluster then places changes as before.
func TestCorruptMapIsReplaced(t *testing.T) {
	c := threeNodes(t)
	epoch, lines, start := c.Node("node-1").Epoch(), c.logs.Len(), time.Now()
	etcdPut(c, keys.New(c.Name()).Partitions(), "garbage")
	c.recovered(t, 10*time.Second, start, epoch, lines)
	epochsAbove(t, c, epoch)
	epoch = c.Node("node-1").Epoch()
	c.Kill("node-3")
	c.WaitConverged(clustertest.DefaultLeaseTTL + 10*time.Second)
	epochsAbove(t, c, epoch)
}

// A deleted map is republished above the epoch the nodes hold, not from epoch 1: a node that
// joins next follows the same map as the others.
func TestDeletedMapNeverGoesBack(t *testing.T) {
	c := threeNodes(t)
	epoch, lines, start := c.Node("node-1").Epoch(), c.logs.Len(), time.Now()
	c.Inject(func(ctx context.Context, etcd *clientv3.Client) error {
		_, err := etcd.Delete(ctx, keys.New(c.Name()).Partitions())
		return err
	})
	c.Add("node-4")
	c.recovered(t, 10*time.Second, start, epoch, lines)
	epochsAbove(t, c, epoch)
	if v := c.Violations(); len(v) > 0 {
		t.Fatalf("invariant violations: %v", v)
	}
}

// A map put back from an older backup (as an etcd restored from an older snapshot would hold)
// is followed by a map above the newest epoch any node held, whose primary epochs are above
// every primary epoch held: fencing tokens never go backwards.
func TestOlderMapIsRepublishedAbove(t *testing.T) {
	c := threeNodes(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	key := keys.New(c.Name()).Partitions()
	old, err := c.Etcd().Get(ctx, key)
	if err != nil || len(old.Kvs) == 0 {
		t.Fatalf("read the map: %v", err)
	}
	c.Add("node-4")
	c.WaitConverged(10 * time.Second)
	held := clusterkit.RawMap(c.Node("node-1"))

	lines, start := c.logs.Len(), time.Now()
	etcdPut(c, key, string(old.Kvs[0].Value))
	c.recovered(t, 10*time.Second, start, held.Epoch, lines)
	epochsAbove(t, c, held.Epoch)
	now := clusterkit.RawMap(c.Node("node-1"))
	for i := range now.Partitions {
		if got, was := now.Partitions[i].PrimaryEpoch, held.Partitions[i].PrimaryEpoch; got <= was {
			t.Fatalf("partition-%d: primary epoch %d after the restore, %d before", i, got, was)
		}
	}
}

// A deleted config is not re-created by the next node with its own settings: the node refuses
// to start and says how to put it back; a corrupt config is refused as such.
func TestDeletedOrCorruptConfigIsRefused(t *testing.T) {
	c := threeNodes(t)
	key := keys.New(c.Name()).Config()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	saved, err := c.Etcd().Get(ctx, key)
	if err != nil || len(saved.Kvs) == 0 {
		t.Fatalf("read the config: %v", err)
	}
	c.Inject(func(ctx context.Context, etcd *clientv3.Client) error {
		_, err := etcd.Delete(ctx, key)
		return err
	})
	o := c.Options("node-4")
	o.PartitionCount = 32
	if _, err := c.TryStart(o); err == nil || !strings.Contains(err.Error(), "is missing while the cluster has a partition map") {
		t.Fatalf("a node started on a cluster whose config was deleted: %v", err)
	}
	if got, err := c.Etcd().Get(ctx, key); err != nil || len(got.Kvs) != 0 {
		t.Fatalf("the config was re-created: %v %v", got.Kvs, err)
	}
	etcdPut(c, key, `{"cluster_id":"x","partition_count":0}`)
	if _, err := c.TryStart(c.Options("node-4")); err == nil || !strings.Contains(err.Error(), "is invalid") {
		t.Fatalf("a node started on an invalid config: %v", err)
	}
	etcdPut(c, key, string(saved.Kvs[0].Value))
	c.Add("node-4")
	c.WaitConverged(10 * time.Second)
}
