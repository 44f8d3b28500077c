package client

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/clusterkit-go/clusterkit/internal/keys"
	"github.com/clusterkit-go/clusterkit/internal/partition"
	"github.com/clusterkit-go/clusterkit/internal/state"
	"github.com/clusterkit-go/clusterkit/internal/topology"
)

// DefaultClusterName is the cluster a client in etcd mode follows when Config.ClusterName is
// empty: the nodes' default.
const DefaultClusterName = "default"

const (
	// pollWait is how long one long poll waits for a new map.
	pollWait = 20 * time.Second
	// pollSlack is added to pollWait to bound the whole request: a node that hangs without
	// closing its connections (paused, cut off) holds the poll up for at most their sum.
	pollSlack = 5 * time.Second
	// readTimeout bounds a plain GET /cluster.
	readTimeout = 5 * time.Second
	// dialTimeout bounds each connection attempt of the default HTTP client.
	dialTimeout = 2 * time.Second
	// suspectFor is how long a node that failed with a connection error is tried after the
	// other holders.
	suspectFor = time.Second
	// Backoff between rounds of failed topology reads.
	minBackoff = 50 * time.Millisecond
	maxBackoff = 2 * time.Second
)

// Config says where a Client learns the cluster's topology. Set Seeds or Etcd, not both.
type Config struct {
	// Seeds are host:port addresses of any nodes' ClusterKit HTTP API. The client reads the map
	// from the first that answers (GET /cluster), then keeps it fresh with long polls of
	// GET /cluster/map, which send only what changed (GET /cluster on nodes without it), moving
	// over the seeds and the nodes it learned when one is down.
	Seeds []string
	// Etcd, instead of Seeds, reads and watches the map in the cluster's etcd directly. The
	// client never closes it.
	Etcd *clientv3.Client
	// ClusterName is the cluster to follow: with Etcd, the etcd prefix (default "default");
	// with Seeds, if set, the name the seeds must report.
	ClusterName string
	// HTTPClient sends the topology requests of Seeds mode. Nil means a client with a 2s dial
	// timeout. A Timeout on it shortens the long polls to half of it.
	HTTPClient *http.Client
	// Logger receives the client's logs (named "client"). Nil means none.
	Logger *zap.Logger
	// TLS, when set, makes Seeds mode speak https, as nodes in secure mode (a join token) serve
	// their API: it goes into the default HTTP client (with HTTPClient, configure its transport
	// yourself). PinnedCA builds one that trusts only a cluster's CA.
	TLS *tls.Config
}

// PinnedCA returns a TLS configuration that trusts only the CA certificates in the PEM file at
// path: a secure cluster's DataDir/pki/ca.crt, or the "ca" of GET /cluster/ca checked against
// its hash ("sha256:..." logged by the bootstrap node). Node certificates name the node's
// advertised host and loopback, so seeds must be those addresses.
func PinnedCA(path string) (*tls.Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: CA file: %v", ErrInvalidConfig, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%w: CA file %s holds no PEM certificate", ErrInvalidConfig, path)
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}

// Client routes keys to the nodes of a ClusterKit cluster and runs operations on them with
// fallback to the replicas. It follows the partition map from one goroutine of its own, which
// Close stops. Every method is safe for concurrent use; lookups take no lock.
type Client struct {
	cfg     Config
	log     *zap.Logger
	httpc   *http.Client
	ownHTTP bool
	wait    time.Duration
	// schema and etcdConfig (the cluster's fixed settings, read once) serve etcd mode.
	schema     keys.Schema
	etcdConfig *state.Config

	topo atomic.Pointer[topology.Topology]
	// suspects maps the IDs of nodes that recently failed with a connection error to the time
	// until which they are tried last; copied on write (writes happen only on failures).
	suspects   atomic.Pointer[map[string]time.Time]
	suspectsMu sync.Mutex

	// polling is the address of the node the long poll is waiting on and the poll's cancel, so
	// that a failure seen by Do on that node moves the poll elsewhere at once.
	pollMu     sync.Mutex
	pollAddr   string
	pollCancel context.CancelFunc

	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
	closed    atomic.Bool
}

// New returns a Client once it has read the cluster's map: from the first seed that answers
// (in order), or from etcd. Nodes that are still starting are waited for: New retries until
// ctx ends, so give ctx a deadline. It fails at once on an invalid Config, a cluster name
// other than the configured one, or a hash this client does not implement.
func New(ctx context.Context, cfg Config) (*Client, error) {
	if err := validate(&cfg); err != nil {
		return nil, err
	}
	c := &Client{cfg: cfg, log: cfg.Logger, httpc: cfg.HTTPClient, wait: pollWait}
	if c.log == nil {
		c.log = zap.NewNop()
	}
	c.log = c.log.Named("client")
	if c.httpc == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.DialContext = (&net.Dialer{Timeout: dialTimeout, KeepAlive: 15 * time.Second}).DialContext
		tr.TLSClientConfig = cfg.TLS
		c.httpc, c.ownHTTP = &http.Client{Transport: tr}, true
	} else if t := c.httpc.Timeout; t > 0 && t < pollWait+pollSlack {
		c.wait = t / 2
	}
	runCtx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	var err error
	if cfg.Etcd != nil {
		c.schema = keys.New(cfg.ClusterName)
		var rev int64
		if rev, err = c.firstEtcdRead(ctx); err == nil {
			c.wg.Go(func() { c.followEtcd(runCtx, rev) })
		}
	} else {
		var addr string
		if addr, err = c.firstHTTPRead(ctx); err == nil {
			c.wg.Go(func() { c.followHTTP(runCtx, addr) })
		}
	}
	if err != nil {
		cancel()
		c.closeIdle()
		return nil, err
	}
	t := c.topo.Load()
	c.log.Info("client started", zap.String("cluster", t.ClusterName), zap.Uint64("epoch", t.Epoch), zap.Int("nodes", len(t.Nodes)))
	return c, nil
}

func validate(cfg *Config) error {
	switch {
	case len(cfg.Seeds) == 0 && cfg.Etcd == nil:
		return fmt.Errorf("%w: set Seeds (node addresses) or Etcd", ErrInvalidConfig)
	case len(cfg.Seeds) > 0 && cfg.Etcd != nil:
		return fmt.Errorf("%w: Seeds and Etcd are both set; set one", ErrInvalidConfig)
	}
	for _, s := range cfg.Seeds {
		if _, port, err := net.SplitHostPort(s); err != nil || port == "" {
			return fmt.Errorf("%w: Seeds: %q is not host:port", ErrInvalidConfig, s)
		}
	}
	if cfg.Etcd != nil && cfg.ClusterName == "" {
		cfg.ClusterName = DefaultClusterName
	}
	if cfg.ClusterName != "" {
		if err := keys.ValidClusterName(cfg.ClusterName); err != nil {
			return fmt.Errorf("%w: ClusterName: %v", ErrInvalidConfig, err)
		}
	}
	return nil
}

// Close stops following the topology and waits for the client's goroutine. Calls after it
// return ErrClosed. Safe to call more than once.
func (c *Client) Close() error {
	c.closeOnce.Do(func() {
		c.closed.Store(true)
		c.cancel()
		c.wg.Wait()
		c.closeIdle()
	})
	return nil
}

func (c *Client) closeIdle() {
	if c.ownHTTP {
		c.httpc.CloseIdleConnections()
	}
}

// Route returns where key goes in the current map, with exactly the nodes' hash. It takes no
// lock and allocates nothing; the Route shares its Nodes with the client's snapshot.
func (c *Client) Route(key string) (Route, error) {
	if c.closed.Load() {
		return Route{}, ErrClosed
	}
	t := c.topo.Load()
	return t.Routes[t.Mod.Of(partition.Hash(key))], nil
}

// Epoch returns the epoch of the map the client holds.
func (c *Client) Epoch() uint64 { return c.topo.Load().Epoch }

// Nodes returns the live nodes of the map the client holds, sorted by ID. The slice is the
// caller's; the Metadata maps are shared and must not be modified.
func (c *Client) Nodes() []Node { return slices.Clone(c.topo.Load().Nodes) }

// Do runs op for key on the primary of its partition. When op fails because the node is
// unavailable (see IsUnavailable), Do runs it at once on the next holder, and so on; a node
// that failed so is tried after the others for the next second, and a long poll waiting on
// it moves to another node. Any other error of op is returned as it is. When every holder
// was unavailable, or ctx ended in between, the error is an *AttemptsError that lists each
// node tried and its error.
//
// The fallback runs op on replicas: right for reads and for writes that every holder takes
// (quorum writes); an op that must reach the primary only should check n against r.Primary()
// and return a plain error. Do blocks as long as op does; op must honour ctx.
func (c *Client) Do(ctx context.Context, key string, op func(ctx context.Context, n Node, r Route) error) error {
	r, err := c.Route(key)
	if err != nil {
		return err
	}
	// Suspects go last, in their order; a bit per holder (a route has at most 16).
	var late uint64
	if s := c.suspects.Load(); s != nil {
		now := time.Now()
		for i, n := range r.Nodes {
			if until, ok := (*s)[n.ID]; ok && now.Before(until) && i < 64 {
				late |= 1 << i
			}
		}
	}
	var attempts []Attempt
	for pass := uint64(0); pass < 2; pass++ {
		for i, n := range r.Nodes {
			if late>>i&1 != pass {
				continue
			}
			if err := ctx.Err(); err != nil {
				return &AttemptsError{Key: key, Route: r, Attempts: attempts, Err: err}
			}
			err := op(ctx, n, r)
			if err == nil {
				if pass == 1 {
					c.setSuspect(n.ID, false)
				}
				return nil
			}
			if ctx.Err() != nil {
				attempts = append(attempts, Attempt{Node: n, Err: err})
				return &AttemptsError{Key: key, Route: r, Attempts: attempts, Err: ctx.Err()}
			}
			if !IsUnavailable(err) {
				return err
			}
			attempts = append(attempts, Attempt{Node: n, Err: err})
			c.nodeFailed(n)
		}
	}
	return &AttemptsError{Key: key, Route: r, Attempts: attempts, Err: ErrUnavailable}
}

// nodeFailed records that n could not be reached: it is tried last for a while, and a long
// poll waiting on it is moved to another node.
func (c *Client) nodeFailed(n Node) {
	c.setSuspect(n.ID, true)
	c.pollMu.Lock()
	if c.pollAddr == n.Addr && c.pollCancel != nil {
		c.pollCancel()
	}
	c.pollMu.Unlock()
	c.log.Debug("node unavailable", zap.String("node", n.ID), zap.String("addr", n.Addr))
}

func (c *Client) setSuspect(id string, suspect bool) {
	c.suspectsMu.Lock()
	defer c.suspectsMu.Unlock()
	now := time.Now()
	next := map[string]time.Time{}
	if s := c.suspects.Load(); s != nil {
		for k, until := range *s {
			if now.Before(until) {
				next[k] = until
			}
		}
	}
	if suspect {
		next[id] = now.Add(suspectFor)
	} else {
		delete(next, id)
	}
	if len(next) == 0 {
		c.suspects.Store(nil)
		return
	}
	c.suspects.Store(&next)
}

// apply makes t the client's map unless it is not newer than the one it holds.
func (c *Client) apply(t *topology.Topology) bool {
	for {
		old := c.topo.Load()
		if old != nil && t.Epoch <= old.Epoch {
			return false
		}
		if c.topo.CompareAndSwap(old, t) {
			c.log.Debug("applied map", zap.Uint64("epoch", t.Epoch))
			return true
		}
	}
}
