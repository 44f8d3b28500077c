package clusterkit_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/clusterkit-go/clusterkit/internal/etcdtest"
	"github.com/clusterkit-go/clusterkit/internal/keys"
	"github.com/clusterkit-go/clusterkit/pkg/clusterkit"
	"github.com/clusterkit-go/clusterkit/pkg/clustertest"
	"github.com/clusterkit-go/clusterkit/pkg/wire"
)

// Every published map leaves a record of what it changed, served by every node at
// GET /cluster/history; the leader keeps the last few (three here) and deletes older ones in the
// transaction that publishes a map.
func TestHistory(t *testing.T) {
	t.Cleanup(clusterkit.SetHistoryRecords(3))
	c := clustertest.New(t, clusterkit.Options{PartitionCount: 16, ReplicationFactor: 2})
	c.Add("node-1", copying)
	c.WaitConverged(20 * time.Second)
	get := func(query string) (int, wire.History) {
		t.Helper()
		resp, err := http.Get(fmt.Sprintf("http://%s/cluster/history%s", c.Node("node-1").AdvertiseAddr(), query))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var h wire.History
		if resp.StatusCode == http.StatusOK {
			if err := json.NewDecoder(resp.Body).Decode(&h); err != nil {
				t.Fatal(err)
			}
		}
		return resp.StatusCode, h
	}
	if code, h := get(""); code != http.StatusOK || len(h.Records) != 1 || h.Oldest != 1 || h.Records[0].Cause.Reason != "create" ||
		h.Records[0].Changed != 16 || h.Records[0].Leader != "node-1" || h.Records[0].Nodes != 1 {
		t.Fatalf("history of a new cluster: %d %+v", code, h)
	}

	c.Add("node-2", copying)
	c.WaitConverged(20 * time.Second)
	epoch := c.Node("node-1").Epoch()
	code, h := get("")
	if code != http.StatusOK || len(h.Records) != 3 || h.Oldest != epoch-2 {
		t.Fatalf("after a join (epoch %d): %d, %d records from %d", epoch, code, len(h.Records), h.Oldest)
	}
	started, done := 0, 0
	for i, r := range h.Records {
		if r.Epoch != epoch-2+uint64(i) || r.Leader != "node-1" || r.Bytes == 0 || r.ComputeMillis <= 0 {
			t.Fatalf("record %d: %+v", i, r)
		}
		started += r.CopiesStarted
		done += r.CopiesDone
	}
	last := h.Records[2]
	if last.Pending != 0 || last.Nodes != 2 || done == 0 || done > started+16 {
		t.Fatalf("the join: %d copies started, %d done in the last three records, last %+v", started, done, last)
	}
	keys, err := c.Etcd().Get(context.Background(), keys.New(c.Name()).HistoryPrefix(), clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil || keys.Count != 3 {
		t.Fatalf("%d records in etcd, want the last 3: %v", keys.Count, err)
	}

	if code, h := get(fmt.Sprintf("?since=%d&limit=1", epoch-2)); code != http.StatusOK || len(h.Records) != 1 || h.Records[0].Epoch != epoch-1 {
		t.Fatalf("since %d, limit 1: %d %+v", epoch-2, code, h)
	}
	if code, h := get(fmt.Sprintf("?since=%d", epoch)); code != http.StatusOK || len(h.Records) != 0 || h.Records == nil {
		t.Fatalf("since the current epoch: %d %+v", code, h)
	}
	for _, q := range []string{"?since=-1", "?since=x", "?limit=0", "?limit=1001"} {
		if code, _ := get(q); code != http.StatusBadRequest {
			t.Errorf("%s: status %d, want 400", q, code)
		}
	}
}

// firstAfter returns the history record of the first map published after epoch since, as
// node-1 serves it, waiting for that map.
func firstAfter(t *testing.T, c *clustertest.Cluster, since uint64) wire.HistoryRecord {
	t.Helper()
	var rec wire.HistoryRecord
	etcdtest.WaitFor(t, 20*time.Second, fmt.Sprintf("a map after epoch %d", since), func() error {
		resp, err := http.Get(fmt.Sprintf("http://%s/cluster/history?since=%d&limit=1", c.Node("node-1").AdvertiseAddr(), since))
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var h wire.History
		if err := json.NewDecoder(resp.Body).Decode(&h); err != nil {
			return err
		}
		if len(h.Records) == 0 {
			return fmt.Errorf("no map after epoch %d", since)
		}
		rec = h.Records[0]
		return nil
	})
	return rec
}
