package main

import (
	"context"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/clusterkit-go/clusterkit/internal/etcdtest"
)

func TestMain(m *testing.M) { os.Exit(etcdtest.RunWithoutLeaks(m)) }

// The smallest case runs every scenario with the nodes in this process, settles each, and
// measures something for each.
func TestRunSmallestCase(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rows, err := Run(ctx, Config{Partitions: []int{64}, Nodes: []int{3}, ReplicationFactor: 3, Timeout: 30 * time.Second, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	checkRows(t, rows, false)
}

// The same case with every node a process of the node binary.
func TestRunProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the node binary")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	rows, err := Run(ctx, Config{Partitions: []int{64}, Nodes: []int{3}, ReplicationFactor: 3, Timeout: 30 * time.Second, Processes: true, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	checkRows(t, rows, true)
}

// checkRows checks the rows of a P=64, N=3 case: each scenario settled with the nodes expected,
// and its figures are consistent with one another.
func checkRows(t *testing.T, rows []Row, processes bool) {
	t.Helper()
	want := []struct {
		scenario string
		live     int
	}{{"form", 3}, {"join 1", 4}, {"join 1", 5}, {"leave 1", 4}, {"crash 1", 3}}
	if len(rows) != len(want) {
		t.Fatalf("got %d rows, want %d: %+v", len(rows), len(want), rows)
	}
	for i, tt := range want {
		r := rows[i]
		t.Logf("%+v", r)
		if r.Scenario != tt.scenario || r.Live != tt.live || r.Partitions != 64 || r.Nodes != 3 || r.Processes != processes {
			t.Errorf("row %d is %q with %d live nodes (P %d, N %d, processes %v), want %q with %d", i, r.Scenario, r.Live, r.Partitions, r.Nodes, r.Processes, tt.scenario, tt.live)
		}
		if !r.Settled || r.Err != "" || r.Pending != 0 || r.Moving != 0 {
			t.Errorf("%s: settled %v, %d pending, %d moving, error %q", r.Scenario, r.Settled, r.Pending, r.Moving, r.Err)
		}
		if r.Took <= 0 || r.Epochs == 0 || r.Epoch == 0 {
			t.Errorf("%s: took %v, %d epochs up to %d", r.Scenario, r.Took, r.Epochs, r.Epoch)
		}
		if i > 0 && r.Epoch != rows[i-1].Epoch+r.Epochs {
			t.Errorf("%s reached epoch %d with %d maps after epoch %d", r.Scenario, r.Epoch, r.Epochs, rows[i-1].Epoch)
		}
		if r.Puts == 0 || r.Bytes == 0 || r.MapBytes == 0 || r.MapBytes > r.Bytes {
			t.Errorf("%s: %d puts, %d bytes, %d of the map", r.Scenario, r.Puts, r.Bytes, r.MapBytes)
		}
		if r.DBSize == 0 || r.HeapInuse == 0 || r.ClusterBody == 0 {
			t.Errorf("%s: etcd db %d, heap %d, /cluster %d bytes", r.Scenario, r.DBSize, r.HeapInuse, r.ClusterBody)
		}
		if processes {
			if r.NodePeakRSSP50 <= 0 || r.NodePeakRSSMax < r.NodePeakRSSP50 || r.ReadPerNode != 0 || r.HeapPerNode != 0 {
				t.Errorf("%s: node peak RSS p50 %d, max %d; read %d per node, heap %d per node (not measured for processes)",
					r.Scenario, r.NodePeakRSSP50, r.NodePeakRSSMax, r.ReadPerNode, r.HeapPerNode)
			}
		} else {
			// Every node reads at least the map published during the change.
			if r.ReadPerNode <= 0 || r.ReadMax < r.ReadPerNode || r.HeapPerNode == 0 || r.ProcessPeakRSS <= 0 || r.NodePeakRSSMax != 0 {
				t.Errorf("%s: read %d per node, %d at most; heap %d per node; process peak RSS %d; node peak RSS %d",
					r.Scenario, r.ReadPerNode, r.ReadMax, r.HeapPerNode, r.ProcessPeakRSS, r.NodePeakRSSMax)
			}
		}
		leaves := r.Scenario == "leave 1" || r.Scenario == "crash 1"
		if leaves && (r.ArrivalP50 <= 0 || r.ArrivalP99 < r.ArrivalP50) {
			t.Errorf("%s: arrival p50 %v, p99 %v", r.Scenario, r.ArrivalP50, r.ArrivalP99)
		}
		if !leaves && (r.ArrivalP50 != 0 || r.ArrivalP99 != 0) {
			t.Errorf("%s: arrival p50 %v, p99 %v for a join", r.Scenario, r.ArrivalP50, r.ArrivalP99)
		}
	}
}

func TestFirstWithout(t *testing.T) {
	heads := []head{
		{epoch: 4, nodes: []string{"a", "b", "c"}},
		{epoch: 5, nodes: []string{"a", "b", "c"}},
		{epoch: 6, nodes: []string{"a", "c"}},
		{epoch: 7, nodes: []string{"a"}},
	}
	tests := []struct {
		after uint64
		gone  string
		want  uint64
		ok    bool
	}{
		{after: 4, gone: "b", want: 6, ok: true},
		{after: 6, gone: "b", want: 7, ok: true},
		{after: 4, gone: "c", want: 7, ok: true},
		{after: 4, gone: "a", ok: false},
		{after: 7, gone: "c", ok: false},
		{after: 0, gone: "z", want: 4, ok: true},
	}
	for _, tt := range tests {
		got, ok := firstWithout(heads, tt.after, tt.gone)
		if got != tt.want || ok != tt.ok {
			t.Errorf("firstWithout(after %d, %q) = %d, %v, want %d, %v", tt.after, tt.gone, got, ok, tt.want, tt.ok)
		}
	}
}

func TestArrivals(t *testing.T) {
	at := time.Unix(1000, 0)
	ms := func(n int) time.Time { return at.Add(time.Duration(n) * time.Millisecond) }
	seen := map[string][]epochAt{
		// Saw the new map (7) itself.
		"a": {{epoch: 6, at: ms(-50)}, {epoch: 7, at: ms(3)}},
		// Skipped 7: 8 counts.
		"b": {{epoch: 6, at: ms(-40)}, {epoch: 8, at: ms(9)}},
		// Already later than 7 when polling started (cannot happen before the change, but must
		// not count negative).
		"c": {{epoch: 7, at: ms(-1)}},
		// Never got there.
		"d": {{epoch: 6, at: ms(-30)}},
		// The node that went is left out.
		"gone": {{epoch: 6, at: ms(-20)}},
		// Seen with no epoch at all.
		"e": nil,
	}
	ds, missing := arrivals(seen, "gone", 7, at)
	if want := []time.Duration{0, 3 * time.Millisecond, 9 * time.Millisecond}; !slices.Equal(ds, want) {
		t.Errorf("arrivals = %v, want %v", ds, want)
	}
	if want := []string{"d", "e"}; !slices.Equal(missing, want) {
		t.Errorf("missing = %v, want %v", missing, want)
	}
}

func TestPercentile(t *testing.T) {
	ms := func(ns ...int) []time.Duration {
		var out []time.Duration
		for _, n := range ns {
			out = append(out, time.Duration(n)*time.Millisecond)
		}
		return out
	}
	tests := []struct {
		values []time.Duration
		q      int
		want   time.Duration
	}{
		{ms(1), 50, time.Millisecond},
		{ms(1, 2, 3, 4), 50, 2 * time.Millisecond},
		{ms(1, 2, 3, 4), 99, 4 * time.Millisecond},
		{ms(1, 2, 3, 4, 5, 6, 7, 8, 9), 50, 5 * time.Millisecond},
	}
	for _, tt := range tests {
		if got := percentile(tt.values, tt.q); got != tt.want {
			t.Errorf("percentile(%v, %d) = %v, want %v", tt.values, tt.q, got, tt.want)
		}
	}
}
