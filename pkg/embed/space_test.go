package embed_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/clusterkit-go/clusterkit/internal/etcdtest"
	"github.com/clusterkit-go/clusterkit/pkg/embed"
)

// A member started with the default quota reports etcd's 2 GiB, and compacts its history after
// CompactionRetention: a read at a revision older than that fails with ErrCompacted.
func TestDefaultQuotaAndCompaction(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg := testConfig(t, "a")
	cfg.CompactionRetention = time.Second
	m, err := embed.Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	c := newClient(t, m.Endpoints()...)
	st, err := c.Status(ctx, m.Endpoints()[0])
	if err != nil {
		t.Fatal(err)
	}
	if st.DbSizeQuota != 2<<30 {
		t.Errorf("quota %d, want 2 GiB", st.DbSizeQuota)
	}
	first, err := c.Put(ctx, "k", "1")
	if err != nil {
		t.Fatal(err)
	}
	// Compactions happen once per retention, to the revision of one retention before: keep
	// writing, so that there is a newer revision to compact to.
	etcdtest.WaitFor(t, 10*time.Second, "the first revision compacted", func() error {
		if _, err := c.Put(ctx, "k", "2"); err != nil {
			return err
		}
		_, err := c.Get(ctx, "k", clientv3.WithRev(first.Header.Revision))
		if errors.Is(err, rpctypes.ErrCompacted) {
			return nil
		}
		return errors.New("still readable")
	})
}

// A member with a small quota takes writes until its database reaches the quota, then raises
// etcd's NOSPACE alarm and refuses them, while reads still work.
func TestQuotaRefusesWritesPastIt(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const quota = 4 << 20
	cfg := testConfig(t, "a")
	cfg.QuotaBackendBytes = quota
	m, err := embed.Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	c := newClient(t, m.Endpoints()...)
	st, err := c.Status(ctx, m.Endpoints()[0])
	if err != nil {
		t.Fatal(err)
	}
	if st.DbSizeQuota != quota {
		t.Fatalf("quota %d, want %d", st.DbSizeQuota, quota)
	}
	value := strings.Repeat("x", 128<<10)
	written := 0
	for ; ; written += len(value) {
		if written > 4*quota {
			t.Fatalf("%d bytes written and no NOSPACE", written)
		}
		if _, err = c.Put(ctx, "k", value); err != nil {
			break
		}
	}
	if !errors.Is(err, rpctypes.ErrNoSpace) {
		t.Fatalf("write past the quota: %v, want NOSPACE", err)
	}
	if written < quota/2 {
		t.Errorf("NOSPACE after only %d bytes of a %d-byte quota", written, quota)
	}
	alarms, err := c.AlarmList(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(alarms.Alarms) != 1 || alarms.Alarms[0].Alarm != pb.AlarmType_NOSPACE {
		t.Errorf("alarms %v, want NOSPACE", alarms.Alarms)
	}
	if _, err := c.Get(ctx, "k"); err != nil {
		t.Errorf("read under NOSPACE: %v", err)
	}
}
