// Package serverside_test runs the server-side example as real processes: the server built with
// `go build`, nodes 1 to 3 running the embedded etcd, a node joining and another killed with SIGKILL
// while a client writes and reads through any node.
package serverside_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/clusterkit-go/clusterkit/examples/internal/report"
	"github.com/clusterkit-go/clusterkit/examples/internal/store"
	"github.com/clusterkit-go/clusterkit/examples/internal/workload"
	"github.com/clusterkit-go/clusterkit/internal/etcdtest"
	"github.com/clusterkit-go/clusterkit/internal/proctest"
)

func TestMain(m *testing.M) { os.Exit(etcdtest.RunWithoutLeaks(m)) }

// Every write acknowledged to the client, before, during and after a join and a SIGKILL of a
// node in the middle of the writes, reads back with its latest acknowledged value, and no
// operation fails: the nodes absorb the failover by retrying towards the new primary.
func TestJoinAndKillDuringWrites(t *testing.T) {
	bin := proctest.Build(t, "github.com/clusterkit-go/clusterkit/examples/server-side/server")
	httpc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{}}
	defer httpc.CloseIdleConnections()
	ck := &report.ClusterKit{HTTP: httpc}

	seed := proctest.StartNode(t, bin, "node-1", "", "")
	nodes := []*proctest.Node{seed}
	// Nodes 2 and 3 join together and take the two free etcd member places; node-4 joins
	// after them, as a client (joined at once, any two of the three would be the members).
	for _, group := range [][]string{{"node-2", "node-3"}, {"node-4"}} {
		first := len(nodes)
		for _, id := range group {
			nodes = append(nodes, proctest.LaunchNode(t, bin, id, "", seed.Addr))
		}
		for _, n := range nodes[first:] {
			n.WaitNode(t)
		}
	}
	settle(t, ck, seed.Addr, 4)

	// The original README's request, to a node and read back through another.
	body := `{"key":"test","value":"hello"}`
	resp, err := httpc.Post("http://"+nodes[1].KVAddr+"/kv/set", "application/json", bytes.NewBufferString(body))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST /kv/set %s: %s %s", body, resp.Status, b)
	}
	resp, err = httpc.Get("http://" + nodes[2].KVAddr + "/kv/get?key=test")
	if err != nil {
		t.Fatal(err)
	}
	var got store.Entry
	err = json.NewDecoder(resp.Body).Decode(&got)
	resp.Body.Close()
	if err != nil || got.Value != "hello" {
		t.Fatalf("GET /kv/get?key=test: %+v, %v; want hello", got, err)
	}

	// The client may send to node-5 before it exists: it then tries another node.
	joinerKV := proctest.FreeAddr(t)
	kv := &workload.AnyNode{Addrs: []string{nodes[0].KVAddr, nodes[1].KVAddr, nodes[2].KVAddr, nodes[3].KVAddr, joinerKV}, HTTP: httpc}
	ctx, stopFeeding := context.WithCancel(context.Background())
	done := make(chan *workload.Result, 1)
	go func() {
		done <- workload.Run(ctx, kv, workload.Config{Ops: 100000, Keys: 120, Prefix: "k-", Concurrency: 4,
			Rate: 60, ReadEvery: 5, OpTimeout: 30 * time.Second, Seed: 1})
	}()
	time.Sleep(time.Second)
	joiner := proctest.StartNode(t, bin, "node-5", joinerKV, seed.Addr)
	time.Sleep(time.Second)
	// node-3 runs one of the embedded etcd's three members (nodes 1 to 3): the other two keep
	// its quorum.
	nodes[2].Kill(t)
	// Keep writing through the failover: the lease (2s) expires and node-3's partitions get new
	// primaries; the writes stop once the seed's map no longer lists node-3, and a moment later.
	failover, cancelFailover := context.WithTimeout(context.Background(), 30*time.Second)
	_, err = report.WaitMap(failover, ck, seed.Addr, report.Without(nodes[2].ID))
	cancelFailover()
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	stopFeeding()
	res := <-done
	t.Logf("during the join and the kill:\n%s", res.Summary())
	if res.Errors > 0 || res.StaleReads > 0 {
		t.Errorf("%d operations failed and %d reads were stale", res.Errors, res.StaleReads)
	}
	if res.Writes < 100 {
		t.Errorf("only %d writes acknowledged", res.Writes)
	}

	settle(t, ck, seed.Addr, 4)
	live := &workload.AnyNode{Addrs: []string{nodes[0].KVAddr, nodes[1].KVAddr, nodes[3].KVAddr, joiner.KVAddr}, HTTP: httpc}
	checkCtx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if bad := workload.Check(checkCtx, live, res.State); len(bad) > 0 {
		t.Errorf("%d of %d keys do not hold their last acknowledged value: %v", len(bad), len(res.State), bad)
	}
	st, err := store.StatsAt(checkCtx, httpc, joiner.KVAddr)
	if err != nil {
		t.Fatal(err)
	}
	if st.PartitionsCopiedIn == 0 || st.KeysCopiedIn == 0 || st.Primaries == 0 {
		t.Errorf("node-5 copied in %d partitions and %d keys and leads %d: want some of each", st.PartitionsCopiedIn, st.KeysCopiedIn, st.Primaries)
	}
	// Nodes 1 to 3 run the embedded etcd's members (node-3 is dead): the others leave first,
	// through them; then the members together, so that neither waits for a lost quorum.
	proctest.Stop(t, 20*time.Second, nodes[3].Process, joiner.Process)
	proctest.Stop(t, 20*time.Second, nodes[0].Process, nodes[1].Process)
}

func settle(t *testing.T, ck *report.ClusterKit, addr string, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := report.Settled(ctx, ck, addr, n); err != nil {
		t.Fatal(err)
	}
}

// With the cluster's join token on every node ($JOIN_TOKEN, or -token) and the client, the
// nodes refuse requests without it (401), values over 1 MiB (413), and still route, replicate
// and copy a joining node's partitions in among themselves: every call between them carries
// the token. ClusterKit runs in its secure mode with the same token: its API speaks https only,
// with the cluster's CA, and its /cluster/join refuses a request without the token (401).
func TestTokenAndValueLimit(t *testing.T) {
	const token = "e2e-join-token-0123456789abcdef"
	bin := proctest.Build(t, "github.com/clusterkit-go/clusterkit/examples/server-side/server")
	plain := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{}}
	defer plain.CloseIdleConnections()
	httpc := store.TokenClient(plain, token)

	// The nodes inherit the test's environment; node-2 is given the token as a flag instead.
	t.Setenv(store.TokenEnv, token)
	seed := proctest.StartNode(t, bin, "node-1", "", "")
	t.Setenv(store.TokenEnv, "")
	nodes := []*proctest.Node{seed, proctest.LaunchNode(t, bin, "node-2", "", seed.Addr, "-token", token)}
	t.Setenv(store.TokenEnv, token)
	nodes = append(nodes, proctest.LaunchNode(t, bin, "node-3", "", seed.Addr))
	for _, n := range nodes[1:] {
		n.WaitNode(t)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// ClusterKit runs in secure mode with the token: its API answers over https with the
	// cluster's CA (learned from node-1, which proves it knows the token), not over plain http,
	// and /cluster/join without the token answers 401.
	ck, err := report.DialClusterKit(ctx, seed.Addr, token)
	if err != nil {
		t.Fatal(err)
	}
	defer ck.HTTP.CloseIdleConnections()
	settle(t, ck, seed.Addr, 3)
	if resp, err := plain.Get("http://" + nodes[1].Addr + "/cluster"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Errorf("GET http://%s/cluster (plain http): %s, want it refused", nodes[1].Addr, resp.Status)
		}
	}
	resp, err := ck.HTTP.Post(ck.URL(nodes[1].Addr, "/cluster/join"), "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("POST %s without the token: %s, want 401", ck.URL(nodes[1].Addr, "/cluster/join"), resp.Status)
	}

	// Without the token: refused before anything is read or routed.
	for _, r := range []struct{ method, path, body string }{
		{http.MethodPost, "/kv/set", `{"key":"k","value":"v"}`},
		{http.MethodGet, "/kv/get?key=k", ""},
		{http.MethodGet, "/store/export?partition=partition-0&min_epoch=0&node=node-9&addr=127.0.0.1:1", ""},
		{http.MethodPost, "/store/adopt", `{"partition":"partition-0","primary_epoch":1,"entries":[{"key":"k"}]}`},
		{http.MethodPost, "/store/replicate", `{"partition":"partition-0","primary_epoch":1,"entries":[{"key":"k"}]}`},
	} {
		req, err := http.NewRequest(r.method, "http://"+nodes[1].KVAddr+r.path, strings.NewReader(r.body))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := plain.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var e store.APIError
		err = json.NewDecoder(resp.Body).Decode(&e)
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized || err != nil || e.Code != "unauthorized" {
			t.Errorf("%s %s without the token: %s %+v (%v), want 401 unauthorized", r.method, r.path, resp.Status, e, err)
		}
	}

	// With it: a write through any node, at the value limit, and one byte over.
	big := strings.Repeat("v", store.DefaultMaxValueBytes)
	for _, n := range nodes {
		if err := store.Call(ctx, httpc, http.MethodPost, n.KVAddr, "/kv/set", nil, store.PutRequest{Key: "big-" + n.ID, Value: big}, nil); err != nil {
			t.Errorf("a 1 MiB value through %s: %v", n.ID, err)
		}
	}
	err = store.Call(ctx, httpc, http.MethodPost, seed.KVAddr, "/kv/set", nil, store.PutRequest{Key: "k", Value: big + "v"}, nil)
	var apiErr *store.APIError
	if !errors.As(err, &apiErr) || apiErr.Status != http.StatusRequestEntityTooLarge || !strings.Contains(apiErr.Message, "limit of 1048576 bytes") {
		t.Errorf("a value one byte over 1 MiB: %v, want 413 naming the limit", err)
	}

	// Writes and reads through any node while node-4 joins and copies its partitions in.
	kv := &workload.AnyNode{Addrs: []string{nodes[0].KVAddr, nodes[1].KVAddr, nodes[2].KVAddr}, HTTP: httpc}
	feed, stopFeeding := context.WithCancel(ctx)
	done := make(chan *workload.Result, 1)
	go func() {
		done <- workload.Run(feed, kv, workload.Config{Ops: 100000, Keys: 60, Prefix: "t-", Concurrency: 4,
			Rate: 100, ReadEvery: 5, OpTimeout: 30 * time.Second, Seed: 3})
	}()
	time.Sleep(500 * time.Millisecond)
	joiner := proctest.StartNode(t, bin, "node-4", "", seed.Addr)
	settle(t, ck, seed.Addr, 4)
	stopFeeding()
	res := <-done
	t.Logf("during the join, with the token:\n%s", res.Summary())
	if res.Errors > 0 || res.StaleReads > 0 || res.Writes == 0 {
		t.Errorf("%d operations failed and %d reads were stale, of %d writes", res.Errors, res.StaleReads, res.Writes)
	}
	live := &workload.AnyNode{Addrs: []string{joiner.KVAddr, nodes[0].KVAddr}, HTTP: httpc}
	if bad := workload.Check(ctx, live, res.State); len(bad) > 0 {
		t.Errorf("%d of %d keys do not hold their last acknowledged value: %v", len(bad), len(res.State), bad)
	}
	for _, n := range nodes {
		if v, found, err := live.Get(ctx, "big-"+n.ID); err != nil || !found || v != big {
			t.Errorf("the 1 MiB value written through %s: %d bytes, found %v, %v", n.ID, len(v), found, err)
		}
	}
	st, err := store.StatsAt(ctx, httpc, joiner.KVAddr)
	if err != nil {
		t.Fatal(err)
	}
	if st.KeysCopiedIn == 0 {
		t.Errorf("node-4 copied no key in: %+v", st)
	}
	if _, err := store.StatsAt(ctx, plain, joiner.KVAddr); !errors.Is(err, store.ErrUnauthorized) {
		t.Errorf("stats of node-4 without the token: %v, want unauthorized", err)
	}
	// The processes are killed when the test ends: the graceful stops are the test above.
}
