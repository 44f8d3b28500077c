package clusterkit

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/clusterkit-go/clusterkit/internal/keys"
	"github.com/clusterkit-go/clusterkit/internal/pki"
	"github.com/clusterkit-go/clusterkit/internal/state"
	"github.com/clusterkit-go/clusterkit/pkg/rebalance"
)

// Defaults of the optional Options fields.
const (
	DefaultPartitionCount     = 64
	DefaultReplicationFactor  = 3
	DefaultClusterName        = "default"
	DefaultLeaseTTL           = 10 * time.Second
	DefaultStartTimeout       = 30 * time.Second
	DefaultShutdownTimeout    = 10 * time.Second
	DefaultMaxConcurrentHooks = 50
	DefaultEtcdDialTimeout    = 5 * time.Second
	DefaultHandoffTimeout     = 2 * time.Minute
	DefaultCoalesceWindow     = 100 * time.Millisecond
	DefaultMaxLongPolls       = 4096

	// MinHandoffTimeout bounds HandoffTimeout from below: a copy's acknowledgement takes up to
	// a few hundred milliseconds to reach the leader, so a shorter timeout re-asks copies forever.
	MinHandoffTimeout      = 500 * time.Millisecond
	DefaultEmbeddedMembers = 3

	// MaxPartitionCount bounds PartitionCount; larger maps are stored in chunks, and placement
	// stays within milliseconds up to this size.
	MaxPartitionCount = 65536
	// MaxReplicationFactor bounds ReplicationFactor.
	MaxReplicationFactor = 16
	// MaxMetadataBytes bounds Metadata, as JSON, so that a node's record in etcd stays small:
	// every map carries the record of every node.
	MaxMetadataBytes = 8 << 10

	// embeddedPortOffset: an embedded etcd serves clients on the HTTP port + 10000 and peers on
	// the HTTP port + 20000, so that several nodes on one machine never collide.
	embeddedPortOffset = 10000
)

// Options configures a node. Only NodeID and HTTPAddr are required; every other field has a
// default that NewClusterKit fills in when the field is zero.
//
// etcd is chosen by the fields set: EtcdClient (a client the caller owns and closes),
// EtcdEndpoints (an existing etcd cluster), JoinAddr (the etcd of the cluster that node belongs
// to), or none of them: the node then starts an embedded etcd and is the cluster's bootstrap
// node. In a cluster so created, the first EmbeddedMembers nodes (the bootstrap node included)
// run an etcd member each and the others are etcd clients, so that the cluster survives the loss
// of any minority of those nodes.
type Options struct {
	// NodeID names the node uniquely in the cluster. Required. No '/' or spaces.
	NodeID string
	// HTTPAddr is the host:port the node's HTTP API listens on, for example ":8080". Required.
	// Port 0 picks a free port.
	HTTPAddr string
	// AdvertiseAddr is the host:port other nodes and clients reach the HTTP API at; it is the
	// Node.IP of this node. Default: HTTPAddr with its port, and 127.0.0.1 when its host is
	// empty or unspecified (0.0.0.0). Set it to a routable name when nodes run on different
	// machines or containers.
	AdvertiseAddr string
	// JoinAddr is the HTTP address (host:port) of any node of the cluster to join. The node asks
	// it for the cluster's etcd endpoints and name. A node restarted with its DataDir does not
	// need it: an embedded etcd member restarts from its data, and a client node falls back on
	// the endpoints it remembers when JoinAddr does not answer within EtcdDialTimeout. A node
	// without a DataDir of this cluster needs a JoinAddr that answers (any node will do).
	JoinAddr string
	// JoinToken turns on secure mode on the embedded etcd: the cluster's CA in the bootstrap
	// node's DataDir, etcd serving clients and peers over TLS with client certificates only,
	// the HTTP API over TLS, and /cluster/join answering only requests that carry the token
	// (joining nodes receive a certificate for their own key, never the CA key). Every node of
	// the cluster is started with the same token; 16 to 256 letters, digits and . _ ~ + / = -.
	// Not with EtcdEndpoints or EtcdClient (secure those with EtcdTLS). Default none: plain HTTP
	// and an etcd open to whoever reaches its ports.
	JoinToken string
	// HTTPTLS serves the HTTP API over TLS only, with this configuration (its certificates;
	// ClientAuth and ClientCAs for mutual TLS). In secure mode the API is served over TLS with
	// the cluster CA's certificate and HTTPTLS must stay nil. Default nil: plain HTTP.
	HTTPTLS *tls.Config
	// HTTPClientTLS is what this node uses to reach other nodes' HTTP API over https (JoinAddr):
	// set it when the cluster's nodes serve their API with HTTPTLS (RootCAs trusting their
	// certificates; Certificates when they require client certificates). Not in secure mode,
	// which pins the cluster's CA by itself.
	HTTPClientTLS *tls.Config
	// DataDir holds the embedded etcd's data, the node's instance file and what it remembers of
	// its cluster (cluster.json: etcd endpoints, embedded member ports). Default:
	// <os.TempDir()>/clusterkit/<NodeID>. A node restarted with its DataDir takes back its own
	// registration at once instead of waiting for the old lease to expire, and a member node is
	// the same etcd member again.
	DataDir string
	// ClusterName separates clusters that share one etcd: all keys live under
	// /clusterkit/<ClusterName>/. Default "default", or the joined node's cluster with JoinAddr.
	ClusterName string
	// PartitionCount is the number of partitions, fixed when the cluster is created. Default 64,
	// at most MaxPartitionCount.
	PartitionCount int
	// ReplicationFactor is the number of holders of each partition (primary included), fixed
	// when the cluster is created. A cluster with fewer nodes gives each partition every node.
	// Default 3, at most MaxReplicationFactor.
	ReplicationFactor int
	// Zone is the node's failure domain (rack, availability zone). Holders of a partition are
	// placed in distinct zones when there are enough. Default "" (no zone).
	Zone string
	// Weight is the node's relative capacity; it holds partitions in proportion. Default 1.
	Weight int
	// Metadata is published with the node (at most MaxMetadataBytes as JSON), for example the address of the application's data
	// service. Default none.
	Metadata map[string]string
	// LeaseTTL is the time to live of the node's etcd lease, in whole seconds: a crashed node is
	// noticed after about this long. Default 10s: it rides out an etcd leader election (about
	// 1s) and a long GC pause, while keepalives go out every TTL/3. At least 2s.
	LeaseTTL time.Duration
	// StartTimeout bounds how long Start waits for etcd, registration and the first map that
	// lists the node. Default 30s.
	StartTimeout time.Duration
	// ShutdownTimeout bounds how long Stop waits for leadership hand-over, lease revocation and
	// running hooks. Default 10s.
	ShutdownTimeout time.Duration
	// MaxConcurrentHooks is how many partition-change hooks run at once. Default 50.
	MaxConcurrentHooks int
	// HandoffTimeout is how long a node may take to copy a partition in (its OnPartitionChange
	// hooks for that partition to return). A copy not acknowledged by then is logged, counted
	// (clusterkit_handoff_retries_total), shown in /cluster and asked again; the current holders
	// keep serving meanwhile. Default 2 minutes.
	HandoffTimeout time.Duration
	// MaxHandoffsPerNode throttles data movement: at most this many partition copies in flight
	// into each node, and out of each node (a copy counts against the partition's primary, the
	// node it copies from). A copy over the bound waits, queued (GET /cluster's "queued",
	// clusterkit_handoffs_queued), and is asked for once copies in flight finish: partitions
	// below their replication first, then those moving their primary, then the rest.
	// HandoffTimeout counts from the request. MaxHandoffs bounds the copies in flight in the
	// whole cluster. The leader's settings apply: set them alike on every node. Default 0: no
	// bound (every copy a change needs is asked for at once; ClusterKit counts partitions, not
	// bytes, so a bound is for stores whose copies are heavy: see the README).
	MaxHandoffsPerNode int
	MaxHandoffs        int
	// CrashGracePeriod is how long a crashed node keeps its places: its primaries are promoted
	// elsewhere at once, but its replicas are not copied elsewhere until the period ends, and a
	// node that comes back under the same NodeID within it gets them back, catching up from the
	// current holders. Default 0: copies are made elsewhere at once.
	CrashGracePeriod time.Duration
	// CoalesceWindow groups membership changes: a change within this long of the last published
	// map waits until the window ends, so that 20 nodes starting together make a few maps, not
	// 20. A change after a quiet period is published at once. Default 100ms.
	CoalesceWindow time.Duration
	// Registerer receives the node's Prometheus metrics. Default none. When it is also a
	// prometheus.Gatherer (a *prometheus.Registry is), the HTTP API serves what it gathers at
	// GET /metrics, in Prometheus' text format.
	Registerer prometheus.Registerer

	// EtcdEndpoints are the client URLs of an existing etcd cluster to use.
	EtcdEndpoints []string
	// EtcdClient is an etcd client the caller already has. ClusterKit never closes it.
	EtcdClient *clientv3.Client
	// EtcdUsername and EtcdPassword authenticate to etcd (with EtcdEndpoints or JoinAddr).
	EtcdUsername string
	EtcdPassword string
	// EtcdTLS secures the connection to etcd (with EtcdEndpoints or JoinAddr). Default none.
	EtcdTLS *tls.Config
	// EtcdDialTimeout bounds each connection attempt to etcd. Default 5s.
	EtcdDialTimeout time.Duration
	// MaxLongPolls is how many GET /cluster, /cluster/map and /cluster/nodes long polls (with
	// wait) may wait on this node at once; one more is answered 503 with Retry-After, so that its
	// client asks another node (a dashboard tab holds two). Default 4096.
	MaxLongPolls int

	// EmbeddedEtcdClientAddr is the host:port the embedded etcd serves clients on. Default: the
	// HTTPAddr port + 10000 (a free port when that is out of range or HTTPAddr has port 0), on
	// the host of HTTPAddr; when that host is empty or 0.0.0.0, on 127.0.0.1 if AdvertiseAddr is a
	// loopback address (the embedded etcd has no authentication), else on all interfaces.
	EmbeddedEtcdClientAddr string
	// EmbeddedEtcdPeerAddr is the host:port the embedded etcd serves peers on. Default: the
	// HTTPAddr port + 20000, on a host chosen as above. It is part of the member's identity: a
	// member node must restart on the same peer address (with port 0, the one it picked first
	// is remembered in DataDir).
	EmbeddedEtcdPeerAddr string
	// EmbeddedMembers is how many nodes of a cluster on embedded etcd run an etcd member: 1, 3
	// or 5. The first nodes to join become members (learner first, then promoted), the others
	// are clients of those members. A cluster survives the loss of (EmbeddedMembers-1)/2 of its
	// member nodes. Fixed when the cluster is created and stored in its config; 0 means 3 for a
	// new cluster and the cluster's value for a joining node. Only with embedded etcd (not with
	// EtcdEndpoints or EtcdClient).
	EmbeddedMembers int

	// Logger receives the node's log. Nil means silent.
	Logger *zap.Logger

	// unsafeNoFsync makes the embedded etcd skip fsync: only tests set it.
	unsafeNoFsync bool
	// embeddedHeartbeat is the embedded etcd's raft heartbeat (election timeout: 10 times it);
	// 0 means etcd's defaults (100ms, 1s). Only tests shorten it.
	embeddedHeartbeat time.Duration
	// etcdSizeEvery is how often the etcd size monitor polls; 0 means every 30s. Only tests
	// shorten it.
	etcdSizeEvery time.Duration
}

// etcdMode says where the node's etcd comes from.
type etcdMode int

const (
	etcdEmbedded etcdMode = iota
	etcdEndpoints
	etcdClient
	etcdJoin
)

func (o *Options) mode() etcdMode {
	switch {
	case o.EtcdClient != nil:
		return etcdClient
	case len(o.EtcdEndpoints) > 0:
		return etcdEndpoints
	case o.JoinAddr != "":
		return etcdJoin
	}
	return etcdEmbedded
}

// withDefaults returns o with every zero optional field set to its default.
func (o Options) withDefaults() Options {
	if o.PartitionCount == 0 {
		o.PartitionCount = DefaultPartitionCount
	}
	if o.ReplicationFactor == 0 {
		o.ReplicationFactor = DefaultReplicationFactor
	}
	if o.Weight == 0 {
		o.Weight = 1
	}
	if o.LeaseTTL == 0 {
		o.LeaseTTL = DefaultLeaseTTL
	}
	if o.StartTimeout == 0 {
		o.StartTimeout = DefaultStartTimeout
	}
	if o.ShutdownTimeout == 0 {
		o.ShutdownTimeout = DefaultShutdownTimeout
	}
	if o.MaxConcurrentHooks == 0 {
		o.MaxConcurrentHooks = DefaultMaxConcurrentHooks
	}
	if o.EtcdDialTimeout == 0 {
		o.EtcdDialTimeout = DefaultEtcdDialTimeout
	}
	if o.HandoffTimeout == 0 {
		o.HandoffTimeout = DefaultHandoffTimeout
	}
	if o.MaxLongPolls == 0 {
		o.MaxLongPolls = DefaultMaxLongPolls
	}
	if o.CoalesceWindow == 0 {
		o.CoalesceWindow = DefaultCoalesceWindow
	}
	if o.DataDir == "" && o.NodeID != "" {
		o.DataDir = filepath.Join(os.TempDir(), "clusterkit", o.NodeID)
	}
	if o.ClusterName == "" && o.mode() != etcdJoin {
		o.ClusterName = DefaultClusterName
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	return o
}

// validate reports the first invalid field, wrapping ErrInvalidOptions.
func (o *Options) validate() error {
	bad := func(field, format string, args ...any) error {
		return fmt.Errorf("%w: %s: %s", ErrInvalidOptions, field, fmt.Sprintf(format, args...))
	}
	if o.NodeID == "" {
		return bad("NodeID", "required")
	}
	if err := keys.ValidNodeID(o.NodeID); err != nil {
		return bad("NodeID", "%v", err)
	}
	if o.HTTPAddr == "" {
		return bad("HTTPAddr", "required (for example \":8080\")")
	}
	if err := checkHostPort(o.HTTPAddr, true); err != nil {
		return bad("HTTPAddr", "%v", err)
	}
	if o.AdvertiseAddr != "" {
		if err := checkHostPort(o.AdvertiseAddr, false); err != nil {
			return bad("AdvertiseAddr", "%v", err)
		}
	}
	if o.JoinAddr != "" {
		if err := checkHostPort(o.JoinAddr, false); err != nil {
			return bad("JoinAddr", "%v", err)
		}
	}
	if o.ClusterName != "" {
		if err := keys.ValidClusterName(o.ClusterName); err != nil {
			return bad("ClusterName", "%v", err)
		}
	}
	if o.PartitionCount < 1 || o.PartitionCount > MaxPartitionCount {
		return bad("PartitionCount", "%d is outside 1..%d", o.PartitionCount, MaxPartitionCount)
	}
	if o.ReplicationFactor < 1 || o.ReplicationFactor > MaxReplicationFactor {
		return bad("ReplicationFactor", "%d is outside 1..%d", o.ReplicationFactor, MaxReplicationFactor)
	}
	if o.Weight < 1 || o.Weight > rebalance.MaxWeight {
		return bad("Weight", "%d is outside 1..%d", o.Weight, rebalance.MaxWeight)
	}
	if b, err := json.Marshal(o.Metadata); err != nil || len(b) > MaxMetadataBytes {
		return bad("Metadata", "%d bytes as JSON, more than %d (the node's record in etcd is at most %d)", len(b), MaxMetadataBytes, state.MaxNodeRecord)
	}
	if len(o.Zone) > 128 || strings.ContainsFunc(o.Zone, unicode.IsControl) {
		return bad("Zone", "%q: at most 128 bytes, no control characters", o.Zone)
	}
	if o.LeaseTTL < 2*time.Second || o.LeaseTTL > 10*time.Minute || o.LeaseTTL%time.Second != 0 {
		return bad("LeaseTTL", "%v must be whole seconds, 2s to 10m (etcd leases count seconds)", o.LeaseTTL)
	}
	// Each bound says why: below it the setting defeats itself (a HandoffTimeout shorter than an
	// acknowledgement takes re-asks every copy forever), above it a mistake hangs a node for days.
	for _, b := range []struct {
		name     string
		d        time.Duration
		min, max time.Duration
	}{
		{"StartTimeout", o.StartTimeout, 100 * time.Millisecond, time.Hour},
		{"ShutdownTimeout", o.ShutdownTimeout, 100 * time.Millisecond, time.Hour},
		{"EtcdDialTimeout", o.EtcdDialTimeout, 10 * time.Millisecond, 10 * time.Minute},
		{"HandoffTimeout", o.HandoffTimeout, MinHandoffTimeout, 24 * time.Hour},
		{"CrashGracePeriod", o.CrashGracePeriod, 0, 24 * time.Hour},
		{"CoalesceWindow", o.CoalesceWindow, time.Millisecond, 10 * time.Second},
	} {
		if b.d < b.min || b.d > b.max {
			return bad(b.name, "%v is outside %v..%v", b.d, b.min, b.max)
		}
	}
	if o.MaxHandoffsPerNode < 0 || o.MaxHandoffsPerNode > 1<<20 {
		return bad("MaxHandoffsPerNode", "%d is outside 0..%d (0: no bound)", o.MaxHandoffsPerNode, 1<<20)
	}
	if o.MaxHandoffs < 0 || o.MaxHandoffs > 1<<20 {
		return bad("MaxHandoffs", "%d is outside 0..%d (0: no bound)", o.MaxHandoffs, 1<<20)
	}
	if o.MaxConcurrentHooks < 1 || o.MaxConcurrentHooks > 10000 {
		return bad("MaxConcurrentHooks", "%d is outside 1..10000", o.MaxConcurrentHooks)
	}
	if o.MaxLongPolls < 1 || o.MaxLongPolls > 1<<20 {
		return bad("MaxLongPolls", "%d is outside 1..%d", o.MaxLongPolls, 1<<20)
	}
	if len(o.EtcdEndpoints) > 32 {
		return bad("EtcdEndpoints", "%d endpoints, more than 32", len(o.EtcdEndpoints))
	}
	set := 0
	for _, b := range []bool{o.EtcdClient != nil, len(o.EtcdEndpoints) > 0, o.JoinAddr != ""} {
		if b {
			set++
		}
	}
	if set > 1 {
		return bad("EtcdClient/EtcdEndpoints/JoinAddr", "set at most one of them")
	}
	for _, ep := range o.EtcdEndpoints {
		if ep == "" {
			return bad("EtcdEndpoints", "has an empty endpoint")
		}
	}
	if o.JoinToken != "" {
		if err := pki.CheckToken(o.JoinToken); err != nil {
			return bad("JoinToken", "%v", err)
		}
		if m := o.mode(); m == etcdClient || m == etcdEndpoints {
			return bad("JoinToken", "secure mode runs on the embedded etcd; with EtcdEndpoints or EtcdClient secure the connection with EtcdTLS and etcd's own authentication")
		}
	}
	if o.JoinToken != "" && (o.HTTPTLS != nil || o.HTTPClientTLS != nil) {
		return bad("HTTPTLS/HTTPClientTLS", "not with JoinToken: secure mode serves the API with the cluster CA's certificates")
	}
	if o.HTTPTLS != nil && o.HTTPTLS.Certificates == nil && o.HTTPTLS.GetCertificate == nil {
		return bad("HTTPTLS", "has no certificate (Certificates or GetCertificate)")
	}
	if o.EtcdClient != nil && (o.EtcdUsername != "" || o.EtcdTLS != nil) {
		return bad("EtcdUsername/EtcdTLS", "configure them on EtcdClient itself")
	}
	if (o.EtcdUsername == "") != (o.EtcdPassword == "") {
		return bad("EtcdUsername/EtcdPassword", "set both or neither")
	}
	switch o.EmbeddedMembers {
	case 0, 1, 3, 5:
	default:
		return bad("EmbeddedMembers", "%d is not 1, 3 or 5 (an etcd quorum needs an odd member count)", o.EmbeddedMembers)
	}
	if o.EmbeddedMembers != 0 && (o.EtcdClient != nil || len(o.EtcdEndpoints) > 0) {
		return bad("EmbeddedMembers", "applies to embedded etcd only, not with EtcdEndpoints or EtcdClient")
	}
	for field, addr := range map[string]string{"EmbeddedEtcdClientAddr": o.EmbeddedEtcdClientAddr, "EmbeddedEtcdPeerAddr": o.EmbeddedEtcdPeerAddr} {
		if addr != "" {
			if err := checkHostPort(addr, true); err != nil {
				return bad(field, "%v", err)
			}
		}
	}
	return nil
}

// checkHostPort validates host:port; listen allows an empty host and port 0.
func checkHostPort(addr string, listen bool) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q is not host:port: %v", addr, err)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 0 || p > 65535 {
		return fmt.Errorf("%q has port %q outside 0..65535", addr, port)
	}
	if !listen && (host == "" || p == 0) {
		return fmt.Errorf("%q needs a host and a non-zero port", addr)
	}
	return nil
}

// advertiseFor returns the address peers reach a listener bound at addr on.
func advertiseFor(addr net.Addr) string {
	host, port, _ := net.SplitHostPort(addr.String())
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

// embeddedAddr derives an embedded etcd address from the HTTP listener's port. The embedded etcd
// has no authentication, so it listens on loopback only unless the node advertises a routable
// address (nodes on other machines must reach it then).
func embeddedAddr(httpAddr, advertiseHost string, httpPort, offset int) string {
	host, _, _ := net.SplitHostPort(httpAddr)
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "0.0.0.0"
		if ip := net.ParseIP(advertiseHost); advertiseHost == "localhost" || ip != nil && ip.IsLoopback() {
			host = "127.0.0.1"
		}
	}
	p := httpPort + offset
	if httpPort == 0 || p > 65535 {
		p = 0
	}
	return net.JoinHostPort(host, strconv.Itoa(p))
}
