// Package embed starts an etcd member inside the current process, so that a ClusterKit node
// works with no etcd installed. It wraps go.etcd.io/etcd/server/v3/embed with the settings
// ClusterKit needs: data in a given directory, automatic compaction, loopback-safe defaults and
// ports that do not collide when several nodes run on one machine.
//
// Quick start:
//
//	m, err := embed.Start(ctx, embed.Config{Name: "node-1", Dir: "/var/lib/clusterkit/node-1"})
//	if err != nil { ... }
//	defer m.Close()
//	client, err := clientv3.New(clientv3.Config{Endpoints: m.Endpoints()})
//
// A member started here is a real etcd server: etcdctl can talk to it on its client URL.
package embed

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"sync"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// Config configures an embedded member. Name and Dir are required.
type Config struct {
	// Name is the member's name, unique in its etcd cluster (ClusterKit uses the node ID).
	Name string
	// Dir holds the member's data (WAL and snapshots). A member restarted with the same Dir keeps
	// its data.
	Dir string
	// ClientAddr is the host:port the member serves clients on. An empty host means all
	// interfaces; port 0 (or an empty ClientAddr, which means 127.0.0.1:0) picks a free port.
	ClientAddr string
	// PeerAddr is the host:port the member talks to other members on, chosen as ClientAddr is.
	PeerAddr string
	// AdvertiseHost is the host other machines reach this member at. Default: the host of
	// ClientAddr, or 127.0.0.1 when that is empty or unspecified (0.0.0.0, ::).
	AdvertiseHost string
	// CompactionRetention is how much history etcd keeps before compacting automatically.
	// Default 5 minutes.
	CompactionRetention time.Duration
	// StartTimeout bounds how long Start waits for the member to serve. Default 30 seconds.
	StartTimeout time.Duration
	// UnsafeNoFsync disables fsync. Only for tests: a crash can lose committed data.
	UnsafeNoFsync bool
	// Logger receives etcd's own log. Nil means silent.
	Logger *zap.Logger
}

// ErrInvalidConfig is wrapped by every validation error of Start.
var ErrInvalidConfig = errors.New("embed: invalid config")

// Member is a running embedded etcd member. Close stops it.
type Member struct {
	closeOnce sync.Once
	etcd      *embed.Etcd
	endpoints []string
	peerURL   string
}

// Start starts a single-member etcd cluster in cfg.Dir, or restarts the member whose data is
// already there, and blocks until it serves clients, ctx is cancelled, or cfg.StartTimeout passes.
func Start(ctx context.Context, cfg Config) (*Member, error) {
	if cfg.Name == "" {
		return nil, fmt.Errorf("%w: Name is empty", ErrInvalidConfig)
	}
	if cfg.Dir == "" {
		return nil, fmt.Errorf("%w: Dir is empty", ErrInvalidConfig)
	}
	if cfg.CompactionRetention == 0 {
		cfg.CompactionRetention = 5 * time.Minute
	}
	if cfg.CompactionRetention < time.Second {
		return nil, fmt.Errorf("%w: CompactionRetention %v is under 1s", ErrInvalidConfig, cfg.CompactionRetention)
	}
	if cfg.StartTimeout == 0 {
		cfg.StartTimeout = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	clientListen, clientAdvertise, err := resolve(cfg.ClientAddr, cfg.AdvertiseHost)
	if err != nil {
		return nil, fmt.Errorf("%w: ClientAddr: %v", ErrInvalidConfig, err)
	}
	peerListen, peerAdvertise, err := resolve(cfg.PeerAddr, cfg.AdvertiseHost)
	if err != nil {
		return nil, fmt.Errorf("%w: PeerAddr: %v", ErrInvalidConfig, err)
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("embed: data dir: %w", err)
	}

	ec := embed.NewConfig()
	ec.Name = cfg.Name
	ec.Dir = cfg.Dir
	ec.ListenClientUrls = []url.URL{clientListen}
	ec.AdvertiseClientUrls = []url.URL{clientAdvertise}
	ec.ListenPeerUrls = []url.URL{peerListen}
	ec.AdvertisePeerUrls = []url.URL{peerAdvertise}
	ec.InitialCluster = cfg.Name + "=" + peerAdvertise.String()
	ec.ClusterState = embed.ClusterStateFlagNew
	ec.AutoCompactionMode = "periodic"
	ec.AutoCompactionRetention = cfg.CompactionRetention.String()
	ec.UnsafeNoFsync = cfg.UnsafeNoFsync
	ec.Logger = "zap"
	ec.ZapLoggerBuilder = embed.NewZapLoggerBuilder(cfg.Logger)
	// The member's metrics would be registered on the process-wide Prometheus registry; keep
	// them off so that an application's own registry is not polluted.
	ec.Metrics = "basic"

	e, err := embed.StartEtcd(ec)
	if err != nil {
		return nil, fmt.Errorf("embed: start etcd in %s: %w", cfg.Dir, err)
	}
	timer := time.NewTimer(cfg.StartTimeout)
	defer timer.Stop()
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		return nil, fmt.Errorf("embed: etcd in %s: %w", cfg.Dir, err)
	case <-ctx.Done():
		e.Close()
		return nil, fmt.Errorf("embed: waiting for etcd: %w", ctx.Err())
	case <-timer.C:
		e.Close()
		return nil, fmt.Errorf("embed: etcd in %s not ready after %v", cfg.Dir, cfg.StartTimeout)
	}
	return &Member{etcd: e, endpoints: []string{clientAdvertise.String()}, peerURL: peerAdvertise.String()}, nil
}

// resolve turns a host:port into a listen URL and an advertise URL, picking a free port for 0.
func resolve(addr, advertiseHost string) (listen, advertise url.URL, err error) {
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return url.URL{}, url.URL{}, err
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 0 || p > 65535 {
		return url.URL{}, url.URL{}, fmt.Errorf("port %q out of range", port)
	}
	listenHost := host
	if listenHost == "" {
		listenHost = "0.0.0.0"
	}
	if p == 0 {
		if p, err = freePort(listenHost); err != nil {
			return url.URL{}, url.URL{}, err
		}
	}
	if advertiseHost == "" {
		advertiseHost = host
		if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
			advertiseHost = "127.0.0.1"
		}
	}
	ps := strconv.Itoa(p)
	return url.URL{Scheme: "http", Host: net.JoinHostPort(listenHost, ps)},
		url.URL{Scheme: "http", Host: net.JoinHostPort(advertiseHost, ps)}, nil
}

// freePort asks the kernel for a port that is free now. Another process could take it before
// etcd binds it; StartEtcd then fails with "address already in use" and the caller may retry.
func freePort(host string) (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return 0, fmt.Errorf("pick a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Endpoints are the member's client URLs, as other machines reach them.
func (m *Member) Endpoints() []string { return append([]string(nil), m.endpoints...) }

// PeerURL is the member's advertised peer URL.
func (m *Member) PeerURL() string { return m.peerURL }

// Close stops the member and waits until it has released its ports and data directory.
// It is safe to call more than once.
func (m *Member) Close() {
	m.closeOnce.Do(m.etcd.Close)
}
