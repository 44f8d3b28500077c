package main

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/clusterkit-go/clusterkit/internal/etcdtest"
)

func TestMain(m *testing.M) { os.Exit(etcdtest.RunWithoutLeaks(m)) }

// The smallest case runs every scenario, settles each, and measures something for each.
func TestRunSmallestCase(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rows, err := Run(ctx, Config{Partitions: []int{64}, Nodes: []int{3}, ReplicationFactor: 3, Timeout: 30 * time.Second, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		scenario string
		live     int
	}{{"form", 3}, {"join 1", 4}, {"join 1", 5}, {"leave 1", 4}}
	if len(rows) != len(want) {
		t.Fatalf("got %d rows, want %d: %+v", len(rows), len(want), rows)
	}
	for i, tt := range want {
		r := rows[i]
		t.Logf("%+v", r)
		if r.Scenario != tt.scenario || r.Live != tt.live || r.Partitions != 64 || r.Nodes != 3 {
			t.Errorf("row %d is %q with %d live nodes (P %d, N %d), want %q with %d", i, r.Scenario, r.Live, r.Partitions, r.Nodes, tt.scenario, tt.live)
		}
		if !r.Settled || r.Err != "" || r.Pending != 0 || r.Moving != 0 {
			t.Errorf("%s: settled %v, %d pending, %d moving, error %q", r.Scenario, r.Settled, r.Pending, r.Moving, r.Err)
		}
		if r.Took <= 0 || r.Epochs == 0 || r.Epoch == 0 {
			t.Errorf("%s: took %v, %d epochs up to %d", r.Scenario, r.Took, r.Epochs, r.Epoch)
		}
		if r.Puts == 0 || r.Bytes == 0 || r.MapBytes == 0 || r.MapBytes > r.Bytes {
			t.Errorf("%s: %d puts, %d bytes, %d of the map", r.Scenario, r.Puts, r.Bytes, r.MapBytes)
		}
		if r.DBSize == 0 || r.HeapInuse == 0 || r.ClusterBody == 0 {
			t.Errorf("%s: etcd db %d, heap %d, /cluster %d bytes", r.Scenario, r.DBSize, r.HeapInuse, r.ClusterBody)
		}
	}
	if l := rows[3]; l.LeaveP50 <= 0 || l.LeaveP99 < l.LeaveP50 {
		t.Errorf("leave p50 %v, p99 %v", l.LeaveP50, l.LeaveP99)
	}
	if e := rows[0].Epoch; rows[1].Epoch != e+rows[1].Epochs {
		t.Errorf("join 1 reached epoch %d with %d maps after epoch %d", rows[1].Epoch, rows[1].Epochs, e)
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
