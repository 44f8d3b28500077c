package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/clusterkit-go/clusterkit/pkg/clusterkit"
)

// Config says which cases Run measures.
type Config struct {
	// Partitions are the partition counts to measure.
	Partitions []int
	// Nodes are the node counts to measure with each partition count.
	Nodes []int
	// ReplicationFactor of every cluster.
	ReplicationFactor int
	// Timeout bounds each scenario: a cluster not settled by then is reported as such.
	Timeout time.Duration
	// Processes runs every node as a process of the node binary (cmd/clusterkit-node, built
	// once) instead of in this process.
	Processes bool
	// Dir holds etcd's and the nodes' data (and the node processes' logs); "" means a temporary
	// directory removed at the end.
	Dir string
	// Report, when set, is called with each row as soon as it is measured.
	Report func(Row)
	// Skip names scenarios not to run ("join 1", "leave 1", "crash 1", or "join half" for the
	// N/2 that join at once); the cluster is always formed.
	Skip []string
	// MemProfile, when set, is a path prefix: after each scenario of in-process nodes a heap
	// profile is written to <prefix>-<P>-<N>-<scenario>.pprof.
	MemProfile string
}

// Row is one scenario of one (partitions, nodes) case.
type Row struct {
	Partitions int    `json:"partitions"`
	Nodes      int    `json:"nodes"`
	Scenario   string `json:"scenario"`
	// Processes is true when the nodes ran as processes of their own.
	Processes bool `json:"processes"`
	// Live is the number of live nodes after the scenario.
	Live    int  `json:"live"`
	Settled bool `json:"settled"`
	// Took is the time from the change until the cluster settled (or the timeout).
	Took time.Duration `json:"took_ns"`
	// Epochs is the number of maps published during the change; Epoch the epoch in etcd after.
	Epochs uint64 `json:"epochs"`
	Epoch  uint64 `json:"epoch"`
	// Pending and Moving are the copies pending and the partitions moving in the map in etcd
	// after the change: 0 when settled.
	Pending int `json:"pending"`
	Moving  int `json:"moving"`
	// Puts and Bytes count the puts under the cluster's prefix during the change and the bytes
	// of their values; MapBytes those of the map (the partitions key and every key under
	// partitions/).
	Puts     int64 `json:"puts"`
	Bytes    int64 `json:"bytes"`
	MapBytes int64 `json:"map_bytes"`
	// ReadPerNode and ReadMax are the mean and the largest, over the nodes live after the
	// change, of the bytes each received from etcd during it (gRPC messages: payload and gRPC
	// framing; a node that joined counts from its start). In-process nodes only.
	ReadPerNode int64 `json:"read_per_node_bytes,omitempty"`
	ReadMax     int64 `json:"read_max_bytes,omitempty"`
	// DBSize is the size of etcd's database after the change.
	DBSize int64 `json:"db_size_bytes"`
	// HeapInuse is the Go heap in use by the whole process (etcd and the harness, and every
	// node when they run in it) after the change and a garbage collection; HeapPerNode is
	// HeapInuse over the live nodes, for in-process nodes.
	HeapInuse   uint64 `json:"heap_inuse_bytes"`
	HeapPerNode uint64 `json:"heap_per_node_bytes,omitempty"`
	// ProcessPeakRSS is, for in-process nodes, the peak resident memory of the whole process
	// during the change (etcd, every node and the harness).
	ProcessPeakRSS int64 `json:"process_peak_rss_bytes,omitempty"`
	// NodePeakRSSP50 and NodePeakRSSMax are, for node processes, the median and the largest
	// over the live nodes of each process's peak resident memory since it started.
	NodePeakRSSP50 int64 `json:"node_peak_rss_p50_bytes,omitempty"`
	NodePeakRSSMax int64 `json:"node_peak_rss_max_bytes,omitempty"`
	// ClusterBody is the size of one node's GET /cluster body after the change.
	ClusterBody int `json:"cluster_body_bytes"`
	// ArrivalP50 and ArrivalP99 are, for a leave or a crash, the percentiles over the other
	// nodes of the time from the change until each held the first map without the node.
	ArrivalP50 time.Duration `json:"arrival_p50_ns,omitempty"`
	ArrivalP99 time.Duration `json:"arrival_p99_ns,omitempty"`
	// Err says why the scenario did not settle or was skipped.
	Err string `json:"error,omitempty"`
}

// Run measures every (partitions, nodes) case of cfg, each on an etcd of its own started in
// this process: form N nodes, one joins, N/2 join at once, one leaves with Stop, one crashes.
// A scenario that does not settle within cfg.Timeout is reported so, and the case's later
// scenarios are skipped. Run returns when every case has run, or ctx ends; it stops every node
// and etcd it started. It returns an error only when a case cannot run at all (etcd does not
// start, the node binary does not build).
func Run(ctx context.Context, cfg Config) ([]Row, error) {
	dir := cfg.Dir
	if dir == "" {
		d, err := os.MkdirTemp("", "clusterkit-scale-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(d)
		dir = d
	}
	var bin string
	if cfg.Processes {
		var err error
		if bin, err = buildNode(ctx, dir); err != nil {
			return nil, err
		}
	}
	var rows []Row
	for _, p := range cfg.Partitions {
		for _, n := range cfg.Nodes {
			caseDir := filepath.Join(dir, fmt.Sprintf("p%d-n%d", p, n))
			rs, err := runCase(ctx, cfg, caseDir, bin, p, n)
			rows = append(rows, rs...)
			if err != nil {
				return rows, fmt.Errorf("partitions %d, nodes %d: %w", p, n, err)
			}
		}
	}
	return rows, nil
}

// change is a membership change made.
type change struct {
	// at is when it was made: the call that started or stopped nodes, or the revocation of a
	// killed node's lease.
	at time.Time
	// gone is the node that left or crashed, "" for a join.
	gone string
}

// scenario is one membership change.
type scenario struct {
	name string
	// key names the scenario in Config.Skip.
	key    string
	change func(ctx context.Context, c *cluster) (change, error)
	// leaves is true when a node goes: the new map's arrival on the others is measured.
	leaves bool
}

func scenarios(n int) []scenario {
	join := func(k int) func(context.Context, *cluster) (change, error) {
		return func(ctx context.Context, c *cluster) (change, error) {
			at := time.Now()
			return change{at: at}, c.start(ctx, k)
		}
	}
	half := max(1, n/2)
	return []scenario{
		{name: "form", key: "form", change: join(n)},
		{name: "join 1", key: "join 1", change: join(1)},
		{name: fmt.Sprintf("join %d", half), key: "join half", change: join(half)},
		{name: "leave 1", key: "leave 1", change: func(ctx context.Context, c *cluster) (change, error) { return c.leave(ctx) }, leaves: true},
		{name: "crash 1", key: "crash 1", change: func(ctx context.Context, c *cluster) (change, error) { return c.crash(ctx) }, leaves: true},
	}
}

func runCase(ctx context.Context, cfg Config, dir, bin string, p, n int) ([]Row, error) {
	c, err := startCluster(ctx, dir, p, cfg.ReplicationFactor, cfg.Timeout, bin)
	if err != nil {
		return nil, err
	}
	defer c.close()
	var rows []Row
	skip := ""
	for _, s := range scenarios(n) {
		row := Row{Partitions: p, Nodes: n, Scenario: s.name, Processes: bin != ""}
		switch {
		case skip != "":
			row.Err = skip
		case slices.Contains(cfg.Skip, s.key):
			row.Err = "skipped: not asked for"
		default:
			measure(ctx, c, s, &row)
			if cfg.MemProfile != "" && bin == "" {
				if err := writeHeapProfile(fmt.Sprintf("%s-%d-%d-%s.pprof", cfg.MemProfile, p, n, strings.ReplaceAll(s.name, " ", ""))); err != nil {
					row.Err = joinText(row.Err, err.Error())
				}
			}
			if !row.Settled {
				skip = fmt.Sprintf("skipped: %s did not settle", s.name)
			}
		}
		row.Live = len(c.nodes)
		rows = append(rows, row)
		if cfg.Report != nil {
			cfg.Report(row)
		}
	}
	return rows, nil
}

// quiet is the pause before each change: twice the default CoalesceWindow.
const quiet = 2 * clusterkit.DefaultCoalesceWindow

// measure runs one scenario on c and fills in row; every wait in it ends with c.timeout.
func measure(ctx context.Context, c *cluster, s scenario, row *Row) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	fail := func(err error) { row.Err = err.Error() }
	before, err := c.tally(ctx)
	if err != nil {
		fail(err)
		return
	}
	// A change within CoalesceWindow of the last map waits for the window to end: start after
	// a quiet period, as a change in production usually does.
	time.Sleep(quiet)
	var epoch0 uint64
	if c.last != nil {
		epoch0 = c.last.Epoch
	}
	read0 := make(map[string]int64, len(c.nodes))
	for _, n := range c.nodes {
		read0[n.id()] = n.received()
	}
	var errs []error
	if c.bin == "" {
		errs = append(errs, resetPeakRSS("self"))
	}
	var rec *recorder
	if s.leaves {
		rec = record(c.nodes, c.pollEvery())
	}
	start := time.Now()
	ch, err := s.change(ctx, c)
	if ch.at.IsZero() {
		ch.at = start
	}
	if err == nil {
		err = c.waitSettled(ctx)
	}
	row.Took = time.Since(ch.at)
	row.Settled = err == nil
	if err != nil {
		row.Err = fmt.Sprintf("not settled after %v: %v", row.Took.Round(time.Millisecond), err)
	}
	var seen map[string][]epochAt
	if rec != nil {
		seen = rec.close()
	}

	// The figures after the change are read with a context of their own: the scenario's may
	// have ended.
	after, cancel := context.WithTimeout(context.Background(), 2*readTimeout)
	defer cancel()
	if err := c.readMap(after); err == nil {
		row.Epoch = c.last.Epoch
		row.Epochs = c.last.Epoch - epoch0
		row.Pending, row.Moving = inFlight(c.last)
	}
	t, err := c.tally(after)
	errs = append(errs, err)
	d := t.minus(before)
	row.Puts, row.Bytes, row.MapBytes = d.puts, d.bytes, d.mapBytes
	if s.leaves && ch.gone != "" && err == nil {
		errs = append(errs, arrival(c, seen, epoch0, ch, row))
	}
	row.ReadPerNode, row.ReadMax = readPerNode(c.nodes, read0)
	row.DBSize, err = c.dbSize(after)
	errs = append(errs, err)
	errs = append(errs, memory(c, row))
	if len(c.nodes) > 0 {
		row.ClusterBody, err = c.nodes[0].clusterBody(after)
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		row.Err = joinText(row.Err, "measuring: "+err.Error())
	}
}

// arrival fills in the percentiles of the new map's arrival after ch, from the epochs the
// nodes were seen holding and the maps published after epoch0 (the watch has seen them all).
func arrival(c *cluster, seen map[string][]epochAt, epoch0 uint64, ch change, row *Row) error {
	want, ok := firstWithout(c.writes.headsAfter(epoch0), epoch0, ch.gone)
	if !ok {
		return fmt.Errorf("no map after epoch %d without %s", epoch0, ch.gone)
	}
	ds, missing := arrivals(seen, ch.gone, want, ch.at)
	if len(ds) > 0 {
		row.ArrivalP50 = percentile(ds, 50)
		row.ArrivalP99 = percentile(ds, 99)
	}
	if len(missing) > 0 {
		return fmt.Errorf("%v never seen holding epoch %d (the first without %s)", missing, want, ch.gone)
	}
	return nil
}

// readPerNode returns the mean and the largest of the bytes each of nodes received since read0
// (from its start for a node not in read0); zeros when the nodes' reads are not counted.
func readPerNode(nodes []node, read0 map[string]int64) (mean, most int64) {
	var sum int64
	for _, n := range nodes {
		r := n.received()
		if r < 0 {
			return 0, 0
		}
		r -= read0[n.id()]
		sum += r
		most = max(most, r)
	}
	if len(nodes) == 0 {
		return 0, 0
	}
	return sum / int64(len(nodes)), most
}

// memory fills in the memory figures of row: the process's heap, and the peak resident memory
// of the process (in-process nodes) or of each node process.
func memory(c *cluster, row *Row) error {
	row.HeapInuse = heapInuse()
	if c.bin == "" {
		if len(c.nodes) > 0 {
			row.HeapPerNode = row.HeapInuse / uint64(len(c.nodes))
		}
		var err error
		row.ProcessPeakRSS, err = readPeakRSS("self")
		return err
	}
	var rss []int64
	var errs []error
	for _, n := range c.nodes {
		r, err := n.peakRSS()
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", n.id(), err))
			continue
		}
		rss = append(rss, r)
	}
	if len(rss) > 0 {
		slices.Sort(rss)
		row.NodePeakRSSP50, row.NodePeakRSSMax = percentile(rss, 50), rss[len(rss)-1]
	}
	return errors.Join(errs...)
}

func joinText(a, b string) string {
	if a == "" {
		return b
	}
	return a + "; " + b
}
