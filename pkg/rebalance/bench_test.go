package rebalance

import (
	"flag"
	"fmt"
	"math"
	"os"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
)

var updateDoc = flag.Bool("update-doc", false, "rewrite the benchmark table in doc.go from this run's BenchmarkPlacement results")

func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 && *updateDoc {
		if err := writeTable("doc.go"); err != nil {
			fmt.Fprintln(os.Stderr, err)
			code = 1
		}
	}
	os.Exit(code)
}

type benchCell struct{ P, N, R int }

// benchRow is one algorithm's figures for one cell.
type benchRow struct {
	cell          benchCell
	algo          string
	replicaMax    float64 // most replicas on a node / average
	primaryMax    float64 // most primaries on a node / average
	moveJoin      float64 // replicas copied when a node joins / the minimum
	moveLeave     float64 // replicas copied when a node leaves / the minimum
	primaryJoin   float64 // primary roles moved when a node joins / floor(P/(N+1))
	join, leave   time.Duration
	fasterThanHRW float64 // rendezvous join time / our slower of join and leave; ours only
}

var (
	benchRows  = map[string]benchRow{} // by sub-benchmark name
	benchOrder []string
	hrwJoin    = map[benchCell]time.Duration{}
)

type algorithm struct {
	name  string
	place func(prev Map, nodes []Node, cfg Config) Map
}

var algorithms = []algorithm{
	{"rendezvous", func(_ Map, nodes []Node, cfg Config) Map { return rendezvousMap(nodes, cfg) }},
	{"ring-100", func(_ Map, nodes []Node, cfg Config) Map { return ringMap(nodes, cfg, 100) }},
	{"ring-1000", func(_ Map, nodes []Node, cfg Config) Map { return ringMap(nodes, cfg, 1000) }},
	{"jump", func(_ Map, nodes []Node, cfg Config) Map { return jumpMap(nodes, cfg) }},
	{"rebalance", func(prev Map, nodes []Node, cfg Config) Map {
		m, err := Compute(prev, nodes, cfg)
		if err != nil {
			panic(err)
		}
		return m
	}},
}

// BenchmarkPlacement compares Compute with the baselines on every cell of the grid: balance of a
// fresh placement, copies and primary moves on one join and one leave against the minimum, and the
// time to compute the join and the leave. The node that leaves is the middle one by ID, the same
// for every algorithm. Run it once per cell:
//
//	go test ./pkg/rebalance -run '^$' -bench Placement -benchtime=1x -timeout 60m
func BenchmarkPlacement(b *testing.B) {
	for _, P := range []int{64, 4096, 65536} {
		for _, N := range []int{3, 10, 100, 1000} {
			for _, R := range []int{1, 3} {
				if P*R/(N+1) == 0 {
					continue // a joiner gets no replica: no movement ratio to report
				}
				cell := benchCell{P, N, R}
				for _, a := range algorithms {
					b.Run(fmt.Sprintf("P=%d/N=%d/R=%d/%s", P, N, R, a.name), func(b *testing.B) {
						benchCellAlgo(b, cell, a)
					})
				}
			}
		}
	}
}

func benchNodes(n int) []Node {
	nodes := make([]Node, n)
	for i := range nodes {
		nodes[i] = Node{ID: fmt.Sprintf("node-%d", i)}
	}
	return nodes
}

// timeIt returns the fastest of up to 20 runs of f within about a second (one run if it is slow)
// and f's last result. On a shared machine the fastest run is the one least disturbed.
func timeIt(f func() Map) (time.Duration, Map) {
	var best time.Duration
	var m Map
	var total time.Duration
	for runs := 0; runs < 20 && total < time.Second; runs++ {
		start := time.Now()
		m = f()
		d := time.Since(start)
		total += d
		if runs == 0 || d < best {
			best = d
		}
	}
	return best, m
}

func benchCellAlgo(b *testing.B, cell benchCell, a algorithm) {
	cfg := Config{Partitions: cell.P, ReplicationFactor: cell.R}
	nodes := benchNodes(cell.N)
	slices.SortFunc(nodes, func(x, y Node) int { return strings.Compare(x.ID, y.ID) })
	joined := append(slices.Clone(nodes), Node{ID: "joiner"})
	leaver := nodes[cell.N/2].ID
	left := slices.Delete(slices.Clone(nodes), cell.N/2, cell.N/2+1)

	initial := a.place(nil, nodes, cfg)
	joinTime, join := timeIt(func() Map { return a.place(initial, joined, cfg) })
	var leaveTime time.Duration
	var leave Map
	if cell.N > 1 {
		leaveTime, leave = timeIt(func() Map { return a.place(initial, left, cfg) })
	}
	b.ResetTimer()
	for b.Loop() {
		a.place(initial, joined, cfg)
	}
	b.StopTimer()

	row := benchRow{cell: cell, algo: a.name, join: joinTime, leave: leaveTime}
	r := min(cell.R, cell.N)
	replicas, primaries := loads(initial)
	row.replicaMax = float64(slices.Max(valuesOf(replicas, nodes))) / (float64(cell.P*r) / float64(cell.N))
	row.primaryMax = float64(slices.Max(valuesOf(primaries, nodes))) / (float64(cell.P) / float64(cell.N))
	rj := min(cell.R, cell.N+1)
	row.moveJoin = ratio(copies(Moves(initial, join)), cell.P*rj/(cell.N+1))
	row.primaryJoin = ratio(len(PrimaryMoves(initial, join)), cell.P/(cell.N+1))
	if leave != nil {
		rl := min(cell.R, cell.N-1)
		row.moveLeave = ratio(copies(Moves(initial, leave)), max(0, replicas[leaver]-cell.P*(r-rl)))
	}
	switch a.name {
	case "rendezvous":
		hrwJoin[cell] = joinTime
	case "rebalance":
		hrw, ok := hrwJoin[cell]
		if !ok {
			hrw, _ = timeIt(func() Map { return rendezvousMap(joined, cfg) })
			hrwJoin[cell] = hrw
		}
		row.fasterThanHRW = float64(hrw) / float64(max(joinTime, leaveTime))
		b.ReportMetric(row.fasterThanHRW, "x-faster-than-rendezvous")
	}
	b.ReportMetric(row.replicaMax, "replica-max/avg")
	b.ReportMetric(row.primaryMax, "primary-max/avg")
	b.ReportMetric(row.moveJoin, "move/min-join")
	b.ReportMetric(row.moveLeave, "move/min-leave")
	b.ReportMetric(row.primaryJoin, "primary-move/min-join")
	b.ReportMetric(float64(joinTime.Nanoseconds())/1e6, "join-ms")
	b.ReportMetric(float64(leaveTime.Nanoseconds())/1e6, "leave-ms")
	if _, seen := benchRows[b.Name()]; !seen {
		benchOrder = append(benchOrder, b.Name())
	}
	benchRows[b.Name()] = row
}

func valuesOf(m map[string]int, nodes []Node) []int {
	v := make([]int, len(nodes))
	for i, n := range nodes {
		v[i] = m[n.ID]
	}
	return v
}

// ratio is moved/minimum, 1 when both are zero.
func ratio(moved, minimum int) float64 {
	if minimum == 0 {
		if moved == 0 {
			return 1
		}
		return math.Inf(1)
	}
	return float64(moved) / float64(minimum)
}

const (
	tableStart = "// Results of the last run of that command"
	tableEnd   = "package rebalance"
)

// writeTable replaces the benchmark table at the end of the package comment in path.
func writeTable(path string) error {
	if len(benchOrder) == 0 {
		return fmt.Errorf("-update-doc: no BenchmarkPlacement result in this run (add -bench Placement)")
	}
	if len(variantRows) == 0 {
		return fmt.Errorf("-update-doc: no BenchmarkPlacementVariants result in this run (add -bench Placement)")
	}
	src, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	text := string(src)
	i, j := strings.Index(text, tableStart), strings.LastIndex(text, tableEnd)
	if i < 0 || j < i {
		return fmt.Errorf("-update-doc: %s has no %q line before %q", path, tableStart, tableEnd)
	}
	var t strings.Builder
	fmt.Fprintf(&t, "%s (%s/%s, %d CPUs, %s). Ratios to the minimum: 1.00 is optimal.\n",
		tableStart, runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.Version())
	t.WriteString("// Timings are the fastest of up to 20 runs (within about a second) of one join or one leave.\n//\n")
	fmt.Fprintf(&t, "//\t%-5s %-4s %-1s  %-10s %11s %11s %10s %10s %9s %10s %10s %7s\n", "P", "N", "R", "algorithm",
		"replica-max", "primary-max", "move-join", "move-leave", "prim-join", "join-ms", "leave-ms", "vs-HRW")
	for _, name := range benchOrder {
		row := benchRows[name]
		faster := "-"
		if row.algo == "rebalance" {
			faster = fmt.Sprintf("%.0fx", row.fasterThanHRW)
		}
		fmt.Fprintf(&t, "//\t%-5d %-4d %-1d  %-10s %11.2f %11.2f %10.2f %10.2f %9.2f %10.3f %10.3f %7s\n",
			row.cell.P, row.cell.N, row.cell.R, row.algo, row.replicaMax, row.primaryMax,
			row.moveJoin, row.moveLeave, row.primaryJoin,
			float64(row.join.Nanoseconds())/1e6, float64(row.leave.Nanoseconds())/1e6, faster)
	}
	if len(variantRows) > 0 {
		t.WriteString("//\n")
		t.WriteString("// BenchmarkPlacementVariants, same run: P=65536, N=1000, R=3 with zones and weights (see its doc).\n")
		t.WriteString("// replica-dev and primary-dev are the largest distance, in partitions, between a node's count and\n")
		t.WriteString("// its fair share; move-join and move-leave are copies over the lower bound of the property tests;\n")
		t.WriteString("// prim-join is primary roles moved over the joiner's primary share, rounded down.\n//\n")
		fmt.Fprintf(&t, "//\t%-16s %11s %11s %10s %10s %9s %10s %10s %7s\n", "variant",
			"replica-dev", "primary-dev", "move-join", "move-leave", "prim-join", "join-ms", "leave-ms", "vs-HRW")
		for _, row := range variantRows {
			fmt.Fprintf(&t, "//\t%-16s %11.2f %11.2f %10.2f %10.2f %9.2f %10.3f %10.3f %6.0fx\n",
				row.name, row.replicaDev, row.primDev, row.moveJoin, row.moveLeave, row.primaryJoin,
				float64(row.join.Nanoseconds())/1e6, float64(row.leave.Nanoseconds())/1e6, row.fasterThanRendezvous)
		}
	}
	out := text[:i] + t.String() + text[j:]
	return os.WriteFile(path, []byte(out), 0o644)
}
