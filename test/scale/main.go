// Command scale measures how ClusterKit's map pipeline scales with the partition count and the
// node count. For each partition count P and node count N it starts an etcd of its own in this
// process (127.0.0.1, free ports, fsync off: the figures are not those of a durable etcd) and runs
// nodes against it, with hooks that do nothing and a LeaseTTL of 5s. By default the nodes run in
// this process, each with an etcd client of its own; with -processes each node is a process of
// the node binary (cmd/clusterkit-node, built once with go build into the run's directory), for
// small N, so that each node's memory can be measured apart:
//
//	go run ./test/scale -partitions 64,4096,65536 -nodes 3,10,100 -r 3 -timeout 2m [-json]
//	go run ./test/scale -processes -partitions 64,4096,65536 -nodes 3,6 [-json]
//
// -cpuprofile FILE writes a CPU profile of the run. Flags: -partitions and -nodes (comma-separated lists, default 64,4096 and 3,10), -r (the
// replication factor, default 3), -timeout (bound on each scenario, default 2m), -processes,
// -dir (keep etcd's and the nodes' data and the node processes' logs there; default a temporary
// directory, removed) and -json (one JSON object per row instead of the table).
//
// Scenarios, in order, on one cluster per (P, N), each after a quiet 200ms (twice the default
// CoalesceWindow, so that it is published at once): form (N nodes start at once), join 1, join
// N/2 (at once), leave 1 (the newest node that does not lead calls Stop; a process gets
// SIGTERM) and crash 1 (the newest node that does not lead is killed without a word to etcd: in
// this process its goroutines end as pkg/clustertest's Kill does, a process gets SIGKILL; then
// its lease is revoked, as if its TTL had passed). Each is timed until the cluster settles: every
// node holds the map that is in etcd, and that map lists exactly the live nodes and has no copy
// pending and no partition moving. A scenario that does not settle within -timeout is reported
// as not settled, with the copies pending and the epoch reached, and the rest of its case is
// skipped.
//
// Columns of the table, one row per scenario:
//
//	P, N       partition count; node count of the case (form starts N nodes)
//	live       live nodes after the scenario
//	result     settled, NOT settled, or skipped
//	took       from the change (the start or stop call; for a crash, the lease revocation)
//	           until the cluster settled
//	epochs     maps published during the change
//	puts       puts under /clusterkit/<name>/ during the change (a watch of the whole prefix)
//	written    bytes of the values of those puts
//	map-bytes  those of the map: the partitions key and every key under partitions/
//	read/node  mean over the nodes live after the change of the bytes each received from etcd
//	           during it (gRPC messages received by the node's own etcd client, counted by a
//	           gRPC stats handler: payload and gRPC framing; a node that joined counts from its
//	           start); in-process nodes only
//	read-max   the largest of those
//	etcd-db    etcd's database size after the change
//	heap/N     in this process: the Go heap in use after the change and a GC, over the live
//	           nodes; it includes etcd and the harness, so it overstates a node's share
//	proc-rss   in this process: the process's peak resident memory during the change (etcd,
//	           every node and the harness; the peak is reset before each change)
//	rss-p50,   with -processes, instead of the two above: the median and the largest over the
//	rss-max    live node processes of each one's peak resident memory since it started (VmHWM)
//	/cluster   size of one node's GET /cluster body after the change
//	arr-p50,   for leave and crash: the percentiles over the other nodes of the time from the
//	arr-p99    change until each held the first map without the node (its epoch polled every
//	           1ms in this process, every 5ms from node processes' GET /health)
//	note       why a scenario did not settle or was skipped, or a measurement that failed
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"
)

func main() {
	partitions := flag.String("partitions", "64,4096", "comma-separated partition counts")
	nodes := flag.String("nodes", "3,10", "comma-separated node counts")
	r := flag.Int("r", 3, "replication factor")
	timeout := flag.Duration("timeout", 2*time.Minute, "bound on each scenario")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	processes := flag.Bool("processes", false, "run each node as a process of cmd/clusterkit-node (for small node counts)")
	dir := flag.String("dir", "", "keep etcd's and the nodes' data and logs in this directory (default: a temporary one, removed)")
	asJSON := flag.Bool("json", false, "print one JSON object per row")
	skip := flag.String("skip", "", `comma-separated scenarios not to run: "join 1", "join half", "leave 1", "crash 1"`)
	memProfile := flag.String("memprofile", "", "after each scenario of in-process nodes, write a heap profile to `PREFIX`-<P>-<N>-<scenario>.pprof")
	flag.Parse()
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			fatal("%v", err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fatal("%v", err)
		}
		defer pprof.StopCPUProfile()
	}

	cfg := Config{ReplicationFactor: *r, Timeout: *timeout, Processes: *processes, Dir: *dir, MemProfile: *memProfile}
	var err error
	if cfg.Partitions, err = ints(*partitions); err != nil {
		fatal("-partitions: %v", err)
	}
	if cfg.Nodes, err = ints(*nodes); err != nil {
		fatal("-nodes: %v", err)
	}
	for f := range strings.SplitSeq(*skip, ",") {
		switch f = strings.TrimSpace(f); f {
		case "":
		case "join 1", "join half", "leave 1", "crash 1":
			cfg.Skip = append(cfg.Skip, f)
		default:
			fatal("-skip: unknown scenario %q", f)
		}
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
		printHeader(os.Stdout, *processes)
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

const rowFormat = "%8v %5v %-9v %5v %-11v %9v %6v %7v %9v %9v %9v %9v %9v %9v %9v %9v %9v %9v  %v\n"

// printHeader prints the table's header; the memory columns say what is measured: the process
// shared by every node, or each node process.
func printHeader(w io.Writer, processes bool) {
	mem1, mem2 := "heap/N", "proc-rss"
	if processes {
		mem1, mem2 = "rss-p50", "rss-max"
	}
	fmt.Fprintf(w, rowFormat, "P", "N", "scenario", "live", "result", "took", "epochs", "puts",
		"written", "map-bytes", "read/node", "read-max", "etcd-db", mem1, mem2, "/cluster", "arr-p50", "arr-p99", "note")
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
	if r.ArrivalP50 > 0 {
		p50 = r.ArrivalP50.Round(10 * time.Microsecond).String()
		p99 = r.ArrivalP99.Round(10 * time.Microsecond).String()
	}
	read, readMax := "-", "-"
	if r.ReadPerNode > 0 {
		read, readMax = size(r.ReadPerNode), size(r.ReadMax)
	}
	mem1, mem2 := size(int64(r.HeapPerNode)), size(r.ProcessPeakRSS)
	if r.Processes {
		mem1, mem2 = size(r.NodePeakRSSP50), size(r.NodePeakRSSMax)
	}
	note := r.Err
	if r.Took > 0 && !r.Settled {
		note = fmt.Sprintf("epoch %d, %d copies pending, %d moving: %s", r.Epoch, r.Pending, r.Moving, r.Err)
	}
	fmt.Fprintf(w, rowFormat, r.Partitions, r.Nodes, r.Scenario, r.Live, result, took, r.Epochs, r.Puts,
		size(r.Bytes), size(r.MapBytes), read, readMax, size(r.DBSize), mem1, mem2, size(int64(r.ClusterBody)), p50, p99, note)
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
