package client

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/clusterkit-go/clusterkit/internal/backoff"
	"github.com/clusterkit-go/clusterkit/internal/follow"
	"github.com/clusterkit-go/clusterkit/internal/mapstore"
	"github.com/clusterkit-go/clusterkit/internal/topology"
)

// source is the map follower of etcd mode: the same one the nodes run.
func (c *Client) source() *follow.Map {
	return &follow.Map{Client: c.cfg.Etcd, Schema: c.schema, Log: c.log, ReadTimeout: readTimeout,
		Apply: func(u follow.Update) {
			m, rev := u.Map, u.Revision
			// The settings are fixed when the cluster is created: the ones first read hold.
			t, err := topology.FromStateMap(c.cfg.ClusterName, c.etcdConfig, m)
			if err != nil {
				c.log.Error("ignoring unreadable partition map", zap.Int64("revision", rev), zap.Error(err))
				return
			}
			c.apply(t)
		}}
}

// readEtcd reads the cluster's settings and the current map, and applies the map. It returns
// the revision to follow from.
func (c *Client) readEtcd(ctx context.Context) (int64, error) {
	rctx, cancel := context.WithTimeout(ctx, readTimeout)
	cfg, err := mapstore.ReadConfig(rctx, c.cfg.Etcd, c.schema)
	cancel()
	if err != nil {
		return 0, err
	}
	if cfg == nil {
		return 0, fmt.Errorf("cluster %q does not exist in etcd (no %s)", c.cfg.ClusterName, c.schema.Config())
	}
	if err := topology.CheckHash(cfg.Hash, cfg.PartitionCount); err != nil {
		return 0, err
	}
	c.etcdConfig = cfg
	src := c.source()
	r, err := src.Read(ctx)
	if err != nil {
		return 0, err
	}
	if r.Map == nil {
		return 0, fmt.Errorf("cluster %q has no partition map yet", c.cfg.ClusterName)
	}
	t, err := topology.FromStateMap(c.cfg.ClusterName, c.etcdConfig, r.Map)
	if err != nil {
		return 0, err
	}
	c.apply(t)
	return r.Revision, nil
}

// firstEtcdRead reads the map, retrying until ctx ends while the cluster does not exist yet or
// etcd does not answer. It returns the revision to watch from.
func (c *Client) firstEtcdRead(ctx context.Context) (int64, error) {
	retry := backoff.Backoff{Min: minBackoff, Max: maxBackoff}
	for {
		rev, err := c.readEtcd(ctx)
		if err == nil {
			return rev, nil
		}
		if errors.Is(err, ErrUnsupportedHash) {
			return 0, err
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("clusterkit: read the cluster map from etcd: %w (last error: %v)", ctx.Err(), err)
		case <-time.After(retry.Next()):
		}
	}
}

// followEtcd follows the map from revision rev until ctx ends (see follow.Map).
func (c *Client) followEtcd(ctx context.Context, rev int64) {
	c.source().Run(ctx, rev, nil)
}
