// Command demo runs a small ClusterKit cluster inside one process, on 127.0.0.1, and shows what
// ClusterKit does: the cluster forming, the partition map, key lookups, the HTTP API, and a node
// leaving gracefully together with the partition-change hooks that its leaving causes.
//
//	go run ./examples/demo
//	go run ./examples/demo -nodes 5 -partitions 32
//
// Only Go is needed: node-1 starts an embedded etcd (it is the bootstrap node) and the other
// nodes join it with JoinAddr; node-2 and node-3 also become etcd members (the first three nodes
// of an embedded cluster do), the others are etcd clients. The nodes are stopped in reverse
// order; the last two members stop without a quorum, so their Stop waits out its bounds (a few
// seconds). Every wait is bounded; the demo exits non-zero with a message when something does
// not happen as it should.
package main

import (
	"cmp"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/clusterkit-go/clusterkit/pkg/clusterkit"
	"github.com/clusterkit-go/clusterkit/pkg/wire"
)

const (
	replicationFactor = 3
	// settleWait bounds each wait for the cluster to reach an expected state.
	settleWait = 15 * time.Second
)

type config struct {
	nodes      int
	partitions int
	port       int
}

func main() {
	var cfg config
	flag.IntVar(&cfg.nodes, "nodes", 4, "number of nodes to start, at least 2")
	flag.IntVar(&cfg.partitions, "partitions", 16, "number of partitions")
	flag.IntVar(&cfg.port, "port", 0, "HTTP port of node-1; node-i listens on port+i-1 (0 picks free ports)")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, cfg, os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo failed:", err)
		os.Exit(1)
	}
}

// event is one partition-change hook call as one node saw it.
type event struct {
	partition string
	from      []string
	to        string
}

func (e event) String() string {
	return fmt.Sprintf("%s -> %s, copy from %v", e.partition, e.to, e.from)
}

// recorder keeps every hook call one node saw. Hooks run on ClusterKit's goroutines, so it
// locks.
type recorder struct {
	mu     sync.Mutex
	events []event
}

func (r *recorder) hook(partitionID string, copyFromNodes []*clusterkit.Node, copyToNode *clusterkit.Node) {
	from := make([]string, len(copyFromNodes))
	for i, n := range copyFromNodes {
		from[i] = n.ID
	}
	r.mu.Lock()
	r.events = append(r.events, event{partition: partitionID, from: from, to: copyToNode.ID})
	r.mu.Unlock()
}

// since returns a copy of the events after the first n.
func (r *recorder) since(n int) []event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.events[n:])
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.events)
}

type node struct {
	id      string
	ck      *clusterkit.ClusterKit
	rec     *recorder
	stopped bool
}

// table is a partition map as a node answers lookups: holders[i] is partition-i's nodes,
// primary first.
type table [][]string

func run(ctx context.Context, cfg config, w io.Writer) (err error) {
	if cfg.nodes < 2 {
		return fmt.Errorf("-nodes %d: need at least 2 (one of them leaves)", cfg.nodes)
	}
	if cfg.partitions < 1 || cfg.partitions > clusterkit.MaxPartitionCount {
		return fmt.Errorf("-partitions %d: need 1..%d", cfg.partitions, clusterkit.MaxPartitionCount)
	}
	if cfg.port < 0 || cfg.port+cfg.nodes-1 > 65535 {
		return fmt.Errorf("-port %d: ports %d..%d are out of range", cfg.port, cfg.port, cfg.port+cfg.nodes-1)
	}
	dir, err := os.MkdirTemp("", "clusterkit-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	fmt.Fprintf(w, "ClusterKit demo: %d nodes, %d partitions, replication factor %d\n",
		cfg.nodes, cfg.partitions, replicationFactor)

	var nodes []*node
	// Whatever happens, stop what was started: the joined nodes first, node-1 (the first etcd
	// member) last.
	defer func() {
		start := time.Now()
		var ids []string
		for i := len(nodes) - 1; i >= 0; i-- {
			if !nodes[i].stopped {
				nodes[i].ck.Stop()
				nodes[i].stopped = true
				ids = append(ids, nodes[i].id)
			}
		}
		if err == nil {
			fmt.Fprintf(w, "\n== Shutdown\nstopped %s in %v; removed the data directory\n",
				strings.Join(ids, ", "), since(start))
		}
	}()

	// 1. Cluster formation.
	fmt.Fprintf(w, "\n== Cluster formation\n")
	formStart := time.Now()
	for i := 1; i <= cfg.nodes; i++ {
		n := &node{id: fmt.Sprintf("node-%d", i), rec: &recorder{}}
		opts := clusterkit.Options{
			NodeID:            n.id,
			HTTPAddr:          "127.0.0.1:0",
			DataDir:           filepath.Join(dir, n.id),
			PartitionCount:    cfg.partitions,
			ReplicationFactor: replicationFactor,
		}
		if cfg.port != 0 {
			opts.HTTPAddr = fmt.Sprintf("127.0.0.1:%d", cfg.port+i-1)
		}
		role := "bootstrap, embedded etcd"
		if i > 1 {
			opts.JoinAddr = nodes[0].ck.AdvertiseAddr()
			role = "joined via " + opts.JoinAddr
			if i <= clusterkit.DefaultEmbeddedMembers {
				role += ", becoming an etcd member in the background"
			}
		}
		ck, err := clusterkit.NewClusterKit(opts)
		if err != nil {
			return err
		}
		n.ck = ck
		// Before Start, so that the hook sees the changes Start itself brings about.
		ck.OnPartitionChange(n.rec.hook)
		start := time.Now()
		if err := ck.StartContext(ctx); err != nil {
			return fmt.Errorf("start %s: %w", n.id, err)
		}
		nodes = append(nodes, n)
		fmt.Fprintf(w, "%s up at %s (%s) in %v: epoch %d, leader %s\n",
			n.id, ck.AdvertiseAddr(), role, since(start), ck.Epoch(), ck.Leader())
	}
	before, err := waitConverged(ctx, nodes, cfg.partitions, "")
	if err != nil {
		return err
	}
	ref := nodes[0].ck
	leader := ref.Leader()
	fmt.Fprintf(w, "all %d nodes hold epoch %d from leader %s, %v after the first start", len(nodes), ref.Epoch(), leader,
		since(formStart))
	for _, n := range nodes {
		if n.ck.IsLeader() {
			fmt.Fprintf(w, " (%s.IsLeader() = true)", n.id)
		}
	}
	fmt.Fprintln(w)
	if err := settleHooks(ctx, nodes); err != nil {
		return err
	}
	var gained []string
	for _, n := range nodes {
		gained = append(gained, fmt.Sprintf("%s %d", n.id, len(own(n.rec.since(0), n.id))))
	}
	fmt.Fprintf(w, "partitions each node's hook was told it gained so far: %s\n", strings.Join(gained, ", "))

	// 2. The partition map.
	fmt.Fprintf(w, "\n== Partition map (epoch %d)\n", ref.Epoch())
	printTable(w, before, nil)

	// 3. Key lookups, the seed's data-flow example.
	asker := nodes[1]
	fmt.Fprintf(w, "\n== Key lookups (asked of %s)\n", asker.id)
	for _, key := range []string{"user:123", "user:456", "order:100", "product:abc"} {
		if err := lookup(w, asker.ck, nodes, key); err != nil {
			return err
		}
	}

	// 4. The HTTP API, over a real connection.
	fmt.Fprintf(w, "\n== HTTP API\n")
	if err := getCluster(ctx, w, asker.ck, len(nodes), cfg.partitions); err != nil {
		return err
	}

	// 5. A node leaves gracefully.
	leaver := nodes[len(nodes)-1]
	fmt.Fprintf(w, "\n== %s leaves (Stop)\n", leaver.id)
	remaining := nodes[:len(nodes)-1]
	epoch := ref.Epoch()
	marks := make([]int, len(remaining))
	for i, n := range remaining {
		marks[i] = n.rec.count()
	}
	start := time.Now()
	leaver.ck.Stop()
	leaver.stopped = true
	stopTook := since(start)
	after, err := waitConverged(ctx, remaining, cfg.partitions, leaver.id)
	if err != nil {
		return err
	}
	if ref.Epoch() <= epoch {
		return fmt.Errorf("epoch went from %d to %d after %s left", epoch, ref.Epoch(), leaver.id)
	}
	fmt.Fprintf(w, "Stop returned after %v; all %d remaining nodes held the new map (epoch %d) after %v\n",
		stopTook, len(remaining), ref.Epoch(), since(start))
	printTable(w, after, before)

	// 6. What the hooks saw. Every node is told about every (partition, new holder); each node
	// shows only the partitions it gained itself, as an application would act on.
	want := expectedEvents(before, after, leaver.id)
	if err := waitHooks(ctx, remaining, marks, want); err != nil {
		return err
	}
	fmt.Fprintf(w, "hooks: every remaining node saw the same %d events; each node's own:\n", len(want))
	for i, n := range remaining {
		mine := own(n.rec.since(marks[i]), n.id)
		slices.SortFunc(mine, func(a, b event) int { return comparePartitions(a.partition, b.partition) })
		fmt.Fprintf(w, "%s (%d):\n", n.id, len(mine))
		for _, ev := range mine {
			fmt.Fprintf(w, "  %s\n", ev)
		}
	}
	return nil
}

// since is the time since start, rounded for printing.
func since(start time.Time) time.Duration {
	return time.Since(start).Round(time.Millisecond)
}

// readTable reads the map ck holds, one lookup per partition.
func readTable(ck *clusterkit.ClusterKit, partitions int) (table, error) {
	t := make(table, partitions)
	for i := range t {
		p := &clusterkit.Partition{ID: clusterkit.PartitionID(i)}
		holders := ck.GetNodes(p)
		if len(holders) == 0 {
			return nil, fmt.Errorf("%s: %s has no holders", ck.GetMyNodeID(), p.ID)
		}
		if primary := ck.GetPrimary(p); primary == nil || primary.ID != holders[0].ID {
			return nil, fmt.Errorf("%s: %s: GetPrimary disagrees with GetNodes", ck.GetMyNodeID(), p.ID)
		}
		for _, h := range holders {
			t[i] = append(t[i], h.ID)
		}
	}
	return t, nil
}

// converged checks that every node holds the same map, at one epoch from one leader, that
// every partition has min(nodes, replication factor) distinct holders among the nodes, and
// that every node holds something. gone, if set, must hold nothing.
func converged(nodes []*node, partitions int, gone string) (table, error) {
	first, err := readTable(nodes[0].ck, partitions)
	if err != nil {
		return nil, err
	}
	epoch, leader := nodes[0].ck.Epoch(), nodes[0].ck.Leader()
	for _, n := range nodes[1:] {
		if n.ck.Epoch() != epoch || n.ck.Leader() != leader {
			return nil, fmt.Errorf("%s holds epoch %d from %s, %s holds epoch %d from %s",
				nodes[0].id, epoch, leader, n.id, n.ck.Epoch(), n.ck.Leader())
		}
		t, err := readTable(n.ck, partitions)
		if err != nil {
			return nil, err
		}
		if !slices.EqualFunc(t, first, slices.Equal) {
			return nil, fmt.Errorf("%s and %s hold different maps at epoch %d", nodes[0].id, n.id, epoch)
		}
	}
	live := make(map[string]bool)
	for _, n := range nodes {
		live[n.id] = false
	}
	holders := min(len(nodes), replicationFactor)
	for i, hs := range first {
		if len(hs) != holders {
			return nil, fmt.Errorf("%s has holders %v, want %d", clusterkit.PartitionID(i), hs, holders)
		}
		for j, id := range hs {
			if _, ok := live[id]; !ok {
				return nil, fmt.Errorf("%s is held by %s, which is not a live node (%s gone)", clusterkit.PartitionID(i), id, gone)
			}
			if slices.Contains(hs[:j], id) {
				return nil, fmt.Errorf("%s lists %s twice", clusterkit.PartitionID(i), id)
			}
			live[id] = true
		}
	}
	for id, holds := range live {
		if !holds {
			return nil, fmt.Errorf("%s holds no partition", id)
		}
	}
	return first, nil
}

// waitConverged polls converged until it holds or settleWait passes.
func waitConverged(ctx context.Context, nodes []*node, partitions int, gone string) (table, error) {
	var t table
	var last error
	err := poll(ctx, settleWait, func() bool {
		t, last = converged(nodes, partitions, gone)
		return last == nil
	})
	if err != nil {
		return nil, fmt.Errorf("cluster did not converge within %v: %v (%w)", settleWait, last, err)
	}
	return t, nil
}

// poll calls done every few milliseconds until it reports true, ctx ends or within passes.
func poll(ctx context.Context, within time.Duration, done func() bool) error {
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for !done() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
	return nil
}

// settleHooks waits until no node has received a hook call for 300ms: the hooks of the maps
// published so far have run.
func settleHooks(ctx context.Context, nodes []*node) error {
	total := func() int {
		sum := 0
		for _, n := range nodes {
			sum += n.rec.count()
		}
		return sum
	}
	last, lastChange := total(), time.Now()
	err := poll(ctx, settleWait, func() bool {
		if t := total(); t != last {
			last, lastChange = t, time.Now()
		}
		return time.Since(lastChange) >= 300*time.Millisecond
	})
	if err != nil {
		return fmt.Errorf("hook calls did not stop arriving: %w", err)
	}
	return nil
}

// own returns the events whose copyToNode is id.
func own(events []event, id string) []event {
	var mine []event
	for _, ev := range events {
		if ev.to == id {
			mine = append(mine, ev)
		}
	}
	return mine
}

// expectedEvents is the hook contract applied to a map change: one event per (partition, new
// holder), copying from the old holders that are still live.
func expectedEvents(before, after table, gone string) []event {
	var want []event
	for i := range after {
		var from []string
		for _, id := range before[i] {
			if id != gone {
				from = append(from, id)
			}
		}
		for _, id := range after[i] {
			if !slices.Contains(before[i], id) {
				want = append(want, event{partition: clusterkit.PartitionID(i), from: from, to: id})
			}
		}
	}
	return want
}

// key identifies an event regardless of the order of its sources.
func (e event) key() string {
	from := slices.Clone(e.from)
	slices.Sort(from)
	return e.partition + " " + e.to + " " + strings.Join(from, ",")
}

// waitHooks waits until every node has seen as many events as want since its mark, then
// checks that they are exactly want.
func waitHooks(ctx context.Context, nodes []*node, marks []int, want []event) error {
	err := poll(ctx, settleWait, func() bool {
		for i, n := range nodes {
			if n.rec.count()-marks[i] < len(want) {
				return false
			}
		}
		return true
	})
	if err != nil {
		for i, n := range nodes {
			if got := n.rec.count() - marks[i]; got < len(want) {
				return fmt.Errorf("%s saw %d hook calls, want %d: %w", n.id, got, len(want), err)
			}
		}
		return err
	}
	// Give a surplus event the time to show up before comparing.
	time.Sleep(100 * time.Millisecond)
	var wantKeys []string
	for _, ev := range want {
		wantKeys = append(wantKeys, ev.key())
	}
	slices.Sort(wantKeys)
	for i, n := range nodes {
		var got []string
		for _, ev := range n.rec.since(marks[i]) {
			got = append(got, ev.key())
		}
		slices.Sort(got)
		if !slices.Equal(got, wantKeys) {
			return fmt.Errorf("%s saw hook calls %q, want %q", n.id, got, wantKeys)
		}
	}
	return nil
}

// comparePartitions orders partition IDs by their number: IDs differ only in the decimal index,
// so the shorter is the smaller, and of two as long the lexically smaller.
func comparePartitions(a, b string) int {
	return cmp.Or(cmp.Compare(len(a), len(b)), strings.Compare(a, b))
}

// printTable prints t, one partition a line, and how many partitions each node leads and
// replicates. With prev set, it marks the partitions whose holders changed.
func printTable(w io.Writer, t, prev table) {
	type counts struct{ primary, replica int }
	per := make(map[string]*counts)
	for i, hs := range t {
		mark := ""
		if prev != nil && !slices.Equal(prev[i], hs) {
			mark = "  *"
		}
		replicas := strings.Join(hs[1:], " ")
		if replicas == "" {
			replicas = "-"
		}
		fmt.Fprintf(w, "  %-13s primary %-7s replicas %s%s\n", clusterkit.PartitionID(i), hs[0], replicas, mark)
		for j, id := range hs {
			if per[id] == nil {
				per[id] = &counts{}
			}
			if j == 0 {
				per[id].primary++
			} else {
				per[id].replica++
			}
		}
	}
	var ids []string
	for id := range per {
		ids = append(ids, id)
	}
	slices.SortFunc(ids, func(a, b string) int {
		var x, y int
		fmt.Sscanf(a, "node-%d", &x)
		fmt.Sscanf(b, "node-%d", &y)
		return x - y
	})
	var parts []string
	for _, id := range ids {
		parts = append(parts, fmt.Sprintf("%s %d/%d", id, per[id].primary, per[id].replica))
	}
	line := "per node (primary/replica): " + strings.Join(parts, ", ")
	if prev != nil {
		line += "; * = holders changed"
	}
	fmt.Fprintln(w, line)
}

// lookup prints where key goes, as the asking node sees it, and checks that the nodes named
// agree about their roles.
func lookup(w io.Writer, ck *clusterkit.ClusterKit, nodes []*node, key string) error {
	p, err := ck.GetPartition(key)
	if err != nil {
		return fmt.Errorf("GetPartition(%q): %w", key, err)
	}
	primary := ck.GetPrimary(p)
	if primary == nil {
		return fmt.Errorf("%s has no primary", p.ID)
	}
	var replicas []string
	for _, r := range ck.GetReplicas(p) {
		replicas = append(replicas, r.ID)
	}
	for _, n := range nodes {
		isPrimary, isReplica := n.ck.IsPrimary(p), n.ck.IsReplica(p)
		if isPrimary != (n.id == primary.ID) || isReplica != slices.Contains(replicas, n.id) {
			return fmt.Errorf("%s: %s says IsPrimary=%v IsReplica=%v, but the map names primary %s, replicas %v",
				key, n.id, isPrimary, isReplica, primary.ID, replicas)
		}
	}
	fmt.Fprintf(w, "  %-12s -> %-13s primary %s (%s), replicas %v\n", key, p.ID, primary.ID, primary.IP, replicas)
	return nil
}

// getCluster fetches GET /cluster from ck's HTTP API and checks it against the node's own view.
func getCluster(ctx context.Context, w io.Writer, ck *clusterkit.ClusterKit, nodes, partitions int) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	url := "http://" + ck.AdvertiseAddr() + "/cluster"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("GET %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	var body wire.Cluster
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return fmt.Errorf("GET %s: %w", url, err)
	}
	c := body.Cluster
	withPrimary := 0
	for _, p := range c.PartitionMap {
		if p.PrimaryNode != "" {
			withPrimary++
		}
	}
	fmt.Fprintf(w, "GET %s -> %s\n", url, resp.Status)
	fmt.Fprintf(w, "  epoch %d, leader %s, %d nodes, %d partitions (%d with a primary), hash %s mod %d\n",
		c.Epoch, c.Leader, len(c.Nodes), len(c.PartitionMap), withPrimary, body.HashConfig.Algorithm, body.HashConfig.Modulo)
	switch {
	case c.Epoch != ck.Epoch() || c.Leader != ck.Leader():
		return fmt.Errorf("GET /cluster says epoch %d from %s, the node holds epoch %d from %s",
			c.Epoch, c.Leader, ck.Epoch(), ck.Leader())
	case len(c.Nodes) != nodes:
		return fmt.Errorf("GET /cluster lists %d nodes, want %d", len(c.Nodes), nodes)
	case len(c.PartitionMap) != partitions || withPrimary != partitions:
		return fmt.Errorf("GET /cluster lists %d partitions, %d with a primary, want %d", len(c.PartitionMap), withPrimary, partitions)
	}
	return nil
}
