package clusterkit

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/clusterkit-go/clusterkit/internal/etcdtest"
	"github.com/clusterkit-go/clusterkit/pkg/embed"
)

func TestAssessSize(t *testing.T) {
	const q = 100
	tests := []struct {
		name      string
		sizes     []memberSize
		worst     string
		high      bool
		noSpace   bool
		wantQuota int64
	}{
		{"empty database", []memberSize{{endpoint: "a", size: 1, quota: q}}, "a", false, false, q},
		{"just under", []memberSize{{endpoint: "a", size: 79, quota: q}}, "a", false, false, q},
		{"at the threshold", []memberSize{{endpoint: "a", size: 80, quota: q}}, "a", true, false, q},
		{"in use does not count", []memberSize{{endpoint: "a", size: 90, inUse: 10, quota: q}}, "a", true, false, q},
		{"nearest to its quota, not largest", []memberSize{
			{endpoint: "a", size: 70, quota: q}, {endpoint: "b", size: 60, quota: 64}, {endpoint: "c", size: 10, quota: q},
		}, "b", true, false, 64},
		{"alarm on another member", []memberSize{
			{endpoint: "a", size: 50, quota: q}, {endpoint: "b", size: 10, quota: q, noSpace: true},
		}, "a", false, true, q},
		{"quota not reported is etcd's default", []memberSize{{endpoint: "a", size: 1 << 30}}, "a", false, false,
			embed.DefaultQuotaBackendBytes},
		{"default quota, over", []memberSize{{endpoint: "a", size: 1800 << 20}}, "a", true, false, 2 << 30},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			worst, st := assessSize(tt.sizes)
			if worst.endpoint != tt.worst || st.high != tt.high || st.noSpace != tt.noSpace || worst.quotaOrDefault() != tt.wantQuota {
				t.Fatalf("worst %s (quota %d), state %+v; want %s (quota %d), high %v, noSpace %v",
					worst.endpoint, worst.quotaOrDefault(), st, tt.worst, tt.wantQuota, tt.high, tt.noSpace)
			}
		})
	}
}

// gauge returns the value of the gauge named name in reg, -1 if it is not there.
func gauge(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == name && len(f.GetMetric()) == 1 {
			return f.GetMetric()[0].GetGauge().GetValue()
		}
	}
	return -1
}

// A node on an etcd with a small quota exports the database size and the quota, warns once when
// the database crosses 80% of the quota however many polls see it there, logs etcd's NOSPACE
// alarm once, and says so when the README's procedure (delete, compact, defragment, disarm) has
// freed the space.
func TestEtcdSizeWarnsBeforeTheQuota(t *testing.T) {
	const quota = 4 << 20
	etcd := etcdtest.StartWith(t, func(c *embed.Config) {
		c.QuotaBackendBytes = quota
		c.CompactionRetention = time.Hour // no compaction but the test's own
	})
	core, logs := observer.New(zap.InfoLevel)
	reg := prometheus.NewRegistry()
	ck, err := NewClusterKit(Options{NodeID: "node-1", HTTPAddr: "127.0.0.1:0", DataDir: t.TempDir(), LeaseTTL: 2 * time.Second,
		ShutdownTimeout: 2 * time.Second, EtcdEndpoints: etcd.Member.Endpoints(), Registerer: reg,
		Logger: zap.New(core), etcdSizeEvery: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := ck.Start(); err != nil {
		t.Fatal(err)
	}
	defer ck.Stop()
	count := func(snippet string) int { return logs.FilterMessageSnippet(snippet).Len() }
	size := func() float64 { return gauge(t, reg, "clusterkit_etcd_db_size_bytes") }
	waitFor(t, 5*time.Second, "the size and quota exported", func() error {
		if q := gauge(t, reg, "clusterkit_etcd_db_quota_bytes"); q != quota || size() <= 0 ||
			gauge(t, reg, "clusterkit_etcd_db_size_in_use_bytes") <= 0 {
			return fmt.Errorf("quota %v, size %v", q, size())
		}
		return nil
	})
	if n := count("nearing its quota"); n != 0 {
		t.Fatalf("%d warnings for an empty database", n)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := etcd.Client
	value := strings.Repeat("x", 128<<10)
	i := 0
	// Fill etcd to 80% of its quota. etcd checks the quota against the size its backend last
	// committed, and commits every 100ms: a put every 120ms is counted before the next one is
	// checked, so the database does not jump past the quota.
	for ; ; i++ {
		st, err := c.Status(ctx, etcd.Member.Endpoints()[0])
		if err != nil {
			t.Fatal(err)
		}
		if float64(st.DbSize) >= 0.8*quota {
			break
		}
		if _, err := c.Put(ctx, fmt.Sprintf("/fill/%d", i), value); err != nil {
			t.Fatalf("put %d: %v", i, err)
		}
		time.Sleep(120 * time.Millisecond)
	}
	waitFor(t, 5*time.Second, "the warning", func() error {
		if count("nearing its quota") == 0 {
			return fmt.Errorf("no warning at size %v", size())
		}
		return nil
	})
	// Later polls still see the database over the threshold: no second warning. (A poll that
	// sets the gauge after the test cleared it is a later one.)
	for range 2 {
		ck.env.metrics.etcd.size.Set(-1)
		waitFor(t, 5*time.Second, "a later poll", func() error {
			if s := size(); s < 0.8*quota {
				return fmt.Errorf("size %v", s)
			}
			return nil
		})
	}
	if n := count("nearing its quota"); n != 1 {
		t.Fatalf("%d warnings, want 1", n)
	}

	// Past the quota etcd refuses writes and raises its alarm.
	for ; ; i++ {
		if _, err := c.Put(ctx, fmt.Sprintf("/fill/%d", i), value); err != nil {
			break
		}
	}
	waitFor(t, 5*time.Second, "the NOSPACE error", func() error {
		if count("raised its NOSPACE alarm") == 0 {
			return fmt.Errorf("no error logged at size %v", size())
		}
		return nil
	})

	// The operator's procedure.
	if _, err := c.Delete(ctx, "/fill/", clientv3.WithPrefix()); err != nil {
		t.Fatal(err)
	}
	st, err := c.Status(ctx, etcd.Member.Endpoints()[0])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Compact(ctx, st.Header.Revision, clientv3.WithCompactPhysical()); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Defragment(ctx, etcd.Member.Endpoints()[0]); err != nil {
		t.Fatal(err)
	}
	if _, err := c.AlarmDisarm(ctx, &clientv3.AlarmMember{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the all-clear", func() error {
		if count("back under the warning threshold") != 1 || count("alarm is disarmed") != 1 || size() >= 0.8*quota {
			return fmt.Errorf("size %v, logs %v", size(), logs.All())
		}
		return nil
	})
	if n, m := count("nearing its quota"), count("raised its NOSPACE alarm"); n != 1 || m != 1 {
		t.Errorf("%d warnings and %d alarms logged, want one each", n, m)
	}
}

// A node that runs the cluster's embedded etcd member polls it, and learns its quota from it.
func TestEtcdSizeEmbedded(t *testing.T) {
	reg := prometheus.NewRegistry()
	ck, err := NewClusterKit(Options{NodeID: "node-1", HTTPAddr: "127.0.0.1:0", DataDir: t.TempDir(), LeaseTTL: 2 * time.Second,
		EmbeddedMembers: 1, unsafeNoFsync: true, Registerer: reg, etcdSizeEvery: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := ck.Start(); err != nil {
		t.Fatal(err)
	}
	defer ck.Stop()
	if got := ck.etcdSize.endpoints(); len(got) != 1 || got[0] != ck.members.current().Endpoints()[0] {
		t.Errorf("polls %v, want its own member %v", got, ck.members.current().Endpoints())
	}
	waitFor(t, 5*time.Second, "the size and quota exported", func() error {
		if q, s := gauge(t, reg, "clusterkit_etcd_db_quota_bytes"), gauge(t, reg, "clusterkit_etcd_db_size_bytes"); q != 2<<30 || s <= 0 {
			return fmt.Errorf("quota %v, size %v", q, s)
		}
		return nil
	})
}

// A monitor that reaches no etcd warns once, backs off, and returns as soon as its context ends,
// in the middle of a wait.
func TestEtcdSizeBacksOffAndStops(t *testing.T) {
	client, err := clientv3.New(clientv3.Config{Endpoints: []string{"http://127.0.0.1:1"}, DialTimeout: time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	core, logs := observer.New(zap.InfoLevel)
	e := &env{opts: Options{EtcdDialTimeout: 20 * time.Millisecond, etcdSizeEvery: 10 * time.Millisecond}, client: client}
	m, err := newMetrics(nil)
	if err != nil {
		t.Fatal(err)
	}
	w := newEtcdSize(e, zap.New(core), &members{env: e}, m.etcd)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.run(ctx)
	}()
	// Backing off, polls come at most every 80ms: a second is a dozen failed polls at least.
	time.Sleep(time.Second)
	if n := logs.FilterMessageSnippet("database size failed").Len(); n != 1 {
		t.Errorf("%d warnings about failed polls, want 1", n)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(time.Second):
		t.Fatal("the monitor still runs a second after its context ended")
	}
}
