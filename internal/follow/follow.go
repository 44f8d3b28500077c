// Package follow is the one watch-and-resume loop of ClusterKit: every component that follows
// keys in etcd (the map follower of nodes and of pkg/client, the leader's view of the node
// records and acknowledgements, the embedded members' watch) runs it.
//
// A watch asks etcd's leader (clientv3.WithRequireLeader), resumes after any break from the
// last revision it saw, and reads the state afresh when that revision has been compacted away.
// Every read is bounded by a timeout, breaks back off from 50ms to 1s, and the loop returns when
// its context ends: its caller owns the goroutine that runs it.
package follow

import (
	"context"
	"errors"
	"time"

	"github.com/clusterkit-go/clusterkit/internal/backoff"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Backoff between broken watches or failed reads.
const (
	minBackoff = 50 * time.Millisecond
	maxBackoff = time.Second
)

// DefaultReadTimeout bounds each read when a follower does not set its own.
const DefaultReadTimeout = 5 * time.Second

// errCompacted reports that the revision to read at is gone: read the state afresh.
var errCompacted = rpctypes.ErrCompacted

// watch runs the loop over key from revision rev+1 until ctx ends. handle receives each
// response without error and returns errCompacted when the revisions it needs are gone; reread
// reads the state afresh and returns the revision to resume from.
func watch(ctx context.Context, w clientv3.Watcher, log *zap.Logger, key string, opts []clientv3.OpOption, rev int64,
	reread func(ctx context.Context) (int64, error), handle func(ctx context.Context, resp clientv3.WatchResponse) error) {
	retry := backoff.Backoff{Min: minBackoff, Max: maxBackoff}
	for ctx.Err() == nil {
		wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		wch := w.Watch(wctx, key, append([]clientv3.OpOption{clientv3.WithRev(rev + 1)}, opts...)...)
		for resp := range wch {
			err := resp.Err()
			if err == nil {
				err = handle(ctx, resp)
			}
			if err == nil {
				rev = max(rev, resp.Header.Revision)
				retry.Reset()
				continue
			}
			if errors.Is(err, errCompacted) || resp.CompactRevision > 0 {
				if r, rerr := reread(ctx); rerr == nil {
					rev = r
				} else if ctx.Err() == nil {
					log.Warn("reading afresh after compaction failed", zap.String("key", key), zap.Error(rerr))
				}
			} else if ctx.Err() == nil {
				log.Warn("watch broke, resuming", zap.String("key", key), zap.Int64("from_revision", rev+1), zap.Error(err))
			}
			break
		}
		cancel()
		if !sleep(ctx, retry.Next()) {
			return
		}
	}
}

// sleep waits d or until ctx ends; it reports whether ctx is still live.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// Keys follows one key, or every key under a prefix. Run reads them all (Reset), then hands
// over the changes (Events) in revision order; after a compaction it reads them all again
// (Reset). Reset and Events run on Run's goroutine.
type Keys struct {
	Client *clientv3.Client
	// Key is the key to follow; with Prefix, every key under it.
	Key    string
	Prefix bool
	Log    *zap.Logger
	// ReadTimeout bounds each read; 0 means DefaultReadTimeout.
	ReadTimeout time.Duration
	// PrevKV asks for the previous value with every event (a deleted key's last value).
	PrevKV bool
	// Reset receives every key followed (none when absent), read at one revision.
	Reset func(ctx context.Context, kvs []*mvccpb.KeyValue)
	// Events receives the events of one watch response.
	Events func(ctx context.Context, events []*clientv3.Event)
}

// Run reads the keys, retrying with backoff until it succeeds, then follows it until ctx
// ends.
func (p *Keys) Run(ctx context.Context) {
	retry := backoff.Backoff{Min: minBackoff, Max: maxBackoff}
	for {
		rev, err := p.read(ctx)
		if err == nil {
			p.Follow(ctx, rev)
			return
		}
		if ctx.Err() == nil {
			p.Log.Warn("reading keys to follow failed", zap.String("key", p.Key), zap.Error(err))
		}
		if !sleep(ctx, retry.Next()) {
			return
		}
	}
}

// Follow follows the keys from revision rev+1 (a revision at which the caller read them) until
// ctx ends.
func (p *Keys) Follow(ctx context.Context, rev int64) {
	var opts []clientv3.OpOption
	if p.Prefix {
		opts = append(opts, clientv3.WithPrefix())
	}
	if p.PrevKV {
		opts = append(opts, clientv3.WithPrevKV())
	}
	watch(ctx, p.Client, p.Log, p.Key, opts, rev, p.read, func(ctx context.Context, resp clientv3.WatchResponse) error {
		if len(resp.Events) > 0 {
			p.Events(ctx, resp.Events)
		}
		return nil
	})
}

func (p *Keys) read(ctx context.Context) (int64, error) {
	rctx, cancel := context.WithTimeout(ctx, readTimeout(p.ReadTimeout))
	defer cancel()
	var opts []clientv3.OpOption
	if p.Prefix {
		opts = append(opts, clientv3.WithPrefix())
	}
	resp, err := p.Client.Get(rctx, p.Key, opts...)
	if err != nil {
		return 0, err
	}
	p.Reset(ctx, resp.Kvs)
	return resp.Header.Revision, nil
}

func readTimeout(d time.Duration) time.Duration {
	if d <= 0 {
		return DefaultReadTimeout
	}
	return d
}
