package clusterkit

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/clusterkit-go/clusterkit/internal/etcdtest"
	"github.com/clusterkit-go/clusterkit/internal/state"
	"github.com/clusterkit-go/clusterkit/pkg/embed"
	"github.com/clusterkit-go/clusterkit/pkg/wire"
)

// haOptions are the options of an embedded-etcd node in these tests: short lease, short raft
// timings (elections after a member stops take about half a second), no fsync.
func haOptions(t *testing.T, id, joinAddr, dataDir string) Options {
	return Options{NodeID: id, HTTPAddr: "127.0.0.1:0", JoinAddr: joinAddr, DataDir: dataDir,
		LeaseTTL: 2 * time.Second, PartitionCount: 16, StartTimeout: 45 * time.Second, EtcdDialTimeout: 2 * time.Second,
		unsafeNoFsync: true, embeddedHeartbeat: 50 * time.Millisecond}
}

func startHA(t *testing.T, o Options) *ClusterKit {
	t.Helper()
	ck, err := NewClusterKit(o)
	if err != nil {
		t.Fatal(err)
	}
	if err := ck.Start(); err != nil {
		t.Fatalf("start %s: %v", o.NodeID, err)
	}
	return ck
}

// memberRecords returns the etcd-members/ records as node ID -> member ID.
func memberRecords(t *testing.T, ck *ClusterKit) map[string]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := ck.env.client.Get(ctx, ck.env.schema.EtcdMembersPrefix(), clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, kv := range resp.Kvs {
		var rec state.EtcdMember
		if err := json.Unmarshal(kv.Value, &rec); err != nil {
			t.Fatalf("%s: %v", kv.Key, err)
		}
		out[rec.NodeID] = rec.MemberID
	}
	return out
}

// Five nodes on embedded etcd, four of them joining at once: exactly three become etcd members
// (each added as a learner and promoted), the others are clients; every node knows all three
// members' endpoints. A second process under a member's node ID is refused. A member node
// decommissioned removes its etcd member and its data, and a client node takes its place. The
// bootstrap node crashing leaves a cluster that publishes a map without it, and a client node
// restarting meanwhile starts from the endpoints it remembers; restarted with its DataDir the
// bootstrap node is the same etcd member and is listed again.
func TestEmbeddedHA(t *testing.T) {
	dirs := map[string]string{}
	for i := 1; i <= 5; i++ {
		dirs[fmt.Sprintf("node-%d", i)] = t.TempDir()
	}
	nodes := map[string]*ClusterKit{}
	defer func() {
		stopAllAtOnce(nodes)
	}()
	began := time.Now()
	nodes["node-1"] = startHA(t, haOptions(t, "node-1", "", dirs["node-1"]))
	t.Logf("bootstrap node started in %v", time.Since(began).Round(time.Millisecond))
	join := nodes["node-1"].AdvertiseAddr()
	var joining []Options
	for i := 2; i <= 5; i++ {
		id := fmt.Sprintf("node-%d", i)
		joining = append(joining, haOptions(t, id, join, dirs[id]))
	}
	startAtOnce(t, nodes, began, joining)

	members := checkMembers(t, nodes, 3)
	waitAgree(t, nodes, slices.Sorted(maps.Keys(nodes)))
	t.Logf("5 nodes agree after %v", time.Since(began).Round(time.Millisecond))

	// A second process under a member's node ID, without its DataDir, is refused and removes
	// nothing.
	var memberID string
	for id := range members {
		if id != "node-1" {
			memberID = id
		}
	}
	dup, err := NewClusterKit(haOptions(t, memberID, join, t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	if err := dup.Start(); err == nil || !strings.Contains(err.Error(), "already runs etcd member") {
		t.Errorf("a second %s started: %v", memberID, err)
	}
	dup.Stop()
	if after := etcdtest.Members(t, nodes["node-1"].env.client); !maps.Equal(after, members) {
		t.Errorf("members after a duplicate node ID tried to join: %v, before %v", after, members)
	}

	// A member node leaves for good: its etcd member goes, a client node takes its place.
	leaving := memberID
	began = time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := nodes[leaving].Decommission(ctx); err != nil {
		t.Fatalf("decommission %s: %v", leaving, err)
	}
	delete(nodes, leaving)
	t.Logf("%s decommissioned in %v", leaving, time.Since(began).Round(time.Millisecond))
	if embed.HasData(filepath.Join(dirs[leaving], "etcd")) {
		t.Errorf("%s still has etcd data", leaving)
	}
	waitAgree(t, nodes, slices.Sorted(maps.Keys(nodes)))
	waitFor(t, 30*time.Second, "a client node in the free member place", func() error {
		after, err := etcdtest.MemberList(nodes["node-1"].env.client)
		if err != nil {
			return err
		}
		if _, ok := after[leaving]; ok || len(after) != 3 {
			return fmt.Errorf("members %v", after)
		}
		if recs := memberRecords(t, nodes["node-1"]); !maps.Equal(recs, after) {
			return fmt.Errorf("records %v, members %v", recs, after)
		}
		for id, ck := range nodes {
			if _, ok := after[id]; ok != (ck.members.current() != nil) {
				return fmt.Errorf("%s: member %v, in the list %v", id, ck.members.current() != nil, ok)
			}
		}
		return nil
	})
	members = etcdtest.Members(t, nodes["node-1"].env.client)
	t.Logf("members after the decommission: %v (%v after it began)", slices.Sorted(maps.Keys(members)),
		time.Since(began).Round(time.Millisecond))

	// The bootstrap node crashes: the others carry on without it. (Its embedded etcd takes
	// seconds to close, waiting for the other nodes' streams: let it, meanwhile.)
	idBefore := members["node-1"]
	crashed := time.Now()
	closed := make(chan struct{})
	go func(ck *ClusterKit) { defer close(closed); ck.shutdown(stopCrash) }(nodes["node-1"])
	delete(nodes, "node-1")
	waitAgree(t, nodes, slices.Sorted(maps.Keys(nodes)))
	t.Logf("map without the crashed bootstrap node after %v", time.Since(crashed).Round(time.Millisecond))

	// A client node restarting with its DataDir while the node at its JoinAddr is down starts
	// from the etcd endpoints it remembers.
	var client string
	for id := range nodes {
		if _, ok := members[id]; !ok {
			client = id
		}
	}
	nodes[client].shutdown(stopCrash)
	nodes[client] = startHA(t, haOptions(t, client, join, dirs[client]))
	if nodes[client].members.current() != nil {
		t.Errorf("%s became an etcd member on its restart; the member places are taken", client)
	}

	// Back with its DataDir (and so its ports), the bootstrap node is the same member again.
	<-closed
	began = time.Now()
	nodes["node-1"] = startHA(t, haOptions(t, "node-1", "", dirs["node-1"]))
	if got := strconv.FormatUint(nodes["node-1"].members.current().ID(), 16); got != idBefore {
		t.Errorf("restarted node-1 runs member %s, was %s", got, idBefore)
	}
	if after := etcdtest.Members(t, nodes["node-1"].env.client); !maps.Equal(after, members) {
		t.Errorf("members after the restart %v, before %v", after, members)
	}
	waitAgree(t, nodes, slices.Sorted(maps.Keys(nodes)))
	t.Logf("node-1 restarted and listed again after %v", time.Since(began).Round(time.Millisecond))
}

// With EmbeddedMembers 5, six nodes: five run an etcd member, the sixth is a client. Two member
// nodes crash at once, the bootstrap node and another: the four survivors publish a map without
// them one LeaseTTL later, and once both crashed members have closed, three of the five members
// are left and the cluster still takes writes: a node joins, as a client, and the map takes it
// in. It takes about 25s, with -race too: 11s for the joins (they wait for one another, as etcd
// refuses a membership change for 5s after a member connects), 7s for the crashed members to
// close, 6s to stop the others.
func TestEmbeddedHAFiveMembers(t *testing.T) {
	opts := func(id, joinAddr string) Options {
		o := haOptions(t, id, joinAddr, t.TempDir())
		o.EmbeddedMembers = 5
		return o
	}
	nodes := map[string]*ClusterKit{}
	var closing sync.WaitGroup
	defer func() {
		closing.Wait()
		stopAllAtOnce(nodes)
	}()
	began := time.Now()
	nodes["node-1"] = startHA(t, opts("node-1", ""))
	join := nodes["node-1"].AdvertiseAddr()
	var joining []Options
	for i := 2; i <= 6; i++ {
		joining = append(joining, opts(fmt.Sprintf("node-%d", i), join))
	}
	startAtOnce(t, nodes, began, joining)
	members := checkMembers(t, nodes, 5)
	waitAgree(t, nodes, slices.Sorted(maps.Keys(nodes)))
	t.Logf("6 nodes agree after %v", time.Since(began).Round(time.Millisecond))

	// The bootstrap node and the first other member node (by ID) crash at once.
	crashed := []string{"node-1"}
	for _, id := range slices.Sorted(maps.Keys(members)) {
		if id != "node-1" {
			crashed = append(crashed, id)
			break
		}
	}
	epoch, leader := nodes["node-1"].Epoch(), nodes["node-1"].Leader()
	crashedAt := time.Now()
	for _, id := range crashed {
		ck := nodes[id]
		delete(nodes, id)
		closing.Go(func() { ck.shutdown(stopCrash) })
	}
	survivors := slices.Sorted(maps.Keys(nodes))
	bound := haOptions(t, "", "", "").LeaseTTL + 3*time.Second
	waitAgreeWithin(t, bound, nodes, survivors)
	t.Logf("%v crashed (the leader was %s): the map without them after %v", crashed, leader,
		time.Since(crashedAt).Round(time.Millisecond))
	if got := nodes[survivors[0]].Epoch(); got <= epoch {
		t.Errorf("epoch %d after the crash, %d before", got, epoch)
	}

	// An embedded member closes its client connections before it stops taking part in raft, so
	// the map above may have been committed with the crashed members still voting. Once they are
	// closed, a join needs three of the five members.
	closing.Wait()
	t.Logf("crashed members closed after %v", time.Since(crashedAt).Round(time.Millisecond))
	for _, id := range survivors {
		resp, body := httpGet(t, "http://"+nodes[id].AdvertiseAddr()+"/health", nil)
		if resp.StatusCode != http.StatusOK {
			t.Errorf("%s: GET /health: %s %s", id, resp.Status, body)
		}
	}
	o := opts("node-7", nodes[survivors[0]].AdvertiseAddr())
	o.StartTimeout = 15 * time.Second
	joined := time.Now()
	nodes["node-7"] = startHA(t, o)
	if nodes["node-7"].members.current() != nil {
		t.Error("node-7 runs an etcd member; the five member places are taken")
	}
	waitAgree(t, nodes, slices.Sorted(maps.Keys(nodes)))
	t.Logf("node-7 joined and agreed on in %v", time.Since(joined).Round(time.Millisecond))
}

// startAtOnce starts a node for each of opts at once and adds it to nodes, and stops the test
// unless all of them started. began is when the test began, for the log.
func startAtOnce(t *testing.T, nodes map[string]*ClusterKit, began time.Time, opts []Options) {
	t.Helper()
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, o := range opts {
		wg.Go(func() {
			ck, err := NewClusterKit(o)
			if err != nil {
				t.Error(err)
				return
			}
			err = ck.Start()
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				t.Errorf("start %s: %v", o.NodeID, err)
				ck.Stop()
				return
			}
			nodes[o.NodeID] = ck
			t.Logf("%s started after %v (etcd member: %v)", o.NodeID, time.Since(began).Round(time.Millisecond), ck.members.current() != nil)
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
}

// checkMembers checks, on a cluster whose member places are all taken, that etcd has want voting
// members, node-1 among them, as the etcd-members records say; that exactly the listed nodes run
// a member; and that every node points its etcd client at all of them and lists them in
// GET /cluster/join. It returns the member list.
func checkMembers(t *testing.T, nodes map[string]*ClusterKit, want int) map[string]string {
	t.Helper()
	// A member's record under etcd-members/ and every node's view follow its promotion.
	began := time.Now()
	waitFor(t, time.Duration(want)*10*time.Second, fmt.Sprintf("%d voting etcd members", want), func() error {
		members, err := etcdtest.MemberList(nodes["node-1"].env.client)
		if err != nil {
			return err
		}
		voting := 0
		for _, m := range members {
			if !strings.HasPrefix(m, "learner") {
				voting++
			}
		}
		if voting != want {
			return fmt.Errorf("etcd members %v", members)
		}
		for id, ck := range nodes {
			if _, ok := members[id]; ok && ck.members.current() == nil {
				return fmt.Errorf("%s is in the member list but does not know it yet", id)
			}
		}
		// The record under etcd-members/ follows the promotion.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		recs, err := nodes["node-1"].members.memberRecords(ctx)
		if err != nil {
			return err
		}
		if !maps.Equal(recs, members) {
			return fmt.Errorf("etcd-members records %v, member list %v", recs, members)
		}
		return nil
	})
	t.Logf("%d etcd members after %v more", want, time.Since(began).Round(time.Millisecond))
	members := etcdtest.Members(t, nodes["node-1"].env.client)
	if len(members) != want || members["node-1"] == "" {
		t.Fatalf("etcd members %v: want node-1 and %d others", members, want-1)
	}
	for id, m := range members {
		if strings.HasPrefix(m, "learner") {
			t.Errorf("%s is still a learner", id)
		}
	}
	if recs := memberRecords(t, nodes["node-1"]); !maps.Equal(recs, members) {
		t.Errorf("etcd-members records %v, member list %v", recs, members)
	}
	for id, ck := range nodes {
		_, isMember := members[id]
		if (ck.members.current() != nil) != isMember {
			t.Errorf("%s: runs a member: %v, in the member list: %v", id, ck.members.current() != nil, isMember)
		}
		waitFor(t, 10*time.Second, id+" knows every member's endpoint", func() error {
			if n := len(ck.env.client.Endpoints()); n != want {
				return fmt.Errorf("%d endpoints: %v", n, ck.env.client.Endpoints())
			}
			return nil
		})
		resp, body := httpGet(t, "http://"+ck.AdvertiseAddr()+"/cluster/join", nil)
		var info wire.JoinInfo
		if err := json.Unmarshal(body, &info); err != nil || len(info.EtcdEndpoints) != want {
			t.Errorf("%s: GET /cluster/join: %s %s", id, resp.Status, body)
		}
	}
	return members
}

// stopAllAtOnce crash-stops every node in parallel: one after another, each member would stop
// only after etcd's request timeout (about 6s), for it lets its gRPC clients' streams end first.
func stopAllAtOnce(nodes map[string]*ClusterKit) {
	var wg sync.WaitGroup
	for _, ck := range nodes {
		wg.Go(func() { ck.shutdown(stopCrash) })
	}
	wg.Wait()
}

// waitAgree waits until every node holds the same map, listing exactly ids.
func waitAgree(t *testing.T, nodes map[string]*ClusterKit, ids []string) {
	t.Helper()
	waitAgreeWithin(t, 20*time.Second, nodes, ids)
}

// waitAgreeWithin is waitAgree failing the test after within.
func waitAgreeWithin(t *testing.T, within time.Duration, nodes map[string]*ClusterKit, ids []string) {
	t.Helper()
	waitFor(t, within, fmt.Sprintf("a map of %v on every node", ids), func() error {
		var epoch uint64
		for id, ck := range nodes {
			s := ck.maps.snapshot()
			if s == nil {
				return fmt.Errorf("%s has no map", id)
			}
			if got := slices.Sorted(maps.Keys(s.nodes)); !slices.Equal(got, ids) {
				return fmt.Errorf("%s lists %v at epoch %d", id, got, s.epoch)
			}
			if epoch != 0 && s.epoch != epoch {
				return fmt.Errorf("epochs differ: %d and %d", s.epoch, epoch)
			}
			epoch = s.epoch
		}
		return nil
	})
}

// A node joining through JoinAddr never adds itself to an etcd that no node of the cluster
// built, even when the cluster's config asks for embedded members, as after the state of an
// embedded cluster was restored into an external etcd: it stays a client and changes nothing.
func TestForeignEtcdIsNotJoined(t *testing.T) {
	srv := etcdtest.Start(t)
	a := startHA(t, Options{NodeID: "node-a", HTTPAddr: "127.0.0.1:0", EtcdEndpoints: srv.Member.Endpoints(),
		DataDir: t.TempDir(), LeaseTTL: 2 * time.Second, PartitionCount: 16})
	defer a.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := srv.Client.Get(ctx, a.env.schema.Config())
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("read config: %v %v", resp, err)
	}
	var config map[string]any
	if err := json.Unmarshal(resp.Kvs[0].Value, &config); err != nil {
		t.Fatal(err)
	}
	config["embedded_members"] = 3
	b, _ := json.Marshal(config)
	if _, err := srv.Client.Put(ctx, a.env.schema.Config(), string(b)); err != nil {
		t.Fatal(err)
	}
	before := etcdtest.Members(t, srv.Client)

	joiner := startHA(t, haOptions(t, "node-b", a.AdvertiseAddr(), t.TempDir()))
	defer joiner.Stop()
	if joiner.members.current() != nil {
		t.Error("the joining node runs an etcd member")
	}
	if after := etcdtest.Members(t, srv.Client); !maps.Equal(after, before) {
		t.Errorf("etcd members %v, before the join %v", after, before)
	}
}
