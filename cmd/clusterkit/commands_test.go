package main

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/clusterkit-go/clusterkit/internal/etcdtest"
	"github.com/clusterkit-go/clusterkit/internal/proctest"
	"github.com/clusterkit-go/clusterkit/internal/wiretest"
)

// The JSON documents as each command's help documents them, declared here on their own: the
// tests decode strictly, so a field renamed, added or dropped in the command fails here.
type (
	jsonCause struct {
		Reason string   `json:"reason"`
		Nodes  []string `json:"nodes"`
	}
	jsonStatus struct {
		Cluster           string `json:"cluster"`
		ClusterID         string `json:"cluster_id"`
		Prefix            string `json:"prefix"`
		PartitionCount    int    `json:"partition_count"`
		ReplicationFactor int    `json:"replication_factor"`
		Revision          int64  `json:"revision"`
		Map               *struct {
			Epoch     uint64    `json:"epoch"`
			Leader    string    `json:"leader"`
			UpdatedAt time.Time `json:"updated_at"`
			Cause     jsonCause `json:"cause"`
		} `json:"map"`
		Leader         string            `json:"leader"`
		Nodes          int               `json:"nodes"`
		NodesWithLease int               `json:"nodes_with_lease"`
		PendingCopies  int               `json:"pending_copies"`
		QueuedCopies   int               `json:"queued_copies"`
		LeaseGone      []string          `json:"lease_gone"`
		Absent         []string          `json:"absent"`
		Admin          []jsonAdminRecord `json:"admin"`
		Endpoints      []struct {
			Endpoint    string `json:"endpoint"`
			Healthy     bool   `json:"healthy"`
			Error       string `json:"error"`
			MemberID    string `json:"member_id"`
			Version     string `json:"version"`
			DBSize      int64  `json:"db_size"`
			DBSizeInUse int64  `json:"db_size_in_use"`
			IsLeader    bool   `json:"is_leader"`
			RaftTerm    uint64 `json:"raft_term"`
		} `json:"endpoints"`
	}
	jsonNodes struct {
		Epoch uint64 `json:"epoch"`
		Nodes []struct {
			ID        string `json:"id"`
			Address   string `json:"address"`
			Zone      string `json:"zone"`
			Weight    int    `json:"weight"`
			State     string `json:"state"`
			InMap     bool   `json:"in_map"`
			Lease     bool   `json:"lease"`
			Primaries int    `json:"primaries"`
			Replicas  int    `json:"replicas"`
			PendingIn int    `json:"pending_in"`
			Queued    int    `json:"queued"`
		} `json:"nodes"`
	}
	jsonPending struct {
		Node    string    `json:"node"`
		Since   uint64    `json:"since"`
		Started time.Time `json:"started"`
		Attempt int       `json:"attempt"`
	}
	jsonPartition struct {
		Partition    string        `json:"partition"`
		Index        int           `json:"index"`
		Holders      []string      `json:"holders"`
		PrimaryEpoch uint64        `json:"primary_epoch"`
		Pending      []jsonPending `json:"pending"`
		Target       []string      `json:"target"`
	}
	jsonPartitions struct {
		Epoch      uint64          `json:"epoch"`
		Partitions []jsonPartition `json:"partitions"`
	}
	jsonRoute struct {
		Epoch  uint64 `json:"epoch"`
		Routes []struct {
			Key          string   `json:"key"`
			Partition    string   `json:"partition"`
			Index        int      `json:"index"`
			Primary      string   `json:"primary"`
			Replicas     []string `json:"replicas"`
			Pending      []string `json:"pending"`
			PrimaryEpoch uint64   `json:"primary_epoch"`
		} `json:"routes"`
	}
	jsonExplain struct {
		Epoch        uint64   `json:"epoch"`
		Partition    string   `json:"partition"`
		Index        int      `json:"index"`
		Holders      []string `json:"holders"`
		PrimaryEpoch uint64   `json:"primary_epoch"`
		Pending      []struct {
			jsonPending
			MapsSince uint64 `json:"maps_since"`
			Age       string `json:"age"`
		} `json:"pending"`
		Target    []string `json:"target"`
		Moving    bool     `json:"moving"`
		From      []string `json:"from"`
		To        []string `json:"to"`
		Placement struct {
			LiveNodes      []string `json:"live_nodes"`
			Holders        []string `json:"holders"`
			BalanceHolders []string `json:"balance_holders"`
			SameAsMap      bool     `json:"same_as_map"`
			Rule           string   `json:"rule"`
			Steps          []string `json:"steps"`
		} `json:"placement"`
		Constraints []struct {
			Constraint string            `json:"constraint"`
			Effect     string            `json:"effect"`
			Node       string            `json:"node"`
			Blocked    string            `json:"blocked"`
			Why        string            `json:"why"`
			Records    []jsonAdminRecord `json:"records"`
		} `json:"constraints"`
	}
	jsonPlan struct {
		Epoch  uint64 `json:"epoch"`
		Change string `json:"change"`
		Node   struct {
			ID     string `json:"id"`
			Zone   string `json:"zone"`
			Weight int    `json:"weight"`
		} `json:"node"`
		PartitionCount   int `json:"partition_count"`
		PartitionsMoving int `json:"partitions_moving"`
		ReplicaCopies    int `json:"replica_copies"`
		ReplicasReleased int `json:"replicas_released"`
		PrimaryMoves     int `json:"primary_moves"`
		Nodes            []struct {
			ID              string `json:"id"`
			Zone            string `json:"zone"`
			ReplicasBefore  int    `json:"replicas_before"`
			Replicas        int    `json:"replicas"`
			CopiesIn        int    `json:"copies_in"`
			Released        int    `json:"released"`
			PrimariesBefore int    `json:"primaries_before"`
			Primaries       int    `json:"primaries"`
		} `json:"nodes"`
		Moves []struct {
			Partition string   `json:"partition"`
			Index     int      `json:"index"`
			Before    []string `json:"before"`
			After     []string `json:"after"`
		} `json:"moves"`
	}
	jsonWatchLine struct {
		Epoch     uint64    `json:"epoch"`
		UpdatedAt time.Time `json:"updated_at"`
		Cause     jsonCause `json:"cause"`
		Leader    string    `json:"leader"`
		Nodes     []string  `json:"nodes"`
		Pending   int       `json:"pending"`
		Revision  int64     `json:"revision"`
	}
)

// Every command against one real cluster of clusterkit-node processes: what each prints, as a
// table and as JSON, is what the nodes serve in GET /cluster; a planned join and leave move
// exactly what the join and the leave then move; watch prints every map published meanwhile.
// Each command runs as a process for its JSON document; tables and error messages are read from
// the same code run in the test's process, which saves a process start (seconds, for a
// race-built binary on a busy machine) per check.
func TestCommands(t *testing.T) {
	began := time.Now()
	c := startCluster(t)
	ids := []string{"node-1", "node-2", "node-3"}
	view := c.stable(t, ids...)
	cl := view.Cluster
	zones := map[string]string{"node-1": "a", "node-2": "b", "node-3": "c", "node-4": "d"}
	// Each node's primaries and replicas in GET /cluster.
	primaries, replicas := map[string]int{}, map[string]int{}
	for _, p := range cl.PartitionMap {
		primaries[p.PrimaryNode]++
		for _, r := range p.ReplicaNodes {
			replicas[r]++
		}
	}

	// The commands that only read run at once; the group returns when they all have.
	t.Run("read", func(t *testing.T) {
		t.Run("status", func(t *testing.T) {
			t.Parallel()
			var st jsonStatus
			c.cliJSON(t, &st, "status")
			if st.Cluster != "default" || st.ClusterID != cl.ID || st.Prefix != "/clusterkit/default/" ||
				st.PartitionCount != testPartitions || st.ReplicationFactor != testReplication {
				t.Errorf("status says cluster %q (%s) under %s, %d partitions, replication %d; the nodes serve %q (%s)",
					st.Cluster, st.ClusterID, st.Prefix, st.PartitionCount, st.ReplicationFactor, cl.Name, cl.ID)
			}
			if st.Map == nil || st.Map.Epoch != cl.Epoch || st.Map.Leader != cl.Leader || !st.Map.UpdatedAt.Equal(cl.UpdatedAt) ||
				st.Map.Cause.Reason != cl.Cause.Reason || st.Leader != cl.Leader {
				t.Errorf("status says map %+v, leader %q; the nodes serve epoch %d by %s at %v (%s)", st.Map, st.Leader,
					cl.Epoch, cl.Leader, cl.UpdatedAt, cl.Cause.Reason)
			}
			if st.Nodes != 3 || st.NodesWithLease != 3 || st.PendingCopies != 0 || st.QueuedCopies != 0 || len(st.LeaseGone) != 0 ||
				len(st.Absent) != 0 || st.Admin == nil || len(st.Admin) != 0 {
				t.Errorf("status: %d nodes, %d with a lease, %d pending, %d queued, lease gone %v, absent %v, admin %v; want 3, 3, 0, 0, none, none, []",
					st.Nodes, st.NodesWithLease, st.PendingCopies, st.QueuedCopies, st.LeaseGone, st.Absent, st.Admin)
			}
			if len(st.Endpoints) != 1 {
				t.Fatalf("endpoints %+v: want the one given", st.Endpoints)
			}
			if ep := st.Endpoints[0]; ep.Endpoint != c.endpoints || !ep.Healthy || ep.Error != "" || ep.MemberID == "" ||
				ep.DBSize <= 0 || ep.DBSizeInUse <= 0 || ep.Version == "" || !ep.IsLeader || ep.RaftTerm == 0 {
				t.Errorf("endpoint %+v: want %s healthy, etcd's leader, with its member ID, version and database", ep, c.endpoints)
			}

			// The table, with an endpoint where nothing answers: it is reported, the rest is shown.
			dead := fmt.Sprintf("http://127.0.0.1:%d", proctest.FreePort(t))
			out := c.tableOK(t, "status", "--endpoints", c.endpoints+","+dead, "--command-timeout", "1s")
			for _, want := range []string{
				fmt.Sprintf("Map:  epoch %d, written by %s at ", cl.Epoch, cl.Leader),
				"Leader:  " + cl.Leader,
				"Nodes:  3 in the map, 3 with a lease",
				"Pending copies:  0, 0 queued",
				"Lease gone, still in map:  -",
				"Operator actions:  -",
			} {
				if !containsSpaced(out, want) {
					t.Errorf("status lacks %q:\n%s", want, out)
				}
			}
			rows := tableRows(out, "ENDPOINT")
			ep := st.Endpoints[0]
			want := [][]string{
				{c.endpoints, "ok", ep.MemberID, ep.Version, size(ep.DBSize), size(ep.DBSizeInUse), "true", fmt.Sprint(ep.RaftTerm)},
				{dead, "unhealthy:", "no", "answer", "-", "-", "-", "-", "-", "-"},
			}
			if len(rows) != 2 || !slices.Equal(rows[0][:2], want[0][:2]) || !slices.Equal(rows[1], want[1]) {
				t.Errorf("endpoint rows %q, want %q", rows, want)
			}
		})

		t.Run("nodes", func(t *testing.T) {
			t.Parallel()
			var doc jsonNodes
			c.cliJSON(t, &doc, "nodes")
			if doc.Epoch != cl.Epoch || len(doc.Nodes) != 3 {
				t.Fatalf("nodes: epoch %d, %d nodes; want %d and 3", doc.Epoch, len(doc.Nodes), cl.Epoch)
			}
			rows := tableRows(c.tableOK(t, "nodes"), "NODE")
			if len(rows) != 3 {
				t.Fatalf("the table has %d rows: %q", len(rows), rows)
			}
			for i, n := range doc.Nodes {
				want := cl.Nodes[ids[i]]
				if n.ID != want.ID || n.Address != want.IP || n.Zone != zones[n.ID] || n.Weight != want.Weight || n.Weight != 1 ||
					n.State != "serving" || want.State != "" || !n.InMap || !n.Lease || n.Primaries != primaries[n.ID] ||
					n.Replicas != replicas[n.ID] || n.PendingIn != 0 || n.Queued != cl.Queued[n.ID] {
					t.Errorf("nodes lists %+v; the nodes serve %+v, primary of %d, replica of %d, %d queued", n, want,
						primaries[n.ID], replicas[n.ID], cl.Queued[n.ID])
				}
				row := []string{n.ID, n.Address, n.Zone, "1", "serving", strconv.Itoa(n.Primaries), strconv.Itoa(n.Replicas), "0", "0"}
				if !slices.Equal(rows[i], row) {
					t.Errorf("table row %q, want %q", rows[i], row)
				}
			}
		})

		t.Run("partitions", func(t *testing.T) {
			t.Parallel()
			var doc jsonPartitions
			c.cliJSON(t, &doc, "partitions")
			if doc.Epoch != cl.Epoch || len(doc.Partitions) != testPartitions {
				t.Fatalf("partitions: epoch %d, %d partitions", doc.Epoch, len(doc.Partitions))
			}
			rows := tableRows(c.tableOK(t, "partitions"), "PARTITION")
			for i, p := range doc.Partitions {
				want := cl.PartitionMap[fmt.Sprintf("partition-%d", i)]
				if p.Partition != want.ID || p.Index != i || !slices.Equal(p.Holders, holders(want)) ||
					p.PrimaryEpoch != want.PrimaryEpoch || len(p.Pending) != 0 || len(p.Target) != 0 {
					t.Errorf("partitions lists %+v; the nodes serve %+v", p, want)
				}
				row := []string{p.Partition, strings.Join(p.Holders, ","), strconv.FormatUint(p.PrimaryEpoch, 10), "-", "-"}
				if i >= len(rows) || !slices.Equal(rows[i], row) {
					t.Errorf("table row %d: %q, want %q", i, rows[min(i, len(rows)-1)], row)
				}
			}
			var only jsonPartitions
			c.cliJSON(t, &only, "partitions", "--node", "node-3")
			if len(only.Partitions) != primaries["node-3"]+replicas["node-3"] {
				t.Errorf("partitions --node node-3 lists %d; node-3 holds %d", len(only.Partitions), primaries["node-3"]+replicas["node-3"])
			}
			for _, p := range only.Partitions {
				if !slices.Contains(p.Holders, "node-3") {
					t.Errorf("partitions --node node-3 lists %s, held by %v", p.Partition, p.Holders)
				}
			}
		})

		t.Run("route", func(t *testing.T) {
			t.Parallel()
			// The design's key -> partition vectors for 64 partitions.
			vectors := map[string]int{"user:123": 48, "order:100": 46, "product:abc": 18, "test-key": 49}
			keys := slices.Sorted(maps.Keys(vectors))
			var doc jsonRoute
			c.cliJSON(t, &doc, append([]string{"route"}, keys...)...)
			rows := tableRows(c.tableOK(t, append([]string{"route"}, keys...)...), "KEY")
			if doc.Epoch != cl.Epoch || len(doc.Routes) != len(keys) || len(rows) != len(keys) {
				t.Fatalf("route: epoch %d, %d routes, %d rows", doc.Epoch, len(doc.Routes), len(rows))
			}
			for i, r := range doc.Routes {
				want := cl.PartitionMap[fmt.Sprintf("partition-%d", vectors[keys[i]])]
				if r.Key != keys[i] || r.Partition != want.ID || r.Index != vectors[keys[i]] || r.Primary != want.PrimaryNode ||
					!slices.Equal(r.Replicas, want.ReplicaNodes) || len(r.Pending) != 0 || r.PrimaryEpoch != want.PrimaryEpoch {
					t.Errorf("route %s: %+v; the nodes route it to %+v", keys[i], r, want)
				}
				row := []string{r.Key, want.ID, want.PrimaryNode, strings.Join(want.ReplicaNodes, ","), "-",
					strconv.FormatUint(want.PrimaryEpoch, 10), strconv.FormatUint(cl.Epoch, 10)}
				if !slices.Equal(rows[i], row) {
					t.Errorf("table row %q, want %q", rows[i], row)
				}
			}
		})

		t.Run("explain", func(t *testing.T) {
			t.Parallel()
			want := cl.PartitionMap["partition-48"]
			for _, arg := range []string{"48", "partition-48"} {
				var doc jsonExplain
				c.cliJSON(t, &doc, "explain", arg)
				if doc.Epoch != cl.Epoch || doc.Partition != "partition-48" || doc.Index != 48 ||
					!slices.Equal(doc.Holders, holders(want)) || doc.PrimaryEpoch != want.PrimaryEpoch || doc.Moving ||
					len(doc.Pending)+len(doc.Target)+len(doc.From)+len(doc.To) != 0 {
					t.Errorf("explain %s: %+v; the nodes serve %+v", arg, doc, want)
				}
				pl := doc.Placement
				if !slices.Equal(pl.LiveNodes, ids) || !slices.Equal(pl.Holders, holders(want)) || !slices.Equal(pl.BalanceHolders, pl.Holders) ||
					!pl.SameAsMap || pl.Rule == "" || len(pl.Steps) == 0 || doc.Constraints == nil || len(doc.Constraints) != 0 {
					t.Errorf("explain %s: placement %+v; want it where the map has it, from %v, with a rule and steps", arg, pl, ids)
				}
			}
			out := c.tableOK(t, "explain", "partition-48")
			for _, w := range []string{
				"Holders:  " + want.PrimaryNode + " (primary), " + strings.Join(want.ReplicaNodes, ", "),
				"Moving:  no",
				"Placement now:  " + strings.Join(holders(want), ",") + ", where the map already aims it",
			} {
				if !containsSpaced(out, w) {
					t.Errorf("explain lacks %q:\n%s", w, out)
				}
			}
		})

		t.Run("errors", func(t *testing.T) {
			t.Parallel()
			tests := []struct {
				args   []string
				status int
				want   string
			}{
				{[]string{"status", "--cluster", "nosuch"}, exitState,
					fmt.Sprintf(`no cluster named "nosuch" under prefix /clusterkit/ in etcd at %s (no /clusterkit/nosuch/config)`, c.endpoints)},
				{[]string{"explain", "70000"}, exitUsage, "partition 70000 out of range 0..63"},
				{[]string{"explain", "partition-64"}, exitUsage, "partition 64 out of range 0..63"},
				{[]string{"explain", "p5"}, exitUsage, "want its number or its ID, like 5 or partition-5"},
				{[]string{"plan", "leave", "node-9"}, exitState, fmt.Sprintf(`node "node-9" is not in the map of epoch %d (its nodes: node-1,node-2,node-3)`, cl.Epoch)},
				{[]string{"plan", "join", "node-1"}, exitState, fmt.Sprintf(`node "node-1" is already in the map of epoch %d`, cl.Epoch)},
				{[]string{"partitions", "--node", "node-9"}, exitState, `node "node-9" is not in the map`},
			}
			for _, tt := range tests {
				status, stdout, stderr := runIn(t, env{"CLUSTERKIT_ENDPOINTS": c.endpoints}, tt.args...)
				if status != tt.status || !strings.HasPrefix(stderr, "clusterkit: ") || !strings.Contains(stderr, tt.want) || stdout != "" {
					t.Errorf("clusterkit %s: status %d, stdout %q, stderr %q; want %d and %q", strings.Join(tt.args, " "),
						status, stdout, stderr, tt.status, tt.want)
				}
			}
		})
	})

	// The cluster changes from here on, on the test's own goroutine: the nodes started here
	// belong to the whole test.
	after := checkJoin(t, c, cl, primaries, replicas)
	after = checkLeave(t, c, after, ids)
	checkAdmin(t, c, ids, after.Epoch)
	t.Logf("the whole test took %v", time.Since(began).Round(time.Millisecond))
}

// checkJoin plans the join of node-4, then starts it: the placement it settles on is the
// plan's, and watch prints every map from the one before the join to the settled one. It
// returns the settled map.
func checkJoin(t *testing.T, c *testCluster, cl wiretest.ClusterState, primaries, replicas map[string]int) wiretest.ClusterState {
	var plan jsonPlan
	c.cliJSON(t, &plan, "plan", "join", "node-4", "--zone", "d")
	if plan.Epoch != cl.Epoch || plan.Change != "join" || plan.Node.ID != "node-4" || plan.Node.Zone != "d" ||
		plan.Node.Weight != 1 || plan.PartitionCount != testPartitions {
		t.Errorf("plan: %+v", plan)
	}
	table := c.tableOK(t, "plan", "join", "node-4", "--zone", "d", "-v")
	if want := fmt.Sprintf("Moves:  %d of %d partitions change holders: %d replica copies, %d replicas released; %d primaries change",
		plan.PartitionsMoving, testPartitions, plan.ReplicaCopies, plan.ReplicasReleased, plan.PrimaryMoves); !containsSpaced(table, want) {
		t.Errorf("plan table lacks %q:\n%s", want, table)
	}
	if rows := tableRows(table, "PARTITION"); len(rows) != len(plan.Moves) {
		t.Errorf("plan -v lists %d partitions, the JSON %d", len(rows), len(plan.Moves))
	}
	for _, n := range plan.Nodes {
		if n.ID != "node-4" && (n.ReplicasBefore != primaries[n.ID]+replicas[n.ID] || n.PrimariesBefore != primaries[n.ID]) {
			t.Errorf("plan: %s holds %d and leads %d before; the nodes serve %d and %d", n.ID, n.ReplicasBefore,
				n.PrimariesBefore, primaries[n.ID]+replicas[n.ID], primaries[n.ID])
		}
	}

	watch := proctest.New(t, "watch", c.cliBin, "watch", "-o", "json")
	watch.Env = c.cliEnv()
	watch.Start(t)
	waitLines(t, watch, 1)

	c.launch(t, "node-4", "d").wait(t)
	after := c.stable(t, "node-1", "node-2", "node-3", "node-4").Cluster
	planned := map[string][]string{}
	for _, mv := range plan.Moves {
		planned[mv.Partition] = mv.After
	}
	copies, primaryMoves := 0, 0
	for pid, p := range after.PartitionMap {
		before := holders(cl.PartitionMap[pid])
		want, moved := planned[pid]
		if !moved {
			want = before
		}
		if got := holders(p); !slices.Equal(got, want) {
			t.Errorf("after the join %s is held by %v; the plan said %v (before: %v)", pid, got, want, before)
		}
		for _, h := range holders(p) {
			if !slices.Contains(before, h) {
				copies++
			}
		}
		if p.PrimaryNode != before[0] {
			primaryMoves++
		}
	}
	if copies != plan.ReplicaCopies || primaryMoves != plan.PrimaryMoves {
		t.Errorf("the join copied %d replicas and moved %d primaries; the plan said %d and %d", copies, primaryMoves,
			plan.ReplicaCopies, plan.PrimaryMoves)
	}
	t.Logf("plan join node-4: %d partitions move, %d copies, %d primaries; the join did the same", plan.PartitionsMoving, copies, primaryMoves)

	if status := watch.Terminate(t, 10*time.Second); status != 0 {
		t.Errorf("watch exited with status %d on SIGTERM, want 0", status)
	}
	lines := waitLines(t, watch, 0)
	if len(lines) < 2 || lines[0].Epoch != cl.Epoch || lines[len(lines)-1].Epoch != after.Epoch {
		t.Fatalf("watch printed %+v; want epochs %d to %d", lines, cl.Epoch, after.Epoch)
	}
	joined := false
	for i, l := range lines {
		if i > 0 && l.Epoch != lines[i-1].Epoch+1 {
			t.Errorf("watch printed epoch %d after %d: a map is missing", l.Epoch, lines[i-1].Epoch)
		}
		if l.Cause.Reason == "join" && slices.Equal(l.Cause.Nodes, []string{"node-4"}) {
			joined = true
			// The node processes run no copy hook: node-4 serves at once, no copy waits.
			if l.Pending != 0 || !slices.Contains(l.Nodes, "node-4") {
				t.Errorf("watch: the join's map %+v: want node-4 in it, and no copy pending", l)
			}
		}
	}
	last := lines[len(lines)-1]
	if !joined || last.Pending != 0 || len(last.Nodes) != 4 || last.Leader != after.Leader {
		t.Errorf("watch printed %+v; want the join of node-4, and a last map of 4 nodes with nothing pending, by %s", lines, after.Leader)
	}
	return after
}

// checkLeave plans the leave of node-4, then stops it (SIGTERM: it leaves at once): the
// placement the others settle on is the plan's. It returns the settled map.
func checkLeave(t *testing.T, c *testCluster, cl wiretest.ClusterState, ids []string) wiretest.ClusterState {
	var plan jsonPlan
	c.cliJSON(t, &plan, "plan", "leave", "node-4")
	held := 0
	for _, p := range cl.PartitionMap {
		if slices.Contains(holders(p), "node-4") {
			held++
		}
	}
	if plan.Change != "leave" || plan.Node.ID != "node-4" || plan.Node.Zone != "d" || plan.ReplicasReleased != held || plan.ReplicaCopies != held {
		t.Errorf("plan leave node-4: %+v; node-4 holds %d, all to be copied elsewhere", plan, held)
	}
	proctest.Stop(t, 30*time.Second, c.node("node-4").Process)
	after := c.stable(t, ids...).Cluster
	planned := map[string][]string{}
	for _, mv := range plan.Moves {
		planned[mv.Partition] = mv.After
	}
	for pid, p := range after.PartitionMap {
		want, moved := planned[pid]
		if !moved {
			want = holders(cl.PartitionMap[pid])
		}
		if got := holders(p); !slices.Equal(got, want) {
			t.Errorf("after the leave %s is held by %v; the plan said %v", pid, got, want)
		}
	}
	return after
}

// waitLines waits until the watch process has printed at least n JSON lines (n 0: whatever it
// printed) and returns them.
func waitLines(t *testing.T, p *proctest.Process, n int) []jsonWatchLine {
	t.Helper()
	var lines []jsonWatchLine
	read := func() error {
		lines = nil
		for _, l := range strings.Split(p.Log(), "\n") {
			if !strings.HasPrefix(l, "{") {
				continue
			}
			var w jsonWatchLine
			dec := json.NewDecoder(strings.NewReader(l))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&w); err != nil {
				return fmt.Errorf("watch line %q: %v", l, err)
			}
			lines = append(lines, w)
		}
		if len(lines) < n {
			return fmt.Errorf("%d lines; log:\n%s", len(lines), p.Log())
		}
		return nil
	}
	if n == 0 {
		if err := read(); err != nil {
			t.Fatal(err)
		}
		return lines
	}
	etcdtest.WaitFor(t, 15*time.Second, "watch's first lines", read)
	return lines
}

// containsSpaced reports whether out holds want, with the runs of spaces that align a table
// read as two spaces in want.
func containsSpaced(out, want string) bool {
	squeeze := func(s string) string {
		var b strings.Builder
		spaces := 0
		for _, r := range s {
			if r == ' ' {
				spaces++
				continue
			}
			if spaces > 0 {
				b.WriteString(strings.Repeat(" ", min(spaces, 2)))
				spaces = 0
			}
			b.WriteRune(r)
		}
		return b.String()
	}
	return strings.Contains(squeeze(out), squeeze(want))
}
