package rebalance

import (
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

var updateDoc = flag.Bool("update-doc", false, "rewrite the benchmark tables in BENCHMARKS.md from this run's BenchmarkPlacement and BenchmarkPlacementVariants results")

func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 && *updateDoc {
		if err := writeTable(benchFile); err != nil {
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

// benchFile is where -update-doc writes the tables, beside this file.
const benchFile = "BENCHMARKS.md"

// tableStart begins the line of benchFile from which -update-doc rewrites the file to its end; the
// text above that line is kept.
const tableStart = "Results of the last run of that command"

// writeTable rewrites path from the tableStart line to its end with this run's results: the rows of
// BenchmarkPlacement in the order they ran, and those of BenchmarkPlacementVariants.
func writeTable(path string) error {
	if len(benchOrder) == 0 {
		return fmt.Errorf("-update-doc: no BenchmarkPlacement result in this run (add -bench Placement)")
	}
	if len(variantRows) == 0 {
		return fmt.Errorf("-update-doc: no BenchmarkPlacementVariants result in this run (add -bench Placement)")
	}
	rows := make([]benchRow, len(benchOrder))
	for i, name := range benchOrder {
		rows[i] = benchRows[name]
	}
	return writeTables(path, rows, variantRows)
}

// writeTables rewrites path from the tableStart line to its end with rows and variants.
func writeTables(path string, rows []benchRow, variants []variantRow) error {
	src, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	text := string(src)
	i := strings.Index("\n"+text, "\n"+tableStart)
	if i < 0 {
		return fmt.Errorf("-update-doc: %s has no line starting with %q", path, tableStart)
	}
	var t strings.Builder
	fmt.Fprintf(&t, "%s (%s/%s, %d CPUs, %s). Ratios to the minimum: 1.00 is optimal.\n",
		tableStart, runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.Version())
	t.WriteString("Timings are the fastest of up to 20 runs (within about a second) of one join or one leave.\n\n")
	cells := make([][]string, len(rows))
	for k, row := range rows {
		faster := "-"
		if row.algo == "rebalance" {
			faster = fmt.Sprintf("%.0fx", row.fasterThanHRW)
		}
		cells[k] = []string{strconv.Itoa(row.cell.P), strconv.Itoa(row.cell.N), strconv.Itoa(row.cell.R), row.algo,
			fmt.Sprintf("%.2f", row.replicaMax), fmt.Sprintf("%.2f", row.primaryMax),
			fmt.Sprintf("%.2f", row.moveJoin), fmt.Sprintf("%.2f", row.moveLeave), fmt.Sprintf("%.2f", row.primaryJoin),
			fmt.Sprintf("%.3f", float64(row.join.Nanoseconds())/1e6), fmt.Sprintf("%.3f", float64(row.leave.Nanoseconds())/1e6),
			faster}
	}
	writeMarkdownTable(&t, []string{"P", "N", "R", "algorithm", "replica-max", "primary-max",
		"move-join", "move-leave", "prim-join", "join-ms", "leave-ms", "vs-HRW"}, 4, cells)
	t.WriteString("\nBenchmarkPlacementVariants, same run: P=65536, N=1000, R=3 with zones and weights (see its doc).\n")
	t.WriteString("replica-dev and primary-dev are the largest distance, in partitions, between a node's count and\n")
	t.WriteString("its fair share; move-join and move-leave are copies over the lower bound of the property tests;\n")
	t.WriteString("prim-join is primary roles moved over the joiner's primary share, rounded down.\n\n")
	cells = make([][]string, len(variants))
	for k, row := range variants {
		cells[k] = []string{row.name,
			fmt.Sprintf("%.2f", row.replicaDev), fmt.Sprintf("%.2f", row.primDev),
			fmt.Sprintf("%.2f", row.moveJoin), fmt.Sprintf("%.2f", row.moveLeave), fmt.Sprintf("%.2f", row.primaryJoin),
			fmt.Sprintf("%.3f", float64(row.join.Nanoseconds())/1e6), fmt.Sprintf("%.3f", float64(row.leave.Nanoseconds())/1e6),
			fmt.Sprintf("%.0fx", row.fasterThanRendezvous)}
	}
	writeMarkdownTable(&t, []string{"variant", "replica-dev", "primary-dev",
		"move-join", "move-leave", "prim-join", "join-ms", "leave-ms", "vs-HRW"}, 1, cells)
	return os.WriteFile(path, []byte(text[:i]+t.String()), 0o644)
}

// writeMarkdownTable writes a Markdown table whose columns are padded to one width, so that it reads
// as well in a terminal as rendered. The first left columns are aligned left, the others right.
func writeMarkdownTable(t *strings.Builder, header []string, left int, rows [][]string) {
	width := make([]int, len(header))
	for c, h := range header {
		width[c] = len(h)
		for _, row := range rows {
			width[c] = max(width[c], len(row[c]))
		}
	}
	line := func(cells []string) {
		for c, s := range cells {
			if c < left {
				fmt.Fprintf(t, "| %-*s ", width[c], s)
			} else {
				fmt.Fprintf(t, "| %*s ", width[c], s)
			}
		}
		t.WriteString("|\n")
	}
	line(header)
	for c := range header {
		if c < left {
			fmt.Fprintf(t, "|%s", strings.Repeat("-", width[c]+2))
		} else {
			fmt.Fprintf(t, "|%s:", strings.Repeat("-", width[c]+1))
		}
	}
	t.WriteString("|\n")
	for _, row := range rows {
		line(row)
	}
}

// TestWriteTables checks what -update-doc does to BENCHMARKS.md, on a copy: the text above the
// results is kept and the results are replaced by the rows of the run.
func TestWriteTables(t *testing.T) {
	src, err := os.ReadFile(benchFile)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), benchFile)
	if err := os.WriteFile(path, src, 0o644); err != nil {
		t.Fatal(err)
	}
	rows := []benchRow{{cell: benchCell{64, 3, 1}, algo: "rebalance", replicaMax: 1.03, primaryMax: 1.03,
		moveJoin: 1, moveLeave: 1, primaryJoin: 1, join: 7 * time.Microsecond, leave: 6 * time.Microsecond, fasterThanHRW: 5}}
	variants := []variantRow{{name: "zones=2", replicaDev: 0.61, primDev: 0.54, moveJoin: 1, moveLeave: 1, primaryJoin: 1,
		join: 7081 * time.Microsecond, leave: 5910 * time.Microsecond, fasterThanRendezvous: 1288}}
	if err := writeTables(path, rows, variants); err != nil {
		t.Fatal(err)
	}
	out, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	text, before := string(out), string(src)
	i := strings.Index(text, "\n"+tableStart)
	if i < 0 || strings.Index(before, "\n"+tableStart) != i || text[:i] != before[:i] {
		t.Fatalf("the text above the results line changed or the line is gone:\n%s", text)
	}
	var tableRows []string
	for _, line := range strings.Split(text[i:], "\n") {
		if strings.HasPrefix(line, "| ") {
			tableRows = append(tableRows, line)
		}
	}
	want := []string{
		"| P  | N | R | algorithm | replica-max | primary-max | move-join | move-leave | prim-join | join-ms | leave-ms | vs-HRW |",
		"| 64 | 3 | 1 | rebalance |        1.03 |        1.03 |      1.00 |       1.00 |      1.00 |   0.007 |    0.006 |     5x |",
		"| variant | replica-dev | primary-dev | move-join | move-leave | prim-join | join-ms | leave-ms | vs-HRW |",
		"| zones=2 |        0.61 |        0.54 |      1.00 |       1.00 |      1.00 |   7.081 |    5.910 |  1288x |",
	}
	if !slices.Equal(tableRows, want) {
		t.Errorf("table rows:\n%s\nwant:\n%s", strings.Join(tableRows, "\n"), strings.Join(want, "\n"))
	}
}
