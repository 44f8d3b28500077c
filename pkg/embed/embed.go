// Package embed starts etcd members inside the current process, so that a ClusterKit node
// works with no etcd installed. It wraps go.etcd.io/etcd/server/v3/embed with the settings
// ClusterKit needs: data in a given directory, automatic compaction, a chosen space quota,
// loopback-safe defaults and ports that do not collide when several nodes run on one machine.
//
// Quick start:
//
//	m, err := embed.Start(ctx, embed.Config{Name: "node-1", Dir: "/var/lib/clusterkit/node-1"})
//	if err != nil { ... }
//	defer m.Close()
//	client, err := clientv3.New(clientv3.Config{Endpoints: m.Endpoints()})
//
//	// On another machine: become the cluster's second member.
//	m2, err := embed.Join(ctx, client, embed.Config{Name: "node-2", Dir: "/var/lib/clusterkit/node-2"})
//
// Start creates a new single-member cluster, or restarts the member whose data is in Dir (it then
// rejoins its cluster as the same member). Join adds a member to a running cluster the safe way:
// as a learner, which does not count towards the quorum, promoted to a voting member once it has
// caught up with the leader. Remove takes a member out of its cluster for good.
//
// A member started here is a real etcd server: etcdctl can talk to it on its client URL.
//
// # Space
//
// etcd keeps every revision of every key until it compacts them, and its database file (bbolt)
// never shrinks by itself: compaction frees pages for reuse, only a defragmentation returns them.
// When the file reaches the quota, etcd raises its NOSPACE alarm and refuses writes until an
// operator compacts, defragments and disarms the alarm. A member started here therefore
//
//   - compacts automatically, keeping CompactionRetention of history (default 1 minute);
//   - has an explicit quota, QuotaBackendBytes (default 2 GiB, etcd's own default);
//   - commits its backend every 100ms or 10,000 operations, etcd's defaults, set explicitly.
//
// Nothing here defragments: a defragmentation blocks the member's reads and writes while it
// copies the database. The ClusterKit node warns before the quota is reached; the operator then
// compacts and defragments one member at a time (see the README).
package embed

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"sync"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
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
	// CompactionRetention is how much history etcd keeps: every CompactionRetention, etcd
	// compacts away the revisions older than CompactionRetention, so between one and two
	// retentions of history are kept. Default DefaultCompactionRetention (1 minute); at least 1s.
	CompactionRetention time.Duration
	// QuotaBackendBytes is the size etcd's database file may reach: at the quota, etcd raises its
	// NOSPACE alarm and refuses puts and new leases (reads and deletes still work) until an
	// operator frees space (compact, defragment) and disarms the alarm. Default
	// DefaultQuotaBackendBytes (2 GiB); between 4 MiB and 8 GiB (etcd's suggested maximum). All
	// members of a cluster should use the same value.
	QuotaBackendBytes int64
	// StartTimeout bounds how long Start waits for the member to serve. Default 30 seconds.
	StartTimeout time.Duration
	// HeartbeatInterval is how often the raft leader heartbeats its followers. Default 100ms
	// (etcd's default).
	HeartbeatInterval time.Duration
	// ElectionTimeout is how long a follower hears nothing from the leader before it calls an
	// election: a crashed leader is replaced after about this long. Default 1s (etcd's default);
	// at least 5 HeartbeatIntervals. All members of a cluster should use the same values.
	ElectionTimeout time.Duration
	// UnsafeNoFsync disables fsync. Only for tests: a crash can lose committed data.
	UnsafeNoFsync bool
	// TLS, when set, serves clients and peers over TLS only (https URLs), each side required to
	// present a certificate signed by TLS.TrustedCAFile: etcd then admits no client and no peer
	// without one. Nil means plain HTTP and no authentication.
	TLS *TLSFiles
	// Logger receives etcd's own log. Nil means silent.
	Logger *zap.Logger
}

// TLSFiles are the PEM files of a member in TLS mode. The certificate serves as the member's
// server certificate towards clients and peers and as its client certificate towards peers, so
// it must allow both uses and name the member's advertised host.
type TLSFiles struct {
	CertFile, KeyFile, TrustedCAFile string
	// ClientTLS is what Join uses to reach the cluster's members over HTTPS (their /version).
	ClientTLS *tls.Config
}

// Defaults of Config.
const (
	// DefaultCompactionRetention keeps a minute of history (one to two minutes between
	// compactions). ClusterKit reads at the latest revision and resumes watches from the last
	// revision it saw; a read or watch that finds its revision compacted reads afresh. A minute is
	// several lease TTLs, so a node that still holds its lease resumes its watches from events; the
	// history to store is a minute or two of writes, where 5 minutes let a burst of map writes fill
	// the database five times as much.
	DefaultCompactionRetention = time.Minute
	// DefaultQuotaBackendBytes is etcd's own default quota, 2 GiB: an embedded cluster and an
	// external etcd with default settings behave alike. ClusterKit's own data stays far below it
	// (the README's scale section measures it).
	DefaultQuotaBackendBytes int64 = 2 << 30
	// DefaultHeartbeat is etcd's own default raft heartbeat; the election timeout defaults to
	// ten of them.
	DefaultHeartbeat = 100 * time.Millisecond

	// minQuotaBackendBytes leaves room for a few requests of etcd's largest size (1.5 MiB).
	minQuotaBackendBytes int64 = 4 << 20
	// maxQuotaBackendBytes is etcd's suggested maximum: a larger database takes long to
	// defragment, and etcd maps it all into memory.
	maxQuotaBackendBytes int64 = 8 << 30

	// backendBatchInterval and backendBatchLimit are etcd's defaults, set explicitly: the backend
	// commits every 100ms or 10,000 operations. ClusterKit writes a few maps per second, so a
	// batch holds a handful of writes: a longer interval would save little and hold written
	// pages longer, a shorter one would add commits. Durability comes from the WAL either way.
	backendBatchInterval = 100 * time.Millisecond
	backendBatchLimit    = 10000

	// snapshotCount and snapshotCatchUpEntries bound the raft log a member keeps in memory: etcd
	// keeps every entry since its last snapshot (taken every snapshotCount entries, 10,000 by
	// default) plus snapshotCatchUpEntries before it (5,000). A map of 65536 partitions writes
	// entries of up to 1 MiB, so the defaults let a member's memory grow by gigabytes before a
	// snapshot; these keep at most 750 entries. A member more than 250 entries behind is sent
	// the database instead (tens of MB at 65536 partitions), which a member on the same network
	// rarely is.
	snapshotCount          = 500
	snapshotCatchUpEntries = 250
)

// ErrInvalidConfig is wrapped by every validation error of Start.
var ErrInvalidConfig = errors.New("embed: invalid config")

// Member is a running embedded etcd member. Close stops it.
type Member struct {
	closeOnce sync.Once
	etcd      *embed.Etcd
	dir       string
	endpoints []string
	peerURL   string
}

// Start starts a single-member etcd cluster in cfg.Dir, or restarts the member whose data is
// already there (a member of a larger cluster rejoins it as the same member: its data names the
// cluster's members, and the peer address must be the one it had), and blocks until it serves
// clients, ctx is cancelled, or cfg.StartTimeout passes. A restarted member of a larger cluster
// serves only once a quorum of its cluster's members runs.
func Start(ctx context.Context, cfg Config) (*Member, error) {
	ec, err := prepare(cfg)
	if err != nil {
		return nil, err
	}
	ec.InitialCluster = ec.Name + "=" + ec.AdvertisePeerUrls[0].String()
	ec.ClusterState = embed.ClusterStateFlagNew
	return run(ctx, ec, cfg.StartTimeout)
}

// prepare validates cfg, fills in its defaults, and returns the etcd configuration without its
// initial cluster.
func prepare(cfg Config) (*embed.Config, error) {
	if cfg.Name == "" {
		return nil, fmt.Errorf("%w: Name is empty", ErrInvalidConfig)
	}
	if cfg.Dir == "" {
		return nil, fmt.Errorf("%w: Dir is empty", ErrInvalidConfig)
	}
	if cfg.CompactionRetention == 0 {
		cfg.CompactionRetention = DefaultCompactionRetention
	}
	if cfg.CompactionRetention < time.Second {
		return nil, fmt.Errorf("%w: CompactionRetention %v is under 1s", ErrInvalidConfig, cfg.CompactionRetention)
	}
	if cfg.QuotaBackendBytes == 0 {
		cfg.QuotaBackendBytes = DefaultQuotaBackendBytes
	}
	if cfg.QuotaBackendBytes < minQuotaBackendBytes || cfg.QuotaBackendBytes > maxQuotaBackendBytes {
		return nil, fmt.Errorf("%w: QuotaBackendBytes %d is outside %d (4 MiB) to %d (8 GiB)",
			ErrInvalidConfig, cfg.QuotaBackendBytes, minQuotaBackendBytes, maxQuotaBackendBytes)
	}
	if cfg.HeartbeatInterval == 0 {
		cfg.HeartbeatInterval = DefaultHeartbeat
	}
	if cfg.ElectionTimeout == 0 {
		cfg.ElectionTimeout = 10 * cfg.HeartbeatInterval
	}
	if cfg.HeartbeatInterval < time.Millisecond || cfg.ElectionTimeout < 5*cfg.HeartbeatInterval || cfg.ElectionTimeout > 50*time.Second {
		return nil, fmt.Errorf("%w: ElectionTimeout %v must be at least 5 HeartbeatIntervals (%v) and at most 50s",
			ErrInvalidConfig, cfg.ElectionTimeout, cfg.HeartbeatInterval)
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	scheme := "http"
	if cfg.TLS != nil {
		scheme = "https"
		if cfg.TLS.CertFile == "" || cfg.TLS.KeyFile == "" || cfg.TLS.TrustedCAFile == "" {
			return nil, fmt.Errorf("%w: TLS needs CertFile, KeyFile and TrustedCAFile", ErrInvalidConfig)
		}
	}
	clientListen, clientAdvertise, err := resolve(scheme, cfg.ClientAddr, cfg.AdvertiseHost)
	if err != nil {
		return nil, fmt.Errorf("%w: ClientAddr: %v", ErrInvalidConfig, err)
	}
	peerListen, peerAdvertise, err := resolve(scheme, cfg.PeerAddr, cfg.AdvertiseHost)
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
	ec.TickMs = uint(cfg.HeartbeatInterval / time.Millisecond)
	ec.ElectionMs = uint(cfg.ElectionTimeout / time.Millisecond)
	// Periodic, not revision, compaction: etcd's revision mode compacts only every 5 minutes,
	// whatever the retention, so the history it keeps grows with the write rate.
	ec.AutoCompactionMode = embed.CompactorModePeriodic
	ec.AutoCompactionRetention = cfg.CompactionRetention.String()
	ec.QuotaBackendBytes = cfg.QuotaBackendBytes
	ec.BackendBatchInterval = backendBatchInterval
	ec.BackendBatchLimit = backendBatchLimit
	ec.SnapshotCount = snapshotCount
	ec.SnapshotCatchUpEntries = snapshotCatchUpEntries
	ec.UnsafeNoFsync = cfg.UnsafeNoFsync
	// etcd's strict reconfiguration check refuses a new member, even a learner, until the
	// member serving the request has been connected to a quorum for 5 s, as just after another
	// member joined: three members would take over 5 s to form. Members are only ever added
	// here as learners, which do not count towards the quorum, and promoted once caught up, which
	// keeps any quorum that held; Remove checks itself that the other members make a quorum.
	ec.StrictReconfigCheck = false
	if t := cfg.TLS; t != nil {
		info := transport.TLSInfo{CertFile: t.CertFile, KeyFile: t.KeyFile, TrustedCAFile: t.TrustedCAFile, ClientCertAuth: true}
		ec.ClientTLSInfo = info
		ec.PeerTLSInfo = info
	}
	ec.Logger = "zap"
	ec.ZapLoggerBuilder = embed.NewZapLoggerBuilder(cfg.Logger)
	// The member's metrics would be registered on the process-wide Prometheus registry; keep
	// them off so that an application's own registry is not polluted.
	ec.Metrics = "basic"
	return ec, nil
}

// run starts etcd with ec and waits until it serves clients.
func run(ctx context.Context, ec *embed.Config, timeout time.Duration) (*Member, error) {
	if timeout == 0 {
		timeout = 30 * time.Second
	}
	e, err := embed.StartEtcd(ec)
	if err != nil {
		return nil, fmt.Errorf("embed: start etcd in %s: %w", ec.Dir, err)
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		return nil, fmt.Errorf("embed: etcd in %s: %w", ec.Dir, err)
	case <-ctx.Done():
		e.Close()
		return nil, fmt.Errorf("embed: waiting for etcd in %s (a restarted member serves once a quorum of its cluster runs): %w", ec.Dir, ctx.Err())
	case <-timer.C:
		e.Close()
		return nil, fmt.Errorf("embed: etcd in %s not ready after %v (a restarted member serves once a quorum of its cluster runs)", ec.Dir, timeout)
	}
	return &Member{etcd: e, dir: ec.Dir, endpoints: []string{ec.AdvertiseClientUrls[0].String()}, peerURL: ec.AdvertisePeerUrls[0].String()}, nil
}

// resolve turns a host:port into a listen URL and an advertise URL of scheme, picking a free port
// for 0.
func resolve(scheme, addr, advertiseHost string) (listen, advertise url.URL, err error) {
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
	return url.URL{Scheme: scheme, Host: net.JoinHostPort(listenHost, ps)},
		url.URL{Scheme: scheme, Host: net.JoinHostPort(advertiseHost, ps)}, nil
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

// ID is the member's etcd member ID, as etcdctl member list shows it (in hex).
func (m *Member) ID() uint64 { return uint64(m.etcd.Server.MemberID()) }

// Close stops the member and waits until it has released its ports and data directory.
// It is safe to call more than once.
func (m *Member) Close() {
	m.closeOnce.Do(m.etcd.Close)
}
