// Command scale measures how ClusterKit's map pipeline scales with the partition count and the
// node count. It runs the nodes in this process against one etcd started in the same process
// (127.0.0.1, free ports, fsync off: the figures are not those of a durable etcd), each node
// with its own etcd client, hooks that do nothing and a LeaseTTL of 5s, and prints a row per
// scenario:
//
//	go run ./test/scale -partitions 64,4096 -nodes 3,10 -r 3 -timeout 2m [-json]
//
// For each (partitions P, nodes N) case, on an etcd of its own: form (N nodes start at once),
// join 1, join N/2 at once, leave 1 (a node that does not lead calls Stop), each after a quiet
// 200ms (twice the default CoalesceWindow, so that it is published at once). Each is timed until
// the cluster settles: every node holds the map that is in etcd, and that map lists exactly the
// live nodes and has no copy pending and no partition moving. For each it reports the maps
// published, the puts under /clusterkit/<name>/ and the bytes of their values (from a watch of
// the whole prefix), etcd's database size after, the Go heap in use after (the whole process:
// etcd, every node and the harness), and the size of one node's GET /cluster body; for the
// leave, the p50 and p99 over the other nodes of the time until each held a map without the
// node. A crash (a node that disappears without a word) is not measured yet.
//
// A scenario that does not settle within -timeout is reported as not settled, with the copies
// pending and the epoch reached, and the rest of its case is skipped.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"time"
)

func main() {
	partitions := flag.String("partitions", "64,4096", "comma-separated partition counts")
	nodes := flag.String("nodes", "3,10", "comma-separated node counts")
	r := flag.Int("r", 3, "replication factor")
	timeout := flag.Duration("timeout", 2*time.Minute, "bound on each scenario")
	asJSON := flag.Bool("json", false, "print one JSON object per row")
	flag.Parse()

	cfg := Config{ReplicationFactor: *r, Timeout: *timeout}
	var err error
	if cfg.Partitions, err = ints(*partitions); err != nil {
		fatal("-partitions: %v", err)
	}
	if cfg.Nodes, err = ints(*nodes); err != nil {
		fatal("-nodes: %v", err)
	}
	if *timeout <= 0 {
		fatal("-timeout must be positive")
	}

	var print func(Row)
	if *asJSON {
		enc := json.NewEncoder(os.Stdout)
		print = func(row Row) { enc.Encode(row) }
	} else {
		// Rows are printed as they come (a case can take minutes), in fixed-width columns.
		printHeader(os.Stdout)
		print = func(row Row) { printRow(os.Stdout, row) }
	}
	cfg.Report = print

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if _, err := Run(ctx, cfg); err != nil {
		fatal("%v", err)
	}
}

func fatal(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "scale: "+format+"\n", args...)
	os.Exit(1)
}

// ints parses a comma-separated list of positive integers.
func ints(s string) ([]int, error) {
	var out []int
	for f := range strings.SplitSeq(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("%q is not a positive integer", f)
		}
		out = append(out, n)
	}
	return out, nil
}

const rowFormat = "%8v %5v %-8v %5v %-11v %9v %6v %7v %10v %10v %9v %9v %10v %10v %10v  %v\n"

func printHeader(w io.Writer) {
	fmt.Fprintf(w, rowFormat, "P", "N", "scenario", "live", "result", "took", "epochs", "puts",
		"written", "map-bytes", "etcd-db", "heap", "/cluster", "leave-p50", "leave-p99", "note")
}

func printRow(w io.Writer, r Row) {
	result, took, p50, p99 := "settled", "-", "-", "-"
	switch {
	case r.Took == 0:
		result = "skipped"
	case !r.Settled:
		result = "NOT settled"
	}
	if r.Took > 0 {
		took = r.Took.Round(time.Millisecond).String()
	}
	if r.LeaveP50 > 0 {
		p50 = r.LeaveP50.Round(10 * time.Microsecond).String()
		p99 = r.LeaveP99.Round(10 * time.Microsecond).String()
	}
	note := r.Err
	if r.Took > 0 && !r.Settled {
		note = fmt.Sprintf("epoch %d, %d copies pending, %d moving: %s", r.Epoch, r.Pending, r.Moving, r.Err)
	}
	fmt.Fprintf(w, rowFormat, r.Partitions, r.Nodes, r.Scenario, r.Live, result, took, r.Epochs, r.Puts,
		size(r.Bytes), size(r.MapBytes), size(r.DBSize), size(int64(r.HeapInuse)), size(int64(r.ClusterBody)), p50, p99, note)
}

// size formats a byte count with a binary unit.
func size(b int64) string {
	switch {
	case b >= 1<<30:
		return fmt.Sprintf("%.1fGiB", float64(b)/(1<<30))
	case b >= 1<<20:
		return fmt.Sprintf("%.1fMiB", float64(b)/(1<<20))
	case b >= 1<<10:
		return fmt.Sprintf("%.1fKiB", float64(b)/(1<<10))
	}
	return fmt.Sprintf("%dB", b)
}
