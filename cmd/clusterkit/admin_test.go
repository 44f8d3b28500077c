package main

import (
	"bytes"
	"context"
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/clusterkit-go/clusterkit/internal/etcdtest"
	"github.com/clusterkit-go/clusterkit/internal/keys"
	"github.com/clusterkit-go/clusterkit/internal/mapstore"
	"github.com/clusterkit-go/clusterkit/internal/nextmap"
	"github.com/clusterkit-go/clusterkit/internal/partition"
	"github.com/clusterkit-go/clusterkit/internal/state"
)

// settledSnapshot is a cluster of ids placed from scratch with replication rf, and the admin
// actions given, read at t0.
func settledSnapshot(t *testing.T, rf int, ids []string, actions ...state.AdminAction) *snapshot {
	t.Helper()
	r, err := nextmap.Next(nextmap.Input{Nodes: records(ids...), Leader: ids[0], PartitionCount: 8, ReplicationFactor: rf, Now: t0})
	if err != nil {
		t.Fatal(err)
	}
	snap := &snapshot{name: "default", config: &state.Config{PartitionCount: 8, ReplicationFactor: rf}, m: r.Map,
		records: records(ids...), leader: ids[0], now: t0}
	for _, a := range actions {
		snap.admin = append(snap.admin, adminRecord{Key: keys.New("default").Admin(a.Kind, a.Node), AdminAction: a})
	}
	return snap
}

func drain(node string) state.AdminAction {
	return state.AdminAction{Kind: state.AdminDrain, Node: node}
}
func cordon(node string) state.AdminAction {
	return state.AdminAction{Kind: state.AdminCordon, Node: node}
}

// A drain or a cordon is refused when it would leave fewer usable nodes (live, not draining,
// drained or cordoned) than min(live nodes, replication factor), saying how many would remain.
func TestUnusableRefusal(t *testing.T) {
	tests := []struct {
		name    string
		rf      int
		ids     []string
		state   map[string]string // node records' states
		actions []state.AdminAction
		kind    string
		node    string
		want    string // "" for no refusal
	}{
		{name: "one of three", rf: 2, ids: []string{"a", "b", "c"}, kind: state.AdminDrain, node: "c"},
		{name: "second of three", rf: 2, ids: []string{"a", "b", "c"}, actions: []state.AdminAction{drain("c")},
			kind: state.AdminDrain, node: "b",
			want: "drain b would leave 1 usable node (a) of 3 live, fewer than the 2 the placement needs (replication factor 2, or every live node when fewer); not usable already: c drained"},
		{name: "cordon counts as a drain", rf: 2, ids: []string{"a", "b", "c"}, actions: []state.AdminAction{cordon("a")},
			kind: state.AdminCordon, node: "b", want: "cordon b would leave 1 usable node (c) of 3 live"},
		{name: "again on a drained node", rf: 2, ids: []string{"a", "b", "c"}, actions: []state.AdminAction{drain("c"), drain("b")},
			kind: state.AdminCordon, node: "c"},
		{name: "fewer nodes than replicas", rf: 3, ids: []string{"a", "b"}, kind: state.AdminDrain, node: "a",
			want: "drain a would leave 1 usable node (b) of 2 live, fewer than the 2"},
		{name: "the only node", rf: 2, ids: []string{"a"}, kind: state.AdminDrain, node: "a",
			want: "drain a would leave 0 usable nodes (-) of 1 live, fewer than the 1"},
		{name: "a draining node is not usable", rf: 2, ids: []string{"a", "b", "c"}, state: map[string]string{"b": state.NodeDraining},
			kind: state.AdminDrain, node: "a", want: "would leave 1 usable node (c) of 3 live, fewer than the 2 the placement needs (replication factor 2, or every live node when fewer); not usable already: b draining"},
		{name: "a leaving node is not live", rf: 2, ids: []string{"a", "b", "c"}, state: map[string]string{"c": state.NodeLeaving},
			kind: state.AdminDrain, node: "a", want: "would leave 1 usable node (b) of 2 live"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			snap := settledSnapshot(t, tt.rf, tt.ids, tt.actions...)
			for id, st := range tt.state {
				rec := snap.records[id]
				rec.State = st
				snap.records[id] = rec
			}
			got := snap.unusableRefusal(tt.kind, tt.node)
			if tt.want == "" && got != "" || !strings.Contains(got, tt.want) {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

// A move is refused to a node that may not take the partition, and with R=1 away from its
// only holder.
func TestMoveRefusal(t *testing.T) {
	snap := settledSnapshot(t, 2, []string{"a", "b", "c", "e"}, drain("b"), cordon("e"))
	d := records("d")["d"]
	d.State = state.NodeDraining
	snap.records["d"] = d
	tests := []struct{ node, want string }{
		{"a", ""},
		{"c", ""},
		{"b", "node b is drained, to hold no partition (clusterkit uncordon b ends that)"},
		{"e", "node e is cordoned, to take no partition (clusterkit uncordon e ends that)"},
		{"d", "node d is draining"},
		{"x", "node x has no lease (no record under nodes/): the leader ignores a pin to a node that is not live"},
	}
	for _, tt := range tests {
		if got := snap.moveRefusal(0, tt.node); tt.want == "" && got != "" || !strings.Contains(got, tt.want) {
			t.Errorf("move to %s: got %q, want %q", tt.node, got, tt.want)
		}
	}

	one := settledSnapshot(t, 1, []string{"a", "b"})
	holder := one.m.Partitions[3].Holders[0]
	other := map[string]string{"a": "b", "b": "a"}[holder]
	want := "partition-3 has a single holder, " + holder + ", and the replication factor is 1: the move copies it to " + other +
		" and " + holder + " releases it, so with R=1 the copy on " + other + " would be the only one"
	if got := one.moveRefusal(3, other); got != want {
		t.Errorf("R=1 move away from the only holder: got %q, want %q", got, want)
	}
	if got := one.moveRefusal(3, holder); got != "" {
		t.Errorf("R=1 move to the holder itself: got %q, want none", got)
	}
}

// A node must be in the map or have a record.
func TestCheckKnown(t *testing.T) {
	snap := settledSnapshot(t, 2, []string{"a", "b"})
	snap.records["n"] = records("n")["n"] // has a lease, not in the map yet
	delete(snap.records, "b")             // in the map, lease gone
	snap.m.Absent = map[string]state.Absent{"z": {Since: t0}}
	for _, id := range []string{"a", "b", "n", "z"} {
		if err := snap.checkKnown(id); err != nil {
			t.Errorf("%s: %v", id, err)
		}
	}
	err := snap.checkKnown("q")
	if want := `node "q" is not in the map of epoch 1 and has no record under nodes/ (known nodes: a,b,n,z)`; err == nil || err.Error() != want {
		t.Errorf("unknown node: %v, want %q", err, want)
	}
}

// A maintenance's record is named by its reason, the same way every time: a readable slug and a
// hash, a valid key segment.
func TestMaintenanceName(t *testing.T) {
	valid := regexp.MustCompile(`^([a-z0-9]+(-[a-z0-9]+)*-)?[0-9a-f]{8}$`)
	names := map[string]string{}
	for _, reason := range []string{"kernel upgrade", "Kernel upgrade!", "kernel  upgrade", "   ", "日本語", "a/b/../c",
		strings.Repeat("long reason ", 100)} {
		name := maintenanceName(reason)
		if name != maintenanceName(reason) || !valid.MatchString(name) || len(name) > 50 || keys.ValidNodeID(name) != nil {
			t.Errorf("reason %q: name %q, want the same each time, a slug and a hash, 50 bytes at most", reason, name)
		}
		if other, ok := names[name]; ok {
			t.Errorf("reasons %q and %q share the name %q", reason, other, name)
		}
		names[name] = reason
	}
	if name := maintenanceName("kernel upgrade"); !strings.HasPrefix(name, "kernel-upgrade-") {
		t.Errorf("name %q, want it to start with the reason's slug", name)
	}
}

// The states of drained and cordoned nodes, and the weight an operator set.
func TestNodeStatesOfAdminActions(t *testing.T) {
	w := state.AdminAction{Kind: state.AdminWeight, Node: "a", Weight: 5}
	snap := settledSnapshot(t, 2, []string{"a", "b", "c", "d"}, drain("b"), cordon("c"), cordon("d"), drain("d"), w)
	got := map[string]nodeInfo{}
	for _, n := range snap.nodes().Nodes {
		got[n.ID] = n
	}
	want := map[string]string{"a": stateServing, "b": stateDrained, "c": stateCordoned, "d": stateDrained}
	for id, st := range want {
		if got[id].State != st {
			t.Errorf("node %s: state %q, want %q", id, got[id].State, st)
		}
	}
	if got["a"].Weight != 5 || got["b"].Weight != 1 {
		t.Errorf("weights a %d, b %d; want 5 (the operator's) and 1", got["a"].Weight, got["b"].Weight)
	}
	if s, want := adminSummary(snap.admin), "drained b, d; cordoned c, d; weight a=5"; s != want {
		t.Errorf("summary %q, want %q", s, want)
	}
}

// The check and the write see the same cluster: when a map is published or an admin record is
// written between them, the action is checked again against the new state, once; a cluster
// that changes twice fails the command, and nothing is written.
func TestWriteRace(t *testing.T) {
	srv := etcdtest.Start(t)
	s := keys.New("default")
	ctx := context.Background()
	cfg := state.Config{ClusterID: "c0ffee", PartitionCount: 8, ReplicationFactor: 2,
		Hash: state.HashConfig{Algorithm: state.HashMD5, Modulo: 8, Format: partition.Format}}
	put := func(k string, v any) {
		t.Helper()
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := srv.Client.Put(ctx, k, string(b)); err != nil {
			t.Fatal(err)
		}
	}
	put(s.Config(), cfg)
	nodes := records("a", "b", "c")
	for id, n := range nodes {
		put(s.Node(id), n)
	}
	r, err := nextmap.Next(nextmap.Input{Nodes: nodes, Leader: "a", PartitionCount: 8, ReplicationFactor: 2, Now: t0})
	if err != nil {
		t.Fatal(err)
	}
	enc, err := state.EncodeNext(nil, r.Map, state.MaxValue)
	if err != nil {
		t.Fatal(err)
	}
	before, head := enc.Writes(s, r.Map.Epoch, state.MaxValue)
	for _, w := range [][]state.Write{before, head} {
		if _, err := srv.Client.Txn(ctx).Then(mapstore.Ops(w)...).Commit(); err != nil {
			t.Fatal(err)
		}
	}
	republish := func() {
		resp, err := srv.Client.Get(ctx, s.Partitions())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := srv.Client.Put(ctx, s.Partitions(), string(resp.Kvs[0].Value)); err != nil {
			t.Fatal(err)
		}
	}
	admin := func() map[string]state.AdminAction {
		resp, err := srv.Client.Get(ctx, s.AdminPrefix(), clientv3.WithPrefix())
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]state.AdminAction{}
		for _, kv := range resp.Kvs {
			a, err := state.DecodeAdmin(kv.Value, 8)
			if err != nil {
				t.Fatal(err)
			}
			out[strings.TrimPrefix(string(kv.Key), s.AdminPrefix())] = a
		}
		return out
	}
	e := env{"CLUSTERKIT_ENDPOINTS": strings.Join(srv.Member.Endpoints(), ",")}
	runWith := func(hook func(attempt int), args ...string) (int, string, string) {
		attempts := 0
		g := &globals{lookupEnv: e.lookup, beforeWrite: func() { attempts++; hook(attempts) }}
		var out, errOut bytes.Buffer
		status := g.run(ctx, args, &out, &errOut)
		return status, out.String(), errOut.String()
	}

	status, _, stderr := runWith(func(int) { republish() }, "drain", "c")
	if want := "clusterkit: the cluster changed between the check and the write, twice"; status != exitState || !strings.HasPrefix(stderr, want) {
		t.Errorf("a map published before every write: status %d, stderr %q; want %d and %q", status, stderr, exitState, want)
	}
	if got := admin(); len(got) != 0 {
		t.Errorf("written after the cluster changed twice: %v", got)
	}

	calls := 0
	status, stdout, stderr := runWith(func(n int) {
		calls = n
		if n == 1 {
			republish()
		}
	}, "drain", "c", "--by", "tester", "--reason", "disk")
	if got := admin()["drain/c"]; status != exitOK || calls != 2 || got.Node != "c" || got.By != "tester" || got.Reason != "disk" ||
		time.Since(got.At) > time.Minute || !strings.Contains(stdout, "Wrote /clusterkit/default/admin/drain/c at revision ") {
		t.Errorf("a map published before the first write: status %d after %d checks, stdout %q, stderr %q, record %+v; want the drain written on the second",
			status, calls, stdout, stderr, got)
	}

	// Another operator drains b between the check and the write of a drain of a: the second
	// check sees it, and refuses.
	if status, stdout, _ := runIn(t, e, "uncordon", "c"); status != exitOK || !strings.Contains(stdout, "Deleted /clusterkit/default/admin/drain/c at revision ") {
		t.Fatalf("uncordon c: status %d, stdout %q", status, stdout)
	}
	status, _, stderr = runWith(func(n int) {
		if n == 1 {
			put(s.Admin(state.AdminDrain, "b"), state.AdminAction{Kind: state.AdminDrain, Node: "b", At: t0})
		}
	}, "drain", "a")
	if want := "clusterkit: refused: drain a would leave 1 usable node (c) of 3 live"; status != exitUsage || !strings.HasPrefix(stderr, want) {
		t.Errorf("a drain written between the check and the write: status %d, stderr %q; want %d and %q", status, stderr, exitUsage, want)
	}
	if _, ok := admin()["drain/a"]; ok {
		t.Error("the drain of a was written")
	}
}

// A record says who wrote it: --by or user@host, and the etcd user of --user, the one name etcd
// checked (never its password).
func TestAuthor(t *testing.T) {
	tests := []struct {
		user, by, want string
	}{
		{"", "", operator()},
		{"", "  tester ", "tester"},
		{"admin:secret", "", operator() + " (etcd user admin)"},
		{"admin", "tester", "tester (etcd user admin)"},
	}
	for _, tt := range tests {
		g := &globals{user: tt.user}
		if got := g.author(tt.by); got != tt.want || strings.Contains(got, "secret") {
			t.Errorf("--user %q --by %q: %q, want %q", tt.user, tt.by, got, tt.want)
		}
	}
	if op := operator(); op == "" || op == "unknown" {
		t.Errorf("operator() = %q; want user@host", op)
	}
}
