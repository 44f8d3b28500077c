package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
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
	// Dir holds etcd's and the nodes' data; "" means a temporary directory removed at the end.
	Dir string
	// Report, when set, is called with each row as soon as it is measured.
	Report func(Row)
}

// Row is one scenario of one (partitions, nodes) case.
type Row struct {
	Partitions int    `json:"partitions"`
	Nodes      int    `json:"nodes"`
	Scenario   string `json:"scenario"`
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
	// of their values; MapBytes those of the map's head and chunks.
	Puts     int64 `json:"puts"`
	Bytes    int64 `json:"bytes"`
	MapBytes int64 `json:"map_bytes"`
	// DBSize is the size of etcd's database after the change.
	DBSize int64 `json:"db_size_bytes"`
	// HeapInuse is the Go heap in use by the whole process (etcd, every node, the harness)
	// after the change and a garbage collection.
	HeapInuse uint64 `json:"heap_inuse_bytes"`
	// ClusterBody is the size of one node's GET /cluster body after the change.
	ClusterBody int `json:"cluster_body_bytes"`
	// LeaveP50 and LeaveP99 are, for a leave, the percentiles over the other nodes of the time
	// from Stop until each held a map without the node.
	LeaveP50 time.Duration `json:"leave_p50_ns,omitempty"`
	LeaveP99 time.Duration `json:"leave_p99_ns,omitempty"`
	// Err says why the scenario did not settle or was skipped.
	Err string `json:"error,omitempty"`
}

// Run measures every (partitions, nodes) case of cfg, each on an etcd of its own started in
// this process: form N nodes, one joins, N/2 join at once, one leaves with Stop. A scenario
// that does not settle within cfg.Timeout is reported so, and the case's later scenarios are
// skipped. Run returns when every case has run, or ctx ends; it stops every node and etcd it
// started. It returns an error only when a case cannot run at all (etcd does not start).
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
	var rows []Row
	for _, p := range cfg.Partitions {
		for _, n := range cfg.Nodes {
			caseDir := filepath.Join(dir, fmt.Sprintf("p%d-n%d", p, n))
			rs, err := runCase(ctx, cfg, caseDir, p, n)
			rows = append(rows, rs...)
			if err != nil {
				return rows, fmt.Errorf("partitions %d, nodes %d: %w", p, n, err)
			}
		}
	}
	return rows, nil
}

// scenario is one membership change: it changes the cluster and may fill in row.
type scenario struct {
	name   string
	change func(ctx context.Context, c *cluster, row *Row) error
}

func scenarios(n int) []scenario {
	return []scenario{
		{"form", func(ctx context.Context, c *cluster, _ *Row) error { return c.start(ctx, n) }},
		{"join 1", func(ctx context.Context, c *cluster, _ *Row) error { return c.start(ctx, 1) }},
		{fmt.Sprintf("join %d", n/2), func(ctx context.Context, c *cluster, _ *Row) error { return c.start(ctx, n/2) }},
		{"leave 1", leave},
	}
}

func leave(ctx context.Context, c *cluster, row *Row) error {
	seen, err := c.leave(ctx)
	slices.Sort(seen)
	if len(seen) > 0 {
		row.LeaveP50 = percentile(seen, 50)
		row.LeaveP99 = percentile(seen, 99)
	}
	return err
}

// percentile is the nearest-rank percentile q of sorted values (with fewer than 100 values,
// the 99th is the largest).
func percentile(sorted []time.Duration, q int) time.Duration {
	i := (q*len(sorted)+99)/100 - 1
	return sorted[max(0, i)]
}

func runCase(ctx context.Context, cfg Config, dir string, p, n int) ([]Row, error) {
	c, err := startCluster(ctx, dir, p, cfg.ReplicationFactor, cfg.Timeout)
	if err != nil {
		return nil, err
	}
	defer c.close()
	var rows []Row
	skip := ""
	for _, s := range scenarios(n) {
		row := Row{Partitions: p, Nodes: n, Scenario: s.name}
		if skip != "" {
			row.Err = skip
		} else {
			measure(ctx, c, s, &row)
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
	start := time.Now()
	err = s.change(ctx, c, row)
	if err == nil {
		err = c.waitSettled(ctx)
	}
	row.Took = time.Since(start)
	row.Settled = err == nil
	if err != nil {
		row.Err = fmt.Sprintf("not settled after %v: %v", row.Took.Round(time.Millisecond), err)
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
	var errs []error
	t, err := c.tally(after)
	errs = append(errs, err)
	d := t.minus(before)
	row.Puts, row.Bytes, row.MapBytes = d.puts, d.bytes, d.mapBytes
	row.DBSize, err = c.dbSize(after)
	errs = append(errs, err)
	row.HeapInuse = heapInuse()
	if len(c.nodes) > 0 {
		row.ClusterBody, err = c.clusterBody()
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		row.Err = joinText(row.Err, "measuring: "+err.Error())
	}
}

func joinText(a, b string) string {
	if a == "" {
		return b
	}
	return a + "; " + b
}
