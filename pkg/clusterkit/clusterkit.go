package clusterkit

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/clusterkit-go/clusterkit/internal/keys"
	"github.com/clusterkit-go/clusterkit/internal/partition"
	"github.com/clusterkit-go/clusterkit/internal/state"
)

// ClusterKit is one node of a cluster. Create it with NewClusterKit, then Start it. Lookups
// (GetPartition, GetPrimary, ...) are safe for concurrent use, take no lock and allocate
// nothing: they read an immutable snapshot of the partition map.
//
// ClusterKit is a facade over parts that each own their state and goroutines: the lease clock
// (self-fencing), the election (registration, campaign, and the leader's publish loop), the map
// follower (the snapshot), the admin follower (what the node shows of the operators' actions),
// the hook runner (dispatcher and acknowledgements), the embedded member manager and the HTTP
// API. Start wires them in order; Stop closes them in order.
type ClusterKit struct {
	// env holds the options and the logger, shared with the parts.
	env *env

	// clock is held by value, as maps is: IsPrimary reads it on every call.
	clock leaseClock
	// maps is held by value: lookups reach the snapshot pointer without another indirection.
	maps mapFollower
	// admin is every node's view of the operators' actions, for what the node shows.
	admin    adminFollower
	hooks    *hookRunner
	election *election
	members  *members
	etcdSize *etcdSize
	api      *apiServer

	// mu guards started, stopped, startCancel and startDone; stopOnce runs the shutdown once.
	mu      sync.Mutex
	started bool
	stopped bool
	// startCancel aborts a Start in progress and startDone is closed when Start has returned
	// (and, when it failed, undone what it started): Stop waits for it before shutting down.
	startCancel context.CancelFunc
	startDone   chan struct{}
	stopOnce    sync.Once
	// ownClient is set when Start created the etcd client (and Stop closes it).
	ownClient bool
	// stop cancels the context every part's goroutines run under; group waits for them.
	stop  context.CancelFunc
	group sync.WaitGroup
	// stopping is closed when the node stops: long polls answer at once.
	stopping chan struct{}
}

// env is what the parts share. Start fills it in before any part's goroutine runs; it is
// read-only from then on.
type env struct {
	opts    Options
	log     *zap.Logger
	metrics *metrics
	client  *clientv3.Client
	schema  keys.Schema
	config  state.Config
	// clusterName is Options.ClusterName, or the name learned from JoinAddr or DataDir.
	clusterName string
	// addr is the address other nodes reach the HTTP API at (Options.AdvertiseAddr, or derived
	// from the listener).
	addr string
	// secure is the secure-mode state (Options.JoinToken); nil outside secure mode.
	secure *secure
	// noSpace is told of every write etcd refused for want of space (the size monitor's
	// noSpace, which then polls at once).
	noSpace func()
}

// failed passes a failed write's error to noSpace when etcd refused it for want of space.
func (e *env) failed(err error) {
	if e.noSpace != nil && isNoSpace(err) {
		e.noSpace()
	}
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
	log := o.Logger.Named("clusterkit").With(zap.String("node_id", o.NodeID))
	e := &env{opts: o, log: log, metrics: m, clusterName: o.ClusterName, addr: o.AdvertiseAddr}
	e.secure = newSecure(&o, log)
	ck := &ClusterKit{env: e, stopping: make(chan struct{})}
	ck.clock.init(log, m)
	ck.election = newElection(e, log, &ck.clock, nil, ck.record)
	ck.hooks = newHookRunner(e, log.Named("hooks"), o.NodeID, o.MaxConcurrentHooks, ck.election.lease, ck.maps.snapshot)
	ck.maps.init(e, ck.hooks.schedule, ck.election.lease)
	ck.admin.init(e, log.Named("admin"))
	ck.election.maps = &ck.maps
	ck.members = &members{env: e, log: log, leaving: ck.election.leaving}
	ck.members.onMember = func(ctx context.Context, endpoints []string) {
		// The record names the member's endpoints, as it does for a node that was a member
		// when it registered.
		if reg := ck.election.current(); reg != nil {
			if err := reg.rewrite(ctx, func(n *state.Node) { n.EtcdEndpoints = endpoints }); err != nil {
				log.Warn("naming the etcd member in the node's record failed", zap.Error(err))
			}
		}
	}
	ck.etcdSize = newEtcdSize(e, log.Named("etcd-size"), ck.members, m.etcd)
	e.noSpace = ck.etcdSize.noSpace
	ck.api = &apiServer{log: log}
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
	ctx, cancel := context.WithTimeout(ctx, ck.env.opts.StartTimeout)
	done := make(chan struct{})
	ck.startCancel, ck.startDone = cancel, done
	ck.mu.Unlock()
	defer close(done) // last: after the undoing below
	defer cancel()

	runCtx, stop := context.WithCancel(context.Background())
	ck.stop = stop
	defer func() {
		if err != nil {
			byStop := ck.isStopped() // before the shutdown below, which marks the node stopped
			ck.shutdown(stopAbort)
			if byStop {
				err = fmt.Errorf("%w during Start (%v)", ErrStopped, err)
			}
		}
	}()

	// The listener first, so that the advertised address is known before registering.
	apiTLS := ck.env.opts.HTTPTLS
	if s := ck.env.secure; s != nil {
		apiTLS = s.serverTLS()
	}
	if err := ck.api.listen(ck.env.opts.HTTPAddr, ck.Handler(), apiTLS); err != nil {
		return err
	}
	if ck.env.addr == "" {
		ck.env.addr = advertiseFor(ck.api.addr())
	}
	ck.group.Go(ck.api.serve)
	ck.warnIfOpen()
	if err := ck.connect(ctx); err != nil {
		return err
	}
	if err := ck.ensureConfig(ctx); err != nil {
		return err
	}
	if err := ck.members.setUp(ctx, runCtx); err != nil {
		return err
	}
	// Read the map before registering: the map that adds this node is then a change the watch
	// sees, so the hooks registered before Start fire for the partitions the node gains.
	initial, err := ck.maps.read(ctx)
	if err != nil {
		return fmt.Errorf("clusterkit: read partition map: %w", err)
	}
	if err := ck.election.register(ctx, runCtx); err != nil {
		return err
	}
	ck.claimHandoffs() // a hook registered while the node registered
	ck.maps.begin(initial)
	ck.group.Go(func() { ck.clock.Run(runCtx) })
	ck.group.Go(func() { ck.maps.run(runCtx, initial.Revision) })
	ck.group.Go(func() { ck.admin.run(runCtx) })
	ck.group.Go(func() { ck.hooks.run(runCtx) })
	ck.group.Go(func() { ck.election.run(runCtx) })
	ck.group.Go(func() { ck.members.run(runCtx) })
	ck.group.Go(func() { ck.etcdSize.run(runCtx) })

	if err := ck.maps.wait(ctx, ck.listsSelf); err != nil {
		return fmt.Errorf("clusterkit: no partition map lists this node after %v (is a leader elected?): %w",
			ck.env.opts.StartTimeout, err)
	}
	ck.env.log.Info("node started", zap.String("addr", ck.env.addr), zap.Uint64("epoch", ck.Epoch()),
		zap.String("cluster", ck.env.clusterName))
	return nil
}

// record is the node's record for a new registration.
func (ck *ClusterKit) record() (state.Node, error) {
	instance, err := ck.instanceID()
	if err != nil {
		return state.Node{}, err
	}
	self := state.Node{
		ID:        ck.env.opts.NodeID,
		IP:        ck.env.addr,
		Zone:      ck.env.opts.Zone,
		Weight:    ck.env.opts.Weight,
		Metadata:  ck.env.opts.Metadata,
		Instance:  instance,
		StartedAt: time.Now().UTC().Truncate(time.Millisecond),
		NoHandoff: !ck.hooks.copies(),
	}
	if m := ck.members.current(); m != nil {
		self.EtcdEndpoints = m.Endpoints()
	}
	return self, nil
}

// listsSelf reports whether s lists this node.
func (ck *ClusterKit) listsSelf(s *snapshot) bool {
	if s == nil {
		return false
	}
	_, ok := s.nodes[ck.env.opts.NodeID]
	return ok
}

// running reports whether Start was called and Stop was not.
func (ck *ClusterKit) running() bool {
	ck.mu.Lock()
	defer ck.mu.Unlock()
	return ck.started && !ck.stopped
}

// Stop leaves the cluster: if this node leads, it first publishes a map without itself; then it
// revokes its lease, so that the other nodes learn at once (its record and election key go with
// the lease), stops the HTTP API, waits up to ShutdownTimeout for running hooks (pending ones
// are dropped), and closes what it opened (never a caller's EtcdClient). It blocks until all of
// that is done or ShutdownTimeout passes, and is safe to call more than once and concurrently.
func (ck *ClusterKit) Stop() error {
	ck.mu.Lock()
	ck.stopped = true
	cancel, done := ck.startCancel, ck.startDone
	ck.mu.Unlock()
	if cancel != nil {
		// A Start in progress is aborted, and undoes what it started before Stop goes on; a
		// Start that has returned is unaffected.
		cancel()
		<-done
	}
	ck.shutdown(stopLeave)
	return nil
}

// isStopped reports whether Stop was called.
func (ck *ClusterKit) isStopped() bool {
	ck.mu.Lock()
	defer ck.mu.Unlock()
	return ck.stopped
}

// stopMode says how a node goes away.
type stopMode int

const (
	// stopLeave is Stop: hand leadership over, revoke the lease.
	stopLeave stopMode = iota
	// stopAbort undoes a failed Start: revoke the lease, publish nothing.
	stopAbort
	// stopCrash stops every goroutine without telling etcd anything, as a killed process
	// would: the lease expires after its TTL (the test kit, pkg/clustertest, revokes it).
	stopCrash
)

// shutdown closes the parts in order: the election (a leader hands over first), the
// registration (marked leaving, then revoked), every goroutine, the hooks, the HTTP API, and
// last the etcd client and the embedded member.
func (ck *ClusterKit) shutdown(mode stopMode) {
	ck.stopOnce.Do(func() {
		ck.mu.Lock()
		ck.stopped = true
		started := ck.started
		ck.mu.Unlock()
		if !started {
			return
		}
		deadline := time.Now().Add(ck.env.opts.ShutdownTimeout)
		if mode == stopLeave {
			// A leader publishes the map without itself before its lease (and with it the
			// leader key) goes; wait for that. A follower has nothing to hand over: revoking its
			// lease at once is what tells the leader, and it also removes its candidate key.
			ck.election.leave(deadline)
		}
		reg := ck.election.current()
		if reg != nil && mode == stopLeave {
			ck.announceLeaving(reg, deadline)
		}
		if reg != nil && mode != stopCrash {
			reg.revoke(time.Until(deadline))
		}
		close(ck.stopping)
		ck.stop()
		if reg != nil {
			reg.stop()
		}
		if hung := ck.hooks.close(max(0, time.Until(deadline))); len(hung) > 0 {
			ck.env.log.Warn("hooks still running at stop; not waiting for them past ShutdownTimeout",
				zap.Int("running", len(hung)), zap.Strings("hooks", hung), zap.Duration("shutdown_timeout", ck.env.opts.ShutdownTimeout))
		}
		ck.api.close(deadline)
		ck.group.Wait()
		if mode != stopCrash {
			ck.members.release()
		}
		if ck.ownClient && ck.env.client != nil {
			ck.env.client.Close()
		}
		if m := ck.members.current(); m != nil {
			m.Close()
		}
		ck.env.log.Info("node stopped")
	})
}

// announceLeaving says "leaving" before the record goes, so that the leader tells a Stop from a
// crash, and waits until the cluster has moved on: the map without this node is on the critical
// path, the revocation is not, and it only adds etcd work before it.
func (ck *ClusterKit) announceLeaving(reg *registration, deadline time.Time) {
	ctx, cancel := context.WithTimeout(context.Background(), min(time.Second, max(0, time.Until(deadline))))
	defer cancel()
	if err := reg.setState(ctx, state.NodeLeaving); err != nil {
		ck.env.log.Warn("marking the node as leaving failed", zap.Error(err))
		return
	}
	ck.maps.wait(ctx, func(s *snapshot) bool { return !ck.listsSelf(s) })
}

// OnPartitionChange registers a hook called for every (partition, new holder) of every map
// change. Register hooks before Start to see the changes that Start itself brings about. Hooks
// run on background goroutines, at most Options.MaxConcurrentHooks at once; the hooks of one
// partition run one at a time in map order. A panicking hook is recovered and logged. Safe for
// concurrent use. A node without a hook takes partitions without a handoff (its record says
// no_handoff); the first hook registered after Start rewrites the record in etcd, and the call
// waits for that write (at most Options.StartTimeout).
func (ck *ClusterKit) OnPartitionChange(hook func(partitionID string, copyFromNodes []*Node, copyToNode *Node)) {
	ck.hooks.add(hook)
	ck.claimHandoffs()
}

// claimHandoffs makes a registered node whose record says it copies nothing (no_handoff, as
// it registered without an OnPartitionChange hook) say that it copies again, once it has a
// hook: partitions then reach it through handoffs. A partition placed on it before the leader
// read the new record was placed without one; its hooks are still called for it.
func (ck *ClusterKit) claimHandoffs() {
	reg := ck.election.current()
	if reg == nil || !ck.hooks.copies() || !reg.record().NoHandoff {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), ck.env.opts.StartTimeout)
	defer cancel()
	if err := reg.rewrite(ctx, func(n *state.Node) { n.NoHandoff = false }); err != nil {
		ck.env.log.Warn("saying that the node now copies partitions in failed; partitions may reach it without a handoff",
			zap.Error(err))
	}
}

// GetMyNodeID returns this node's ID.
func (ck *ClusterKit) GetMyNodeID() string { return ck.env.opts.NodeID }

// GetPartition returns the partition that holds key, from the current map. It returns
// ErrNoPartitionMap before the node holds a map. The result is shared and must not be modified.
func (ck *ClusterKit) GetPartition(key string) (*Partition, error) {
	s := ck.maps.snapshot()
	if s == nil {
		return nil, ErrNoPartitionMap
	}
	return &s.partitions[s.mod.Of(partition.Hash(key))], nil
}

// find returns the current snapshot and partition's index in it, or nil when there is no map
// or the partition is unknown.
func (ck *ClusterKit) find(partition *Partition) (*snapshot, int) {
	s := ck.maps.snapshot()
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
	return s != nil && s.partitions[i].PrimaryNode == ck.env.opts.NodeID && !ck.clock.Fenced()
}

// IsPrimaryAt reports whether this node is still the primary of partition with the given
// primary epoch: the cheap check before acting on a write stamped with that epoch. It is false
// once another node has become primary (the epoch grew), and while the node is self-fenced.
func (ck *ClusterKit) IsPrimaryAt(partition *Partition, primaryEpoch uint64) bool {
	s, i := ck.find(partition)
	return s != nil && s.partitions[i].PrimaryNode == ck.env.opts.NodeID && s.partitions[i].PrimaryEpoch == primaryEpoch &&
		!ck.clock.Fenced()
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
func (ck *ClusterKit) IsFenced() bool { return ck.clock.Fenced() }

// IsReplica reports whether this node is currently a replica (a holder but not the primary) of
// partition.
func (ck *ClusterKit) IsReplica(partition *Partition) bool {
	s, i := ck.find(partition)
	if s == nil {
		return false
	}
	for _, id := range s.partitions[i].ReplicaNodes {
		if id == ck.env.opts.NodeID {
			return true
		}
	}
	return false
}

// Epoch returns the epoch of the map this node holds, 0 before it holds one.
func (ck *ClusterKit) Epoch() uint64 {
	if s := ck.maps.snapshot(); s != nil {
		return s.epoch
	}
	return 0
}

// Leader returns the ID of the node that published the map this node holds.
func (ck *ClusterKit) Leader() string {
	if s := ck.maps.snapshot(); s != nil {
		return s.leader
	}
	return ""
}

// IsLeader reports whether this node currently leads the cluster.
func (ck *ClusterKit) IsLeader() bool { return ck.election.isLeader.Load() }

// AdvertiseAddr is the address other nodes reach this node's HTTP API at; known after Start.
func (ck *ClusterKit) AdvertiseAddr() string { return ck.env.addr }

// Drain hands every partition of this node over to the others and then leaves: the node is
// marked draining, is given nothing new, and keeps serving until each successor has copied its
// partitions (handoff), so no partition ever has fewer holders than before. Drain blocks until
// the node holds nothing and has stopped (it calls Stop), or ctx ends; on ctx's end the node keeps
// running, still draining, and the error says so. With no other node to take over, Drain waits
// for one.
func (ck *ClusterKit) Drain(ctx context.Context) error {
	reg := ck.election.current()
	if !ck.running() || reg == nil {
		return ErrNotStarted
	}
	if err := reg.setState(ctx, state.NodeDraining); err != nil {
		return fmt.Errorf("clusterkit: mark node draining: %w", err)
	}
	ck.env.log.Info("draining")
	if err := ck.maps.wait(ctx, func(s *snapshot) bool { return s != nil && !s.involves(ck.env.opts.NodeID) }); err != nil {
		return fmt.Errorf("clusterkit: drain not finished: %w", err)
	}
	return ck.Stop()
}

// Nodes returns the nodes of the map this node holds, sorted by ID; nil before it holds a map.
// The values are shared with the snapshot and must not be modified. Safe for concurrent use.
func (ck *ClusterKit) Nodes() []Node {
	s := ck.maps.snapshot()
	if s == nil {
		return nil
	}
	out := make([]Node, len(s.nodeIDs))
	for i, id := range s.nodeIDs {
		out[i] = *s.nodes[id]
	}
	return out
}
