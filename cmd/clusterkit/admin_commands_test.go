package main

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/clusterkit-go/clusterkit/internal/etcdtest"
	"github.com/clusterkit-go/clusterkit/internal/proctest"
	"github.com/clusterkit-go/clusterkit/internal/wiretest"
	"github.com/clusterkit-go/clusterkit/pkg/wire"
)

// The documents of the operators' actions and of history, as the commands' help documents them.
type (
	jsonAdminRecord struct {
		Key       string    `json:"key"`
		Revision  int64     `json:"revision"`
		Kind      string    `json:"kind"`
		Node      string    `json:"node"`
		Partition *int      `json:"partition"`
		Weight    int       `json:"weight"`
		Reason    string    `json:"reason"`
		By        string    `json:"by"`
		At        time.Time `json:"at"`
	}
	jsonDeleted struct {
		Deleted  []jsonAdminRecord `json:"deleted"`
		Revision int64             `json:"revision"`
	}
	jsonHistory struct {
		Records []struct {
			Epoch          uint64              `json:"epoch"`
			UpdatedAt      time.Time           `json:"updated_at"`
			Leader         string              `json:"leader"`
			Cause          jsonCause           `json:"cause"`
			Nodes          int                 `json:"nodes"`
			Changed        int                 `json:"changed"`
			PrimariesMoved int                 `json:"primaries_moved"`
			CopiesStarted  int                 `json:"copies_started"`
			CopiesDone     int                 `json:"copies_done"`
			Pending        int                 `json:"pending"`
			ComputeMillis  float64             `json:"compute_ms"`
			Bytes          int                 `json:"bytes"`
			Admin          []jsonHistoryAction `json:"admin"`
			AdminMore      int                 `json:"admin_more"`
		} `json:"records"`
		Oldest uint64 `json:"oldest"`
	}
	jsonHistoryAction struct {
		Action    string    `json:"action"`
		Kind      string    `json:"kind"`
		Removed   bool      `json:"removed"`
		Node      string    `json:"node"`
		Partition string    `json:"partition"`
		Weight    int       `json:"weight"`
		Reason    string    `json:"reason"`
		By        string    `json:"by"`
		At        time.Time `json:"at"`
	}
)

// inJSON runs the command with -o json in the test's process and decodes its document into v
// strictly; for polls, it returns what went wrong.
func (c *testCluster) inJSON(t *testing.T, v any, args ...string) error {
	t.Helper()
	status, stdout, stderr := runIn(t, env{"CLUSTERKIT_ENDPOINTS": c.endpoints}, append(args, "-o", "json")...)
	if status != 0 {
		return fmt.Errorf("clusterkit %s: status %d, stderr %s", strings.Join(args, " "), status, stderr)
	}
	dec := json.NewDecoder(strings.NewReader(stdout))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

// settled waits until the map the command reads has no copy in progress and ok accepts its
// nodes, and returns them with the map's epoch.
func (c *testCluster) settled(t *testing.T, what string, ok func(nodes map[string]int, doc jsonNodes) error) jsonNodes {
	t.Helper()
	var doc jsonNodes
	etcdtest.WaitFor(t, 30*time.Second, what, func() error {
		doc = jsonNodes{}
		if err := c.inJSON(t, &doc, "nodes"); err != nil {
			return err
		}
		held := map[string]int{}
		for _, n := range doc.Nodes {
			if n.PendingIn > 0 {
				return fmt.Errorf("%s copies %d partitions in", n.ID, n.PendingIn)
			}
			held[n.ID] = n.Primaries + n.Replicas
		}
		return ok(held, doc)
	})
	return doc
}

// served waits until every node of the cluster that runs serves, in GET /cluster, nodes that
// ok accepts: each node follows the operators' records itself.
func (c *testCluster) served(t *testing.T, what string, ok func(nodes map[string]wiretest.Node) error) {
	t.Helper()
	etcdtest.WaitFor(t, 15*time.Second, what+" in every node's GET /cluster", func() error {
		for _, n := range c.nodes {
			if n.State() != proctest.Running {
				continue
			}
			var v wiretest.Cluster
			if err := c.get(n.id, "/cluster", &v); err != nil {
				return fmt.Errorf("%s: %w", n.id, err)
			}
			if err := ok(v.Cluster.Nodes); err != nil {
				return fmt.Errorf("%s: %w", n.id, err)
			}
		}
		return nil
	})
}

// nodeState is a node's state in the nodes document.
func nodeState(doc jsonNodes, id string) string {
	for _, n := range doc.Nodes {
		if n.ID == id {
			return n.State
		}
	}
	return ""
}

// checkAdmin drives the operators' actions through the cluster of ids, settled at epoch: a
// drain empties a node and uncordon fills it again, the checks refuse what would leave too few
// nodes or pin to a drained one, a move pins a partition, a weight gives a node more, a node
// that joins during maintenance gets nothing until it ends, and history lists every map of it
// with its cause.
func checkAdmin(t *testing.T, c *testCluster, ids []string, epoch uint64) {
	began := time.Now()
	e := env{"CLUSTERKIT_ENDPOINTS": c.endpoints}
	// caused are the epochs of the maps an action caused, with the action as the history's
	// table prints it.
	caused := map[uint64]string{}

	// The drain runs as a process, the rest in the test's process.
	var rec jsonAdminRecord
	c.cliJSON(t, &rec, "drain", "node-3", "--reason", "disk swap", "--by", "tester")
	if rec.Key != "/clusterkit/default/admin/drain/node-3" || rec.Kind != "drain" || rec.Node != "node-3" || rec.Reason != "disk swap" ||
		rec.By != "tester" || time.Since(rec.At) > time.Minute || rec.Revision == 0 {
		t.Errorf("drain node-3 -o json printed %+v", rec)
	}
	caused[epoch+1] = "drain node-3 (disk swap) by tester"
	doc := c.settled(t, "node-3 drained", func(held map[string]int, doc jsonNodes) error {
		if held["node-3"] != 0 || nodeState(doc, "node-3") != stateDrained {
			return fmt.Errorf("node-3 is %s and holds %d partitions", nodeState(doc, "node-3"), held["node-3"])
		}
		return nil
	})
	var only jsonPartitions
	if err := c.inJSON(t, &only, "partitions", "--node", "node-3"); err != nil || len(only.Partitions) != 0 {
		t.Errorf("partitions --node node-3 of a drained node: %d partitions (%v)", len(only.Partitions), err)
	}
	c.served(t, "node-3 draining", func(n map[string]wiretest.Node) error {
		if n["node-3"].State != "draining" || n["node-1"].State != "" || n["node-2"].State != "" {
			return fmt.Errorf("nodes %+v", n)
		}
		return nil
	})
	if out := c.tableOK(t, "status"); !containsSpaced(out, "Operator actions:  drained node-3\n") {
		t.Errorf("status lacks the drain:\n%s", out)
	}
	if rows := tableRows(c.tableOK(t, "nodes"), "NODE"); len(rows) != 3 || !slices.Equal(rows[2][:5], []string{"node-3", c.node("node-3").addr, "c", "1", "drained"}) {
		t.Errorf("nodes rows %q: want node-3 drained", rows)
	}

	// What the checks refuse while node-3 is drained: nothing is written.
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"drain", "node-9"}, fmt.Sprintf(`node "node-9" is not in the map of epoch %d and has no record under nodes/ (known nodes: node-1,node-2,node-3)`, doc.Epoch)},
		{[]string{"cordon", "node-9"}, `node "node-9" is not in the map`},
		{[]string{"weight", "node-9", "2"}, `node "node-9" is not in the map`},
		{[]string{"move", "64", "--to", "node-1"}, "partition 64 out of range 0..63"},
		{[]string{"move", "partition-64", "--clear"}, "partition 64 out of range 0..63"},
		{[]string{"drain", "node-2"}, "refused: drain node-2 would leave 1 usable node (node-1) of 3 live, fewer than the 2 the placement needs (replication factor 2, or every live node when fewer); not usable already: node-3 drained; --force writes it anyway"},
		{[]string{"cordon", "node-1"}, "refused: cordon node-1 would leave 1 usable node (node-2) of 3 live"},
		{[]string{"move", "partition-0", "--to", "node-3"}, "refused: node node-3 is drained, to hold no partition (clusterkit uncordon node-3 ends that); --force writes it anyway"},
	} {
		status, stdout, stderr := runIn(t, e, tt.args...)
		if status != exitUsage || stdout != "" || stderr != "clusterkit: "+tt.want+"\n" && !(strings.HasPrefix(stderr, "clusterkit: ") && strings.Contains(stderr, tt.want)) {
			t.Errorf("clusterkit %s: status %d, stdout %q, stderr %q; want %d and %q", strings.Join(tt.args, " "), status, stdout, stderr, exitUsage, tt.want)
		}
	}

	// A pin to the drained node, forced, waits: explain names it and why, with its record.
	if status, _, stderr := runIn(t, e, "move", "partition-0", "--to", "node-3", "--force", "--by", "tester"); status != 0 ||
		!strings.Contains(stderr, "node node-3 is drained") {
		t.Fatalf("move partition-0 --to node-3 --force: status %d, stderr %q", status, stderr)
	}
	var ex jsonExplain
	if err := c.inJSON(t, &ex, "explain", "0"); err != nil {
		t.Fatal(err)
	}
	if len(ex.Constraints) != 1 || ex.Constraints[0].Constraint != "move" || ex.Constraints[0].Effect != "blocked" ||
		ex.Constraints[0].Blocked != "drained" || ex.Constraints[0].Node != "node-3" || len(ex.Constraints[0].Records) != 1 ||
		ex.Constraints[0].Records[0].By != "tester" || slices.Contains(ex.Placement.Holders, "node-3") || !ex.Placement.SameAsMap {
		t.Errorf("explain 0 pinned to drained node-3: %+v; want the pin blocked as drained, by tester, and the map kept", ex)
	}
	if out := c.tableOK(t, "explain", "0"); !strings.Contains(out, "move blocked (drained): pinned to node-3, which is drained") ||
		!strings.Contains(out, "admin/move/0 by tester at ") {
		t.Errorf("explain 0 lacks the blocked pin:\n%s", out)
	}
	c.tableOK(t, "move", "0", "--clear")

	var del jsonDeleted
	if err := c.inJSON(t, &del, "uncordon", "node-3"); err != nil {
		t.Fatal(err)
	}
	if len(del.Deleted) != 1 || del.Deleted[0].Key != rec.Key || del.Deleted[0].Reason != "disk swap" || del.Revision <= rec.Revision {
		t.Errorf("uncordon node-3 printed %+v; want the drain record deleted", del)
	}
	caused[doc.Epoch+1] = "uncordon node-3 (ends the drain written by tester: disk swap)"
	c.stable(t, ids...)
	doc = c.settled(t, "node-3 back", func(held map[string]int, doc jsonNodes) error {
		if held["node-3"] == 0 || nodeState(doc, "node-3") != stateServing {
			return fmt.Errorf("node-3 is %s and holds %d partitions", nodeState(doc, "node-3"), held["node-3"])
		}
		return nil
	})

	// A move pins a partition node-1 does not hold to node-1.
	var parts jsonPartitions
	if err := c.inJSON(t, &parts, "partitions"); err != nil {
		t.Fatal(err)
	}
	p := slices.IndexFunc(parts.Partitions, func(p jsonPartition) bool { return !slices.Contains(p.Holders, "node-1") })
	out := c.tableOK(t, "move", fmt.Sprintf("partition-%d", p), "--to", "node-1", "--reason", "hot key")
	for _, want := range []string{
		fmt.Sprintf("Wrote /clusterkit/default/admin/move/%d at revision ", p),
		fmt.Sprintf(`{"kind":"move","node":"node-1","partition":%d,"reason":"hot key","by":"`, p),
		fmt.Sprintf("See it:  etcdctl --endpoints=%s get /clusterkit/default/admin/move/%d", c.endpoints, p),
		fmt.Sprintf("Undo:  clusterkit move %d --clear", p),
	} {
		if !containsSpaced(out, want) {
			t.Errorf("move lacks %q:\n%s", want, out)
		}
	}
	caused[doc.Epoch+1] = fmt.Sprintf("move partition-%d to node-1 (hot key) by %s", p, operator())
	c.settled(t, fmt.Sprintf("partition-%d on node-1", p), func(map[string]int, jsonNodes) error {
		var one jsonPartitions
		if err := c.inJSON(t, &one, "partitions", "--node", "node-1"); err != nil {
			return err
		}
		for _, q := range one.Partitions {
			if q.Index == p && slices.Contains(q.Holders, "node-1") && len(q.Pending) == 0 {
				return nil
			}
		}
		return fmt.Errorf("node-1 does not hold partition-%d", p)
	})
	if out := c.tableOK(t, "status"); !containsSpaced(out, fmt.Sprintf("Operator actions:  pinned partition-%d on node-1\n", p)) {
		t.Errorf("status lacks the pin:\n%s", out)
	}
	// explain names the pin that placed the partition, and its record.
	var ex2 jsonExplain
	if err := c.inJSON(t, &ex2, "explain", fmt.Sprint(p)); err != nil {
		t.Fatal(err)
	}
	if len(ex2.Constraints) != 1 || ex2.Constraints[0].Constraint != "move" || ex2.Constraints[0].Effect != "placed" ||
		ex2.Constraints[0].Node != "node-1" || len(ex2.Constraints[0].Records) != 1 || ex2.Constraints[0].Records[0].Reason != "hot key" ||
		!slices.Contains(ex2.Placement.Holders, "node-1") || !ex2.Placement.SameAsMap {
		t.Errorf("explain %d pinned to node-1: %+v; want the pin placed, with its record", p, ex2)
	}
	c.tableOK(t, "move", fmt.Sprint(p), "--clear")
	c.stable(t, ids...)

	// A weight of 3 gives node-1 more than either other node.
	var wrec jsonAdminRecord
	if err := c.inJSON(t, &wrec, "weight", "node-1", "3"); err != nil {
		t.Fatal(err)
	}
	if wrec.Key != "/clusterkit/default/admin/weight/node-1" || wrec.Kind != "weight" || wrec.Node != "node-1" || wrec.Weight != 3 ||
		wrec.By == "" || wrec.Reason != "" {
		t.Errorf("weight node-1 3 printed %+v; want the record, by this process's user", wrec)
	}
	doc = c.settled(t, "node-1 weighing 3", func(held map[string]int, doc jsonNodes) error {
		if doc.Nodes[0].Weight != 3 || held["node-1"] <= held["node-2"] || held["node-1"] <= held["node-3"] {
			return fmt.Errorf("node-1 of weight %d holds %d, node-2 %d, node-3 %d", doc.Nodes[0].Weight, held["node-1"], held["node-2"], held["node-3"])
		}
		return nil
	})
	c.served(t, "node-1 weighing 3", func(n map[string]wiretest.Node) error {
		if n["node-1"].Weight != 3 || n["node-2"].Weight != 1 || n["node-3"].State != "" {
			return fmt.Errorf("nodes %+v", n)
		}
		return nil
	})
	del = jsonDeleted{}
	if err := c.inJSON(t, &del, "weight", "node-1", "--clear"); err != nil {
		t.Fatal(err)
	}
	if len(del.Deleted) != 1 || del.Deleted[0].Weight != 3 {
		t.Errorf("weight node-1 --clear printed %+v", del)
	}
	settledAt := c.stable(t, ids...).Cluster.Epoch
	t.Logf("drain, uncordon, move and weight in %v", time.Since(began).Round(time.Millisecond))

	// A node that joins during maintenance holds nothing until the maintenance ends.
	c.tableOK(t, "maintenance", "on", "--reason", "rolling upgrade")
	if out := c.tableOK(t, "maintenance", "on", "--reason", "rolling upgrade"); !strings.Contains(out, "Replaces:") {
		t.Errorf("the same reason again does not replace its record:\n%s", out) // one record per reason
	}
	var list struct {
		Maintenance []jsonAdminRecord `json:"maintenance"`
	}
	if err := c.inJSON(t, &list, "maintenance", "list"); err != nil || len(list.Maintenance) != 1 || list.Maintenance[0].Reason != "rolling upgrade" {
		t.Errorf("maintenance list: %+v (%v); want one record of reason \"rolling upgrade\"", list, err)
	}
	c.launch(t, "node-5", "e").wait(t)
	doc = c.settled(t, "node-5 in the map, holding nothing", func(held map[string]int, doc jsonNodes) error {
		if st := nodeState(doc, "node-5"); st != stateServing {
			return fmt.Errorf("node-5 is %q", st)
		}
		if held["node-5"] != 0 {
			t.Fatalf("node-5 holds %d partitions during maintenance", held["node-5"])
		}
		return nil
	})
	out = c.tableOK(t, "maintenance", "off", "--reason", "rolling upgrade")
	caused[doc.Epoch+1] = "maintenance off (ends the maintenance written by " + operator() + ": rolling upgrade)"
	if !strings.Contains(out, "Deleted /clusterkit/default/admin/maintenance/rolling-upgrade-") || !containsSpaced(out, "Maintenance:  none stands") {
		t.Errorf("maintenance off:\n%s", out)
	}
	// The map that lets node-5 in follows the deletion by a CoalesceWindow or so: wait for it,
	// so that the history read below ends with it.
	c.settled(t, "node-5 let in after the maintenance", func(held map[string]int, doc jsonNodes) error {
		if held["node-5"] == 0 {
			return fmt.Errorf("node-5 holds nothing after the maintenance ended")
		}
		return nil
	})
	last := c.stable(t, "node-1", "node-2", "node-3", "node-5").Cluster.Epoch
	t.Logf("maintenance held node-5 back, then let it in, in %v", time.Since(began).Round(time.Millisecond))

	// History lists every map since epoch, each action's with the cause admin and the action,
	// and the join of node-5, with the maintenance started before it.
	var h jsonHistory
	if err := c.inJSON(t, &h, "history", "--since", fmt.Sprint(epoch), "--limit", "1000"); err != nil {
		t.Fatal(err)
	}
	if len(h.Records) == 0 || h.Records[0].Epoch != epoch+1 || h.Records[len(h.Records)-1].Epoch < last || h.Oldest != 1 {
		t.Fatalf("history --since %d: %d records, oldest kept %d; want epochs %d to %d and the oldest 1", epoch, len(h.Records), h.Oldest, epoch+1, last)
	}
	joined := false
	for i, r := range h.Records {
		if i > 0 && r.Epoch != h.Records[i-1].Epoch+1 {
			t.Errorf("history lists epoch %d after %d", r.Epoch, h.Records[i-1].Epoch)
		}
		if what, ok := caused[r.Epoch]; ok {
			var got []string
			for _, a := range r.Admin {
				got = append(got, historyAction(a.Action, a.Kind, a.Removed, a.Node, a.Partition, a.Weight, a.Reason, a.By))
			}
			if r.Cause.Reason != "admin" || !slices.Equal(got, []string{what}) || r.Admin[0].At.IsZero() {
				t.Errorf("the map of epoch %d has the cause %+v and the actions %q; want admin and %q", r.Epoch, r.Cause, got, what)
			}
			if strings.HasPrefix(what, "uncordon") && !r.Admin[0].Removed {
				t.Errorf("the map of epoch %d: %+v; want the drain marked removed", r.Epoch, r.Admin[0])
			}
		}
		if r.Epoch > settledAt && r.Cause.Reason == "join" && slices.Equal(r.Cause.Nodes, []string{"node-5"}) {
			joined = true
			// The actions since the map before: the maintenance, and the end of the weight when
			// the maintenance held its map back.
			started := slices.ContainsFunc(r.Admin, func(a jsonHistoryAction) bool {
				return a.Action == "maintenance on" && a.Reason == "rolling upgrade" && !a.Removed
			})
			if r.Changed != 0 || r.CopiesStarted != 0 || r.Nodes != 4 || !started {
				t.Errorf("the join of node-5 during maintenance: %+v; want 4 nodes, nothing changed, and the maintenance started", r)
			}
		}
		if r.Leader == "" || r.UpdatedAt.IsZero() || r.Bytes <= 0 {
			t.Errorf("history record %+v: want its leader, time and bytes", r)
		}
	}
	if !joined {
		t.Errorf("history lacks the join of node-5: %+v", h.Records)
	}
	rows := tableRows(c.tableOK(t, "history", "--limit", "3"), "EPOCH")
	if len(rows) != 3 || rows[2][0] != fmt.Sprint(h.Records[len(h.Records)-1].Epoch) {
		t.Errorf("history --limit 3 rows %q: want the last 3 maps, up to epoch %d", rows, h.Records[len(h.Records)-1].Epoch)
	}
	// The table's ACTION column says the action and who asked.
	var since uint64
	for e, what := range caused {
		if strings.HasPrefix(what, "drain") {
			since = e - 1
		}
	}
	out = c.tableOK(t, "history", "--since", fmt.Sprint(since), "--limit", "1")
	if !strings.Contains(out, "ACTION") || !strings.Contains(out, "admin:node-3") || !strings.Contains(out, "drain node-3 (disk swap) by tester") {
		t.Errorf("history of the drain's map lacks the cause and the action:\n%s", out)
	}
	t.Logf("the operators' actions took %v", time.Since(began).Round(time.Millisecond))
}

// historyAction is an action of the history as clusterkit history's table prints it.
func historyAction(action, kind string, removed bool, node, partition string, weight int, reason, by string) string {
	return adminChanges(wire.HistoryRecord{Admin: []wire.AdminChange{{Action: action, Kind: kind, Removed: removed, Node: node,
		Partition: partition, Weight: weight, Reason: reason, By: by}}})
}
