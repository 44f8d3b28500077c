package client

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/clusterkit-go/clusterkit/internal/state"
)

// readEtcd reads the current map at the latest revision, and the cluster's settings on the
// first read.
func (c *Client) readEtcd(ctx context.Context) (*topology, int64, error) {
	if c.etcdConfig == nil {
		cfg, err := state.ReadConfig(ctx, c.cfg.Etcd, c.schema)
		if err != nil {
			return nil, 0, err
		}
		if cfg == nil {
			return nil, 0, fmt.Errorf("cluster %q does not exist in etcd (no %s)", c.cfg.ClusterName, c.schema.Config())
		}
		if err := checkHash(cfg.Hash, cfg.PartitionCount); err != nil {
			return nil, 0, err
		}
		c.etcdConfig = cfg
	}
	r, err := state.ReadMap(ctx, c.cfg.Etcd, c.schema, 0)
	if err != nil {
		return nil, 0, err
	}
	if r.Map == nil {
		return nil, 0, fmt.Errorf("cluster %q has no partition map yet", c.cfg.ClusterName)
	}
	t, err := fromStateMap(c.cfg.ClusterName, c.etcdConfig, r.Map)
	if err != nil {
		return nil, 0, err
	}
	return t, r.Revision, nil
}

// firstEtcdRead reads the map, retrying until ctx ends while the cluster does not exist yet or
// etcd does not answer. It returns the revision to watch from.
func (c *Client) firstEtcdRead(ctx context.Context) (int64, error) {
	backoff := minBackoff
	for {
		rctx, cancel := context.WithTimeout(ctx, readTimeout)
		t, rev, err := c.readEtcd(rctx)
		cancel()
		if err == nil {
			c.apply(t)
			return rev, nil
		}
		if errors.Is(err, ErrUnsupportedHash) {
			return 0, err
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("clusterkit: read the cluster map from etcd: %w (last error: %v)", ctx.Err(), err)
		case <-time.After(backoff):
			backoff = min(2*backoff, maxBackoff)
		}
	}
}

// followEtcd watches the map from revision rev until ctx ends, resuming after any break from
// the last revision seen, and reading the whole map again when that revision was compacted.
func (c *Client) followEtcd(ctx context.Context, rev int64) {
	backoff := minBackoff
	for ctx.Err() == nil {
		wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		for resp := range c.cfg.Etcd.Watch(wctx, c.schema.Partitions(), clientv3.WithRev(rev+1)) {
			if err := resp.Err(); err != nil {
				if errors.Is(err, rpctypes.ErrCompacted) || resp.CompactRevision > 0 {
					rev = c.reread(ctx, rev)
				} else {
					c.log.Warn("map watch broke, resuming", zap.Int64("from_revision", rev+1), zap.Error(err))
				}
				break
			}
			for _, ev := range resp.Events {
				if ev.Type == clientv3.EventTypePut {
					rev = c.applyEvent(ctx, ev.Kv.Value, ev.Kv.ModRevision, rev)
				}
			}
			rev = max(rev, resp.Header.Revision)
			backoff = minBackoff
		}
		cancel()
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
			backoff = min(2*backoff, maxBackoff)
		}
	}
}

// applyEvent applies the map put at revision modRev; it returns the revision to resume from.
func (c *Client) applyEvent(ctx context.Context, value []byte, modRev, rev int64) int64 {
	m, err := state.DecodeHead(value)
	if err == nil {
		err = state.ReadChunks(ctx, c.cfg.Etcd, c.schema, m, modRev)
	}
	if errors.Is(err, rpctypes.ErrCompacted) {
		return c.reread(ctx, rev)
	}
	var t *topology
	if err == nil {
		// The settings are fixed when the cluster is created: the ones first read hold.
		t, err = fromStateMap(c.cfg.ClusterName, c.etcdConfig, m)
	}
	if err != nil {
		c.log.Error("ignoring unreadable partition map", zap.Int64("revision", modRev), zap.Error(err))
		return rev
	}
	c.apply(t)
	return rev
}

// reread reads the latest map after the watch fell behind compaction; it returns the revision
// to resume from.
func (c *Client) reread(ctx context.Context, rev int64) int64 {
	rctx, cancel := context.WithTimeout(ctx, readTimeout)
	defer cancel()
	t, r, err := c.readEtcd(rctx)
	if err != nil {
		c.log.Warn("reading the map after compaction failed", zap.Error(err))
		return rev
	}
	c.apply(t)
	return r
}
