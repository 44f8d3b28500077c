package clusterkit

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/clusterkit-go/clusterkit/internal/keys"
	"github.com/clusterkit-go/clusterkit/internal/partition"
	"github.com/clusterkit-go/clusterkit/internal/state"
	"github.com/clusterkit-go/clusterkit/pkg/embed"
)

// ClusterKit is one node of a cluster. Create it with NewClusterKit, then Start it. Lookups
// (GetPartition, GetPrimary, ...) are safe for concurrent use, take no lock and allocate
// nothing: they read an immutable snapshot of the partition map.
type ClusterKit struct {
	opts   Options
	log    *zap.Logger
	schema keys.Schema

	snap       atomic.Pointer[snapshot]
	hooks      atomic.Pointer[[]PartitionChangeHook]
	eventHooks atomic.Pointer[[]EventHook]
	// changed is closed and replaced every time a new map is applied.
	changed atomic.Pointer[chan struct{}]

	// base anchors leaseDeadline on the monotonic clock.
	base time.Time
	// leaseDeadline is the time (nanoseconds since base) until which the node's lease is known
	// to be held: the last keepalive answer plus the TTL, less a safety margin.
	leaseDeadline atomic.Int64
	leader        atomic.Bool
	// fenced is set while the lease deadline has passed without a renewal: the node then claims
	// no primary role. renewed wakes the fencing goroutine on every renewal.
	fenced atomic.Bool
	// fenceHold is set from a lost lease until the map has been read again.
	fenceHold atomic.Bool
	renewed   chan struct{}
	// applyMu serialises apply between the map watch and catchUp.
	applyMu sync.Mutex
	metrics *metrics
	// acks carries handoff acknowledgements to the writer goroutine.
	acks chan ackReq
	// enqueued is the epoch of the last map whose hook events were handed to the dispatcher.
	enqueued atomic.Uint64

	mu       sync.Mutex
	started  bool
	stopped  bool
	stopOnce sync.Once

	// Set by Start and read-only after it.
	client    *clientv3.Client
	ownClient bool
	// member is the node's embedded etcd member, nil for a client node; guarded by mu once the
	// node runs (a client node may become a member, a member may be decommissioned).
	member     *embed.Member
	httpServer *http.Server
	listener   net.Listener
	self       state.Node
	config     state.Config
	dispatch   *dispatcher

	// leaving is closed by Stop: the leader publishes a map without this node, the others stop
	// campaigning.
	leaving chan struct{}
	// runCtx bounds every background goroutine; cancelled last in Stop.
	runCtx    context.Context
	runCancel context.CancelFunc
	wg        sync.WaitGroup
	// campaignDone is closed when the membership loop has left the election for good.
	campaignDone chan struct{}
	// session is the current registration; guarded by mu.
	session *registration
	// decommissioned is set by Decommission: the node takes no etcd member place any more.
	decommissioned atomic.Bool
}

// NewClusterKit validates opts, fills in the defaults of the zero fields and returns a node that
// is not started yet. It does no I/O. Errors wrap ErrInvalidOptions and name the field.
func NewClusterKit(opts Options) (*ClusterKit, error) {
	o := opts.withDefaults()
	if err := o.validate(); err != nil {
		return nil, err
	}
	m, err := newMetrics(o.Registerer)
	if err != nil {
		return nil, fmt.Errorf("%w: Registerer: %v", ErrInvalidOptions, err)
	}
	ck := &ClusterKit{
		opts:         o,
		log:          o.Logger.Named("clusterkit").With(zap.String("node_id", o.NodeID)),
		base:         time.Now(),
		leaving:      make(chan struct{}),
		campaignDone: make(chan struct{}),
		renewed:      make(chan struct{}, 1),
		metrics:      m,
		acks:         make(chan ackReq, 1024),
	}
	ch := make(chan struct{})
	ck.changed.Store(&ch)
	ck.dispatch = newDispatcher(ck.log.Named("hooks"), o.MaxConcurrentHooks, ck.deliver)
	return ck, nil
}

// Start connects to etcd (starting an embedded member when no etcd is configured), registers
// the node, joins the leader election and watches the partition map. It blocks until the node
// holds a partition map that lists it, an error occurs, or Options.StartTimeout passes; on error
// everything it started is stopped again. Start may be called once.
func (ck *ClusterKit) Start() error {
	return ck.StartContext(context.Background())
}

// StartContext is Start with a context: cancelling ctx aborts the start.
func (ck *ClusterKit) StartContext(ctx context.Context) (err error) {
	ck.mu.Lock()
	if ck.stopped {
		ck.mu.Unlock()
		return ErrStopped
	}
	if ck.started {
		ck.mu.Unlock()
		return errors.New("clusterkit: already started")
	}
	ck.started = true
	ck.mu.Unlock()

	ctx, cancel := context.WithTimeout(ctx, ck.opts.StartTimeout)
	defer cancel()
	ck.runCtx, ck.runCancel = context.WithCancel(context.Background())
	defer func() {
		if err != nil {
			ck.shutdown(stopAbort)
		}
	}()

	if err := ck.listen(); err != nil {
		return err
	}
	if err := ck.connect(ctx); err != nil {
		return err
	}
	if err := ck.ensureConfig(ctx); err != nil {
		return err
	}
	if err := ck.setUpEmbedded(ctx); err != nil {
		return err
	}
	// Read the map before registering: the map that adds this node is then a change the watch
	// sees, so the hooks registered before Start fire for the partitions the node gains.
	initial, err := ck.readInitialMap(ctx)
	if err != nil {
		return err
	}
	reg, err := ck.register(ctx)
	if err != nil {
		return err
	}
	ck.self = reg.self
	ck.mu.Lock()
	ck.session = reg
	ck.mu.Unlock()
	ck.wg.Add(4)
	go func() { defer ck.wg.Done(); ck.runMembership(reg) }()
	go func() { defer ck.wg.Done(); ck.watchMap(initial) }()
	go func() { defer ck.wg.Done(); ck.writeAcks() }()
	go func() { defer ck.wg.Done(); ck.runFence() }()

	if err := ck.waitListed(ctx); err != nil {
		return err
	}
	ck.log.Info("node started", zap.String("addr", ck.self.IP), zap.Uint64("epoch", ck.snap.Load().epoch),
		zap.String("cluster", ck.opts.ClusterName))
	return nil
}

// listen binds the HTTP API, so that the advertised address is known before registering.
func (ck *ClusterKit) listen() error {
	l, err := net.Listen("tcp", ck.opts.HTTPAddr)
	if err != nil {
		return fmt.Errorf("clusterkit: listen on HTTPAddr: %w", err)
	}
	ck.listener = l
	if ck.opts.AdvertiseAddr == "" {
		ck.opts.AdvertiseAddr = advertiseFor(l.Addr())
	}
	ck.httpServer = newHTTPServer(ck.Handler())
	ck.wg.Add(1)
	go func() {
		defer ck.wg.Done()
		if err := ck.httpServer.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			ck.log.Error("http server stopped", zap.Error(err))
		}
	}()
	return nil
}

// connect sets up the etcd client for the configured mode, starting the embedded member of a
// bootstrap node, and of a member node that restarts with its DataDir.
func (ck *ClusterKit) connect(ctx context.Context) error {
	var endpoints []string
	ls, err := ck.readLocalState()
	if err != nil {
		return err
	}
	switch ck.opts.mode() {
	case etcdClient:
		ck.client = ck.opts.EtcdClient
	case etcdEndpoints:
		endpoints = ck.opts.EtcdEndpoints
	case etcdJoin:
		if embed.HasData(ck.etcdDir()) {
			// A member node restarting: its member knows its cluster, JoinAddr is not needed.
			name, source := ls.ClusterName, "the cluster remembered in DataDir"
			if name == "" {
				// Its DataDir lost what it remembers: the node at JoinAddr knows the name.
				var err error
				if name, _, err = ck.joinEndpoints(ctx, ls); err != nil {
					return err
				}
				source = "the node at JoinAddr " + ck.opts.JoinAddr
			}
			if err := ck.checkClusterName(name, source); err != nil {
				return err
			}
			if err := ck.startMember(ctx, ls); err != nil {
				return err
			}
			endpoints = union(ck.member.Endpoints(), ls.EtcdEndpoints)
			break
		}
		name, eps, err := ck.joinEndpoints(ctx, ls)
		if err != nil {
			return err
		}
		if err := ck.checkClusterName(name, "the node at JoinAddr "+ck.opts.JoinAddr); err != nil {
			return err
		}
		endpoints = eps
	case etcdEmbedded:
		if !embed.HasData(ck.etcdDir()) && len(ls.EtcdEndpoints) > 0 {
			// Creating a new cluster here would split this node from the one it belonged to.
			return fmt.Errorf("clusterkit: DataDir %s belonged to cluster %q (etcd at %v) but holds no etcd data: set JoinAddr to any node of that cluster to rejoin it, or empty DataDir to create a new cluster",
				ck.opts.DataDir, ls.ClusterName, ls.EtcdEndpoints)
		}
		if err := ck.startMember(ctx, ls); err != nil {
			return err
		}
		endpoints = union(ck.member.Endpoints(), ls.EtcdEndpoints)
	}
	ck.schema = keys.New(ck.opts.ClusterName)
	if ck.client == nil {
		c, err := clientv3.New(clientv3.Config{
			Endpoints:            endpoints,
			DialTimeout:          ck.opts.EtcdDialTimeout,
			DialKeepAliveTime:    ck.opts.LeaseTTL / 2,
			DialKeepAliveTimeout: ck.opts.LeaseTTL / 4,
			Username:             ck.opts.EtcdUsername,
			Password:             ck.opts.EtcdPassword,
			TLS:                  ck.opts.EtcdTLS,
			Logger:               ck.log.Named("etcd-client").WithOptions(zap.IncreaseLevel(zap.ErrorLevel)),
		})
		if err != nil {
			return fmt.Errorf("clusterkit: etcd client for %v%s: %w", endpoints, tlsHint(endpoints, ck.opts.EtcdTLS), err)
		}
		ck.client = c
		ck.ownClient = true
	}
	// clientv3.New does not wait for a connection: prove etcd answers before going on.
	pctx, cancel := context.WithTimeout(ctx, ck.opts.EtcdDialTimeout)
	defer cancel()
	if _, err := ck.client.Get(pctx, ck.schema.Config()); err != nil {
		return fmt.Errorf("clusterkit: etcd at %v does not answer within EtcdDialTimeout (%v)%s: %w",
			ck.client.Endpoints(), ck.opts.EtcdDialTimeout, tlsHint(endpoints, ck.opts.EtcdTLS), err)
	}
	return nil
}

// checkClusterName adopts the cluster name learned from source, or checks it against
// Options.ClusterName.
func (ck *ClusterKit) checkClusterName(name, source string) error {
	switch {
	case name == "":
		return fmt.Errorf("clusterkit: %s does not say which cluster it belongs to", source)
	case ck.opts.ClusterName == "":
		ck.opts.ClusterName = name
	case ck.opts.ClusterName != name:
		return fmt.Errorf("clusterkit: ClusterName is %q but %s belongs to cluster %q", ck.opts.ClusterName, source, name)
	}
	return nil
}

// joinEndpoints asks the node at JoinAddr for its cluster's name and etcd endpoints. When that
// node does not answer within EtcdDialTimeout and DataDir remembers the endpoints of an earlier
// life, those are used instead: a restarting node does not depend on the node it first joined.
func (ck *ClusterKit) joinEndpoints(ctx context.Context, ls localState) (string, []string, error) {
	if len(ls.EtcdEndpoints) == 0 || ls.ClusterName == "" {
		info, err := fetchJoinInfo(ctx, ck.opts.JoinAddr)
		if err != nil {
			return "", nil, err
		}
		return info.ClusterName, info.EtcdEndpoints, nil
	}
	jctx, cancel := context.WithTimeout(ctx, ck.opts.EtcdDialTimeout)
	info, err := fetchJoinInfo(jctx, ck.opts.JoinAddr)
	cancel()
	if err == nil {
		return info.ClusterName, info.EtcdEndpoints, nil
	}
	ck.log.Warn("JoinAddr does not answer, using the etcd endpoints remembered in DataDir",
		zap.String("join_addr", ck.opts.JoinAddr), zap.Strings("endpoints", ls.EtcdEndpoints), zap.Error(err))
	return ls.ClusterName, ls.EtcdEndpoints, nil
}

// union returns the strings of a and b, each once, in order.
func union(a, b []string) []string {
	out := slices.Clone(a)
	for _, s := range b {
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

// ensureConfig creates the cluster's config, or checks the node's settings against it.
func (ck *ClusterKit) ensureConfig(ctx context.Context) error {
	local := state.Config{
		ClusterID:         newID(),
		PartitionCount:    ck.opts.PartitionCount,
		ReplicationFactor: ck.opts.ReplicationFactor,
		Hash:              state.HashConfig{Algorithm: state.HashMD5, Modulo: ck.opts.PartitionCount, Format: state.PartitionFormat},
		CreatedAt:         time.Now().UTC(),
	}
	if ck.opts.mode() == etcdEmbedded {
		local.EmbeddedMembers = cmp.Or(ck.opts.EmbeddedMembers, DefaultEmbeddedMembers)
	}
	b, err := json.Marshal(local)
	if err != nil {
		return err
	}
	key := ck.schema.Config()
	resp, err := ck.client.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, string(b))).
		Else(clientv3.OpGet(key)).Commit()
	if err != nil {
		return fmt.Errorf("clusterkit: write cluster config: %w", err)
	}
	if resp.Succeeded {
		ck.config = local
		ck.log.Info("cluster created", zap.String("cluster_id", local.ClusterID),
			zap.Int("partition_count", local.PartitionCount), zap.Int("replication_factor", local.ReplicationFactor))
		return nil
	}
	var stored state.Config
	kvs := resp.Responses[0].GetResponseRange().Kvs
	if len(kvs) == 0 {
		return errors.New("clusterkit: cluster config vanished while reading it")
	}
	if err := json.Unmarshal(kvs[0].Value, &stored); err != nil {
		return fmt.Errorf("clusterkit: cluster config at %s: %w", key, err)
	}
	if setting, ours, theirs := local.Differs(stored); setting != "" {
		return &ConfigMismatchError{Setting: setting, Local: ours, Cluster: theirs}
	}
	// A node that leaves EmbeddedMembers unset follows the cluster.
	if n := ck.opts.EmbeddedMembers; n != 0 && n != stored.EmbeddedMembers {
		return &ConfigMismatchError{Setting: "EmbeddedMembers", Local: n, Cluster: stored.EmbeddedMembers}
	}
	ck.config = stored
	return nil
}

// instanceID returns the identity of this DataDir's life, creating it on first use.
func (ck *ClusterKit) instanceID() (string, error) {
	path := filepath.Join(ck.opts.DataDir, "instance")
	if b, err := os.ReadFile(path); err == nil && len(b) > 0 {
		return string(b), nil
	}
	if err := os.MkdirAll(ck.opts.DataDir, 0o700); err != nil {
		return "", fmt.Errorf("clusterkit: DataDir: %w", err)
	}
	id := newID()
	if err := os.WriteFile(path, []byte(id), 0o600); err != nil {
		return "", fmt.Errorf("clusterkit: DataDir: %w", err)
	}
	return id, nil
}

func newID() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// readInitialMap reads the map the watch starts from.
func (ck *ClusterKit) readInitialMap(ctx context.Context) (initialMap, error) {
	r, err := state.ReadMap(ctx, ck.client, ck.schema, 0)
	if err != nil {
		return initialMap{}, fmt.Errorf("clusterkit: read partition map: %w", err)
	}
	return initialMap{m: r.Map, rev: r.Revision}, nil
}

// waitListed blocks until the applied map lists this node.
func (ck *ClusterKit) waitListed(ctx context.Context) error {
	for {
		ch := *ck.changed.Load()
		if s := ck.snap.Load(); s != nil {
			if _, ok := s.nodes[ck.opts.NodeID]; ok {
				return nil
			}
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("clusterkit: no partition map lists this node after %v (is a leader elected?): %w",
				ck.opts.StartTimeout, ctx.Err())
		}
	}
}

// Stop leaves the cluster: if this node leads, it first publishes a map without itself; then it
// revokes its lease, so that the other nodes learn at once (its record and election key go with
// the lease), stops the HTTP API, waits up to ShutdownTimeout for running hooks (pending ones
// are dropped), and closes what it opened (never a caller's EtcdClient). It blocks until all of
// that is done or ShutdownTimeout passes, and is safe to call more than once and concurrently.
func (ck *ClusterKit) Stop() error {
	ck.shutdown(stopLeave)
	return nil
}

// stopMode says how a node goes away.
type stopMode int

const (
	// stopLeave is Stop: hand leadership over, revoke the lease.
	stopLeave stopMode = iota
	// stopAbort undoes a failed Start: revoke the lease, publish nothing.
	stopAbort
	// stopCrash stops every goroutine without telling etcd anything, as a killed process
	// would: the lease expires after its TTL. Only tests use it.
	stopCrash
)

func (ck *ClusterKit) shutdown(mode stopMode) {
	ck.stopOnce.Do(func() {
		ck.mu.Lock()
		ck.stopped = true
		started := ck.started
		ck.mu.Unlock()
		if !started {
			return
		}
		deadline := time.Now().Add(ck.opts.ShutdownTimeout)
		if mode == stopLeave {
			// A leader publishes the map without itself before its lease (and with it the
			// leader key) goes; wait for that. A follower has nothing to hand over: revoking its
			// lease at once is what tells the leader, and it also removes its candidate key.
			close(ck.leaving)
			if ck.leader.Load() {
				select {
				case <-ck.campaignDone:
				case <-time.After(time.Until(deadline)):
					ck.log.Warn("leaving the election timed out")
				}
			}
		}
		ck.mu.Lock()
		reg := ck.session
		ck.mu.Unlock()
		if reg != nil && mode == stopLeave {
			// Say "leaving" before the record goes, so that the leader tells a Stop from a crash.
			ctx, cancel := context.WithTimeout(context.Background(), min(time.Second, max(0, time.Until(deadline))))
			if err := ck.setState(ctx, reg, state.NodeLeaving); err != nil {
				ck.log.Warn("marking the node as leaving failed", zap.Error(err))
			} else {
				// Revoke once the cluster has moved on: the map without this node is on the
				// critical path, the revocation is not, and it only adds etcd work before it.
				ck.waitUnlisted(ctx)
			}
			cancel()
		}
		if reg != nil && mode != stopCrash {
			reg.revoke(ck.client, time.Until(deadline))
		}
		ck.runCancel()
		if reg != nil {
			reg.cancel()
		}
		if n := ck.dispatch.close(max(0, time.Until(deadline))); n > 0 {
			ck.log.Warn("hooks still running at stop", zap.Int("running", n))
		}
		if ck.httpServer != nil {
			ctx, cancel := context.WithDeadline(context.Background(), deadline)
			ck.httpServer.Shutdown(ctx)
			cancel()
			ck.httpServer.Close()
		}
		ck.wg.Wait()
		if ck.ownClient && ck.client != nil {
			ck.client.Close()
		}
		if m := ck.embeddedMember(); m != nil {
			m.Close()
		}
		ck.log.Info("node stopped")
	})
}

// OnPartitionChange registers a hook called for every (partition, new holder) of every map
// change. Register hooks before Start to see the changes that Start itself brings about. Hooks
// run on background goroutines, at most Options.MaxConcurrentHooks at once; the hooks of one
// partition run one at a time in map order. A panicking hook is recovered and logged. Safe for
// concurrent use.
func (ck *ClusterKit) OnPartitionChange(hook func(partitionID string, copyFromNodes []*Node, copyToNode *Node)) {
	ck.mu.Lock()
	defer ck.mu.Unlock()
	var hooks []PartitionChangeHook
	if p := ck.hooks.Load(); p != nil {
		hooks = append(hooks, *p...)
	}
	hooks = append(hooks, hook)
	ck.hooks.Store(&hooks)
}

// GetMyNodeID returns this node's ID.
func (ck *ClusterKit) GetMyNodeID() string { return ck.opts.NodeID }

// GetPartition returns the partition that holds key, from the current map. It returns
// ErrNoPartitionMap before the node holds a map. The result is shared and must not be modified.
func (ck *ClusterKit) GetPartition(key string) (*Partition, error) {
	s := ck.snap.Load()
	if s == nil {
		return nil, ErrNoPartitionMap
	}
	return &s.partitions[s.mod.Of(partition.Hash(key))], nil
}

// find returns the current snapshot and partition's index in it, or nil when there is no map
// or the partition is unknown.
func (ck *ClusterKit) find(partition *Partition) (*snapshot, int) {
	s := ck.snap.Load()
	if s == nil {
		return nil, -1
	}
	i := s.lookup(partition)
	if i < 0 {
		return nil, -1
	}
	return s, i
}

// GetPrimary returns the current primary of partition, or nil when there is no map or the
// partition is unknown. The result is shared and must not be modified.
func (ck *ClusterKit) GetPrimary(partition *Partition) *Node {
	s, i := ck.find(partition)
	if s == nil {
		return nil
	}
	return s.primaries[i]
}

// GetReplicas returns the current replicas of partition (its holders but the primary). The
// result is shared and must not be modified.
func (ck *ClusterKit) GetReplicas(partition *Partition) []Node {
	s, i := ck.find(partition)
	if s == nil {
		return nil
	}
	return s.holders[i][1:]
}

// GetNodes returns all current holders of partition, primary first. The result is shared and
// must not be modified.
func (ck *ClusterKit) GetNodes(partition *Partition) []Node {
	s, i := ck.find(partition)
	if s == nil {
		return nil
	}
	return s.holders[i]
}

// IsPrimary reports whether this node is the current primary of partition. It is false while
// the node is self-fenced: when its lease deadline has passed without a renewal (etcd out of
// reach), another node may already have been made primary.
func (ck *ClusterKit) IsPrimary(partition *Partition) bool {
	s, i := ck.find(partition)
	return s != nil && s.partitions[i].PrimaryNode == ck.opts.NodeID && !ck.selfFenced()
}

// IsPrimaryAt reports whether this node is still the primary of partition with the given
// primary epoch: the cheap check before acting on a write stamped with that epoch. It is false
// once another node has become primary (the epoch grew), and while the node is self-fenced.
func (ck *ClusterKit) IsPrimaryAt(partition *Partition, primaryEpoch uint64) bool {
	s, i := ck.find(partition)
	return s != nil && s.partitions[i].PrimaryNode == ck.opts.NodeID && s.partitions[i].PrimaryEpoch == primaryEpoch &&
		!ck.selfFenced()
}

// PrimaryEpoch returns the current primary epoch of partition, 0 when unknown. A replica
// refuses writes stamped with an epoch lower than this: they come from a deposed primary.
func (ck *ClusterKit) PrimaryEpoch(partition *Partition) uint64 {
	if s, i := ck.find(partition); s != nil {
		return s.partitions[i].PrimaryEpoch
	}
	return 0
}

// IsFenced reports whether the node has stopped claiming primary roles because it could not
// renew its lease in time.
func (ck *ClusterKit) IsFenced() bool { return ck.selfFenced() }

// selfFenced reads the monotonic clock rather than only the flag the fencing goroutine sets:
// a process resumed after a long pause (SIGSTOP, a VM freeze) must not answer from the flag
// before that goroutine has run.
func (ck *ClusterKit) selfFenced() bool {
	return ck.fenced.Load() || ck.fenceHold.Load() || int64(time.Since(ck.base)) >= ck.leaseDeadline.Load()
}

// IsReplica reports whether this node is currently a replica (a holder but not the primary) of
// partition.
func (ck *ClusterKit) IsReplica(partition *Partition) bool {
	s, i := ck.find(partition)
	if s == nil {
		return false
	}
	for _, id := range s.partitions[i].ReplicaNodes {
		if id == ck.opts.NodeID {
			return true
		}
	}
	return false
}

// Epoch returns the epoch of the map this node holds, 0 before it holds one.
func (ck *ClusterKit) Epoch() uint64 {
	if s := ck.snap.Load(); s != nil {
		return s.epoch
	}
	return 0
}

// Leader returns the ID of the node that published the map this node holds.
func (ck *ClusterKit) Leader() string {
	if s := ck.snap.Load(); s != nil {
		return s.leader
	}
	return ""
}

// IsLeader reports whether this node currently leads the cluster.
func (ck *ClusterKit) IsLeader() bool { return ck.leader.Load() }

// AdvertiseAddr is the address other nodes reach this node's HTTP API at; known after Start.
func (ck *ClusterKit) AdvertiseAddr() string { return ck.self.IP }

// tlsHint explains the usual cause of a silent dial failure: TLS on one side only.
func tlsHint(endpoints []string, tlsConfig *tls.Config) string {
	for _, ep := range endpoints {
		if strings.HasPrefix(ep, "https://") && tlsConfig == nil {
			return " (https endpoint but EtcdTLS is not set: set EtcdTLS with the etcd CA in RootCAs)"
		}
		if strings.HasPrefix(ep, "http://") && tlsConfig != nil {
			return " (EtcdTLS is set but the endpoint is http://: use https://)"
		}
	}
	return " (check the endpoints, EtcdTLS and credentials)"
}

// Drain hands every partition of this node over to the others and then leaves: the node is
// marked draining, is given nothing new, and keeps serving until each successor has copied its
// partitions (handoff), so no partition ever has fewer holders than before. Drain blocks until
// the node holds nothing and has stopped (it calls Stop), or ctx ends; on ctx's end the node keeps
// running, still draining, and the error says so. With no other node to take over, Drain waits
// for one.
func (ck *ClusterKit) Drain(ctx context.Context) error {
	ck.mu.Lock()
	reg, started, stopped := ck.session, ck.started, ck.stopped
	ck.mu.Unlock()
	if !started || stopped || reg == nil {
		return ErrNotStarted
	}
	if err := ck.setState(ctx, reg, state.NodeDraining); err != nil {
		return fmt.Errorf("clusterkit: mark node draining: %w", err)
	}
	ck.log.Info("draining")
	for {
		ch := *ck.changed.Load()
		if s := ck.snap.Load(); s != nil && !s.involves(ck.opts.NodeID) {
			break
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("clusterkit: drain not finished: %w", ctx.Err())
		}
	}
	return ck.Stop()
}

// waitUnlisted blocks until the map this node holds no longer lists it, or ctx ends.
func (ck *ClusterKit) waitUnlisted(ctx context.Context) {
	for {
		ch := *ck.changed.Load()
		if s := ck.snap.Load(); s == nil {
			return
		} else if _, ok := s.nodes[ck.opts.NodeID]; !ok {
			return
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return
		}
	}
}

// Nodes returns the nodes of the map this node holds, sorted by ID; nil before it holds a map.
// The values are shared with the snapshot and must not be modified. Safe for concurrent use.
func (ck *ClusterKit) Nodes() []Node {
	s := ck.snap.Load()
	if s == nil {
		return nil
	}
	out := make([]Node, len(s.nodeIDs))
	for i, id := range s.nodeIDs {
		out[i] = *s.nodes[id]
	}
	return out
}
