package clusterkit_test

import (
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/clusterkit-go/clusterkit/internal/etcdtest"
	"github.com/clusterkit-go/clusterkit/pkg/clusterkit"
	"github.com/clusterkit-go/clusterkit/pkg/clustertest"
)

// series returns the series of the family name in reg whose labels include want (name, value
// pairs), nil when there is none.
func series(t *testing.T, reg *prometheus.Registry, name string, want ...string) *dto.Metric {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	next:
		for _, m := range f.GetMetric() {
			for i := 0; i+1 < len(want); i += 2 {
				found := false
				for _, l := range m.GetLabel() {
					found = found || l.GetName() == want[i] && l.GetValue() == want[i+1]
				}
				if !found {
					continue next
				}
			}
			return m
		}
	}
	return nil
}

// value is a gauge's or counter's value, a histogram's sample count; -1 for no series.
func value(t *testing.T, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	m := series(t, reg, name, labels...)
	switch {
	case m == nil:
		return -1
	case m.GetGauge() != nil:
		return m.GetGauge().GetValue()
	case m.GetCounter() != nil:
		return m.GetCounter().GetValue()
	case m.GetHistogram() != nil:
		return float64(m.GetHistogram().GetSampleCount())
	}
	t.Fatalf("%s: unexpected type", name)
	return 0
}

// histogramSum is the sum of a histogram's observations.
func histogramSum(t *testing.T, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	m := series(t, reg, name, labels...)
	if m == nil || m.GetHistogram() == nil {
		t.Fatalf("no histogram %s %v", name, labels)
	}
	return m.GetHistogram().GetSampleSum()
}

// expect maps "name" or "name label=value,label=value" to the value a check wants (-1: no
// such series).
type expect map[string]float64

func (e expect) check(t *testing.T, reg *prometheus.Registry) error {
	t.Helper()
	for key, want := range e {
		name, rest, _ := strings.Cut(key, " ")
		var labels []string
		if rest != "" {
			for _, kv := range strings.Split(rest, ",") {
				k, v, _ := strings.Cut(kv, "=")
				labels = append(labels, k, v)
			}
		}
		if got := value(t, reg, name, labels...); got != want {
			return fmt.Errorf("%s = %v, want %v", key, got, want)
		}
	}
	return nil
}

// The leader's metrics follow what it publishes: its terms, the maps by cause, the copies in
// flight into each node and the partitions they leave under-replicated, the time each copy took
// to complete; the node that copies records the time its hooks took. When the leader stops, its
// gauges go back to zero and the new leader reports.
func TestLeaderAndHandoffMetrics(t *testing.T) {
	c := clustertest.New(t, clusterkit.Options{PartitionCount: 8, ReplicationFactor: 2})
	reg1, reg2 := prometheus.NewRegistry(), prometheus.NewRegistry()
	o1 := c.Options("node-1")
	o1.Registerer = reg1
	c.Start(o1)
	etcdtest.WaitFor(t, 10*time.Second, "node-1 leads and published", func() error {
		return expect{
			"clusterkit_is_leader":                                   1,
			"clusterkit_leader_terms_total":                          1,
			"clusterkit_maps_published_total reason=create":          1,
			"clusterkit_maps_published_total reason=join":            0,
			"clusterkit_partitions_under_replicated":                 0,
			"clusterkit_handoffs_running node=node-1":                0,
			"clusterkit_hook_duration_seconds hook=partition_change": 0,
		}.check(t, reg1)
	})
	if problems, err := testutil.GatherAndLint(reg1); err != nil || len(problems) > 0 {
		t.Fatalf("metric lint: %v %v", problems, err)
	}

	// node-2 joins with a hook that holds its copies until release.
	release := make(chan struct{})
	var copying atomic.Int32
	var events atomic.Int32
	o2 := c.Options("node-2")
	o2.Registerer = reg2
	c.Start(o2, func(ck *clusterkit.ClusterKit) {
		ck.OnPartitionChange(func(_ string, _ []*clusterkit.Node, to *clusterkit.Node) {
			if to.ID == "node-2" {
				copying.Add(1)
				<-release
			}
		})
		ck.OnEvent(func(clusterkit.Event) { events.Add(1) })
	})
	etcdtest.WaitFor(t, 10*time.Second, "node-2's copies in flight", func() error {
		return expect{
			"clusterkit_maps_published_total reason=join": 1,
			"clusterkit_handoffs_running node=node-2":     8,
			"clusterkit_handoffs_running node=node-1":     0,
			"clusterkit_handoffs_pending":                 8,
			"clusterkit_partitions_under_replicated":      8,
			"clusterkit_handoff_duration_seconds":         0,
		}.check(t, reg1)
	})
	held := time.Now()
	time.Sleep(50 * time.Millisecond) // long enough to be told from zero in the durations
	close(release)
	etcdtest.WaitFor(t, 10*time.Second, "node-2's copies done", func() error {
		return expect{
			"clusterkit_handoffs_running node=node-2": 0,
			"clusterkit_handoffs_pending":             0,
			"clusterkit_partitions_under_replicated":  0,
			"clusterkit_handoff_duration_seconds":     8,
		}.check(t, reg1)
	})
	heldFor := time.Since(held).Seconds()
	if sum := histogramSum(t, reg1, "clusterkit_handoff_duration_seconds"); sum < 8*0.05 || sum > 8*(heldFor+5) {
		t.Fatalf("8 copies held for at least 50ms (%.3fs in all) took %.3fs in all", heldFor, sum)
	}
	if value(t, reg1, "clusterkit_maps_published_total", "reason", "handoff") < 1 {
		t.Fatal("no map published for the completed copies")
	}
	if n := value(t, reg2, "clusterkit_hook_duration_seconds", "hook", "partition_change"); n < 8 {
		t.Fatalf("%v partition_change hooks timed on node-2, want at least its 8 copies", n)
	}
	if sum := histogramSum(t, reg2, "clusterkit_hook_duration_seconds", "hook", "partition_change"); sum < 8*0.05 {
		t.Fatalf("node-2's held hooks took %.3fs in all", sum)
	}
	etcdtest.WaitFor(t, 10*time.Second, "node-2's OnEvent hooks timed", func() error {
		if n := value(t, reg2, "clusterkit_hook_duration_seconds", "hook", "event"); n < 1 || n != float64(events.Load()) {
			return fmt.Errorf("%v OnEvent hooks timed, %d called", n, events.Load())
		}
		return nil
	})
	if v := value(t, reg2, "clusterkit_is_leader"); v != 0 {
		t.Fatalf("node-2 is_leader = %v before node-1 left", v)
	}

	// The leader leaves: its last map goes out without it, its gauges go back to zero, node-2
	// leads.
	c.Stop("node-1")
	if err := (expect{
		"clusterkit_is_leader":                         0,
		"clusterkit_leader_terms_total":                1,
		"clusterkit_maps_published_total reason=leave": 1,
		"clusterkit_handoffs_pending":                  0,
		"clusterkit_handoffs_running node=node-2":      -1,
	}).check(t, reg1); err != nil {
		t.Fatalf("node-1 after it left: %v", err)
	}
	etcdtest.WaitFor(t, 10*time.Second, "node-2 leads", func() error {
		return expect{"clusterkit_is_leader": 1, "clusterkit_leader_terms_total": 1}.check(t, reg2)
	})
}

// Every lease renewal records the share of the TTL that was left: with renewals every third of
// the TTL and a deadline at 90% of it, about 0.55 on a healthy node, never near zero.
func TestLeaseRenewalMargin(t *testing.T) {
	c := clustertest.New(t, clusterkit.Options{PartitionCount: 4})
	reg := prometheus.NewRegistry()
	o := c.Options("node-1")
	o.Registerer = reg
	c.Start(o)
	etcdtest.WaitFor(t, 10*time.Second, "a renewal", func() error {
		if n := value(t, reg, "clusterkit_lease_renewal_margin_ratio"); n < 1 {
			return fmt.Errorf("%v renewals", n)
		}
		return nil
	})
	h := series(t, reg, "clusterkit_lease_renewal_margin_ratio").GetHistogram()
	mean := h.GetSampleSum() / float64(h.GetSampleCount())
	low := -1.0
	for _, b := range h.GetBucket() {
		if b.GetUpperBound() == 0.3 {
			low = float64(b.GetCumulativeCount())
		}
	}
	if mean < 0.35 || mean > 0.9 || low != 0 {
		t.Fatalf("margin: mean %.3f over %d renewals, %v at or under 0.3; want about 0.55", mean, h.GetSampleCount(), low)
	}
	t.Logf("margin: mean %.3f over %d renewals", mean, h.GetSampleCount())
}
