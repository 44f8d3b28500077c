package store

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/clusterkit-go/clusterkit/internal/pki"
	"github.com/clusterkit-go/clusterkit/pkg/clusterkit"
)

// AddrKey is the node metadata key under which every node publishes the address of its data
// API, where the other nodes and the clients find it.
const AddrKey = "kv_addr"

// Mode is how a primary's writes reach the replicas.
type Mode int

const (
	// Sync: Put returns once every replica (and every node copying the partition in) stored
	// the write. A write it acknowledges survives the loss of any one holder.
	Sync Mode = iota
	// Async: Put returns once the primary stored the write; a background queue sends it to the
	// replicas. A primary that dies before its queue is sent loses those writes.
	Async
)

func (m Mode) String() string {
	if m == Async {
		return "async"
	}
	return "sync"
}

// Defaults of the zero Options fields.
const (
	DefaultCopyTimeout = time.Minute
	DefaultHTTPTimeout = 5 * time.Second
	// mapWait bounds how long a request waits for this node's map to reach the epoch its sender
	// acted on.
	mapWait = 3 * time.Second
)

// Options configures a Store.
type Options struct {
	// Replication says how Put reaches the replicas. Default Sync.
	Replication Mode
	// HTTPClient talks to the other nodes' data APIs. Default: a client with a 5s timeout.
	HTTPClient *http.Client
	// CopyTimeout bounds copying one partition in (fetching it from every source). A copy not
	// done by then is not acknowledged, and ClusterKit asks for it again. Default 1 minute.
	CopyTimeout time.Duration
	// Logger receives the store's logs. Default: none.
	Logger *zap.Logger
	// Token is the cluster's join token (a valid ClusterKit join token: see ResolveToken). When
	// set, the data API (Handler) answers a request without "Authorization: Bearer <Token>" with
	// 401 (see RequireToken), and the store sends it on its own calls to the other nodes. Every
	// node of a cluster must have the same. Default: none, and the API is open to anyone who
	// can reach it.
	Token string
	// MaxValueBytes bounds a value, in bytes: a write of a larger one is refused with 413
	// (ErrTooLarge), and request bodies are bounded to match (see limits.go). Every node of a
	// cluster must have the same, or a node may refuse what another one sends it. Default
	// DefaultMaxValueBytes (1 MiB); at most MaxMaxValueBytes (16 MiB).
	MaxValueBytes int
}

// Version orders the writes of a key: the primary epoch of the primary that wrote it, then a
// counter of that node. A newer primary's writes win over an older one's; one primary's writes
// are ordered by its counter.
type Version struct {
	Epoch uint64 `json:"epoch"`
	Seq   uint64 `json:"seq"`
}

// Less reports whether v is older than o.
func (v Version) Less(o Version) bool {
	return v.Epoch < o.Epoch || v.Epoch == o.Epoch && v.Seq < o.Seq
}

// Entry is one stored key.
type Entry struct {
	Key     string  `json:"key"`
	Value   string  `json:"value"`
	Version Version `json:"version"`
}

// partition is this node's copy of one partition.
type partition struct {
	mu      sync.Mutex
	entries map[string]Entry
	// fence is the highest primary epoch this node has accepted a write at: a write stamped
	// with an older one comes from a deposed primary.
	fence uint64
}

// merge stores e unless a newer version of its key is already there. It reports whether it
// changed anything. p.mu must be held.
func (p *partition) merge(e Entry) bool {
	if old, ok := p.entries[e.Key]; ok && !old.Version.Less(e.Version) {
		return false
	}
	p.entries[e.Key] = e
	return true
}

// Store is one node's store. Create it with New before starting the ClusterKit node. Its
// methods are safe for concurrent use.
type Store struct {
	ck    *clusterkit.ClusterKit
	me    string
	opts  Options
	log   *zap.Logger
	httpc *http.Client

	// seq numbers this node's primary writes. It starts from the clock so that a restarted
	// node's counter is past the one of its previous life.
	seq atomic.Uint64

	mu    sync.Mutex
	parts map[string]*partition
	// addrs is the data API address of the nodes this node heard of, by node ID: the holders
	// come with their metadata in the map, but a node copying a partition in is known only by
	// its ID there, so its address is learnt from the hooks and from its export requests.
	addrs map[string]string

	// ctx ends with Close: it stops the replication queue and aborts copies in progress.
	ctx    context.Context
	cancel context.CancelFunc
	async  *asyncReplicator
	stats  counters
}

// New returns the store of the node ck and registers its migration hooks on ck, so it must be
// called before ck.Start. The node must publish the address of this store's Handler in its
// metadata under AddrKey. It fails, wrapping ErrInvalidOptions, when an Options field is out of
// range.
func New(ck *clusterkit.ClusterKit, opts Options) (*Store, error) {
	if opts.MaxValueBytes == 0 {
		opts.MaxValueBytes = DefaultMaxValueBytes
	}
	if opts.MaxValueBytes < 0 || opts.MaxValueBytes > MaxMaxValueBytes {
		return nil, fmt.Errorf("%w: MaxValueBytes %d is not between 1 and %d", ErrInvalidOptions, opts.MaxValueBytes, MaxMaxValueBytes)
	}
	if opts.Token != "" {
		if err := pki.CheckToken(opts.Token); err != nil {
			return nil, fmt.Errorf("%w: Token: %v", ErrInvalidOptions, err)
		}
	}
	if opts.HTTPClient == nil {
		opts.HTTPClient = &http.Client{Timeout: DefaultHTTPTimeout}
	}
	if opts.CopyTimeout == 0 {
		opts.CopyTimeout = DefaultCopyTimeout
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	s := &Store{
		ck:    ck,
		me:    ck.GetMyNodeID(),
		opts:  opts,
		log:   opts.Logger.Named("store"),
		httpc: TokenClient(opts.HTTPClient, opts.Token),
		parts: map[string]*partition{},
		addrs: map[string]string{},
	}
	s.seq.Store(uint64(time.Now().UnixNano()))
	s.ctx, s.cancel = context.WithCancel(context.Background())
	if opts.Replication == Async {
		s.async = newAsyncReplicator(s)
	}
	ck.OnPartitionChange(s.onPartitionChange)
	ck.OnEvent(s.onEvent)
	return s, nil
}

// Close stops the replication queue (what is still queued is not sent) and aborts copies in
// progress, then waits for the queue's goroutines. Call it before stopping the ClusterKit node,
// so that a copy waiting on a dead source does not hold the node's Stop; Flush first to send
// the queue.
func (s *Store) Close() {
	s.cancel()
	if s.async != nil {
		s.async.wait()
	}
}

// Flush blocks until the replication queue is empty (at once in Sync mode) or ctx ends.
func (s *Store) Flush(ctx context.Context) error {
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for s.stats.queued.Load() > 0 {
		select {
		case <-ctx.Done():
			return fmt.Errorf("store: %d writes still queued: %w", s.stats.queued.Load(), ctx.Err())
		case <-t.C:
		}
	}
	return nil
}

func (s *Store) partition(id string) *partition {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.parts[id]
	if p == nil {
		p = &partition{entries: map[string]Entry{}}
		s.parts[id] = p
	}
	return p
}

func (s *Store) learn(n *clusterkit.Node) {
	if n == nil || n.Metadata[AddrKey] == "" {
		return
	}
	s.learnAddr(n.ID, n.Metadata[AddrKey])
}

func (s *Store) learnAddr(id, addr string) {
	s.mu.Lock()
	s.addrs[id] = addr
	s.mu.Unlock()
}

func (s *Store) addrOf(id string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addrs[id]
}

// target is a node a write is replicated to.
type target struct{ id, addr string }

// targets lists where a write to p goes besides this node: its replicas, and the nodes copying
// it in whose address is known. A copying node whose address is not known yet has not asked
// this node for its export, so the export it will get contains the write.
func (s *Store) targets(p *clusterkit.Partition) []target {
	var out []target
	for _, n := range s.ck.GetReplicas(p) {
		if n.ID != s.me {
			out = append(out, target{n.ID, n.Metadata[AddrKey]})
		}
	}
	for _, id := range p.PendingNodes {
		if addr := s.addrOf(id); addr != "" && id != s.me {
			out = append(out, target{id, addr})
		}
	}
	return out
}

// holds reports whether this node holds p or is copying it in, in its map.
func (s *Store) holds(p *clusterkit.Partition) bool {
	return p.PrimaryNode == s.me || slices.Contains(p.ReplicaNodes, s.me) || slices.Contains(p.PendingNodes, s.me)
}

// notPrimary builds the refusal of a write or read that this node may not serve as primary,
// with the primary it knows of as a hint.
func (s *Store) notPrimary(p *clusterkit.Partition) error {
	s.stats.notPrimary.Add(1)
	err := &NotPrimaryError{Partition: p.ID, Fenced: s.ck.IsFenced()}
	if n := s.ck.GetPrimary(p); n != nil && n.ID != s.me {
		err.Primary, err.PrimaryAddr = n.ID, n.Metadata[AddrKey]
	}
	return err
}

// Put stores key = value on this node, which must be the primary of key's partition, and
// replicates it (see Mode). It returns the stored entry with its version. It fails with a
// *NotPrimaryError when this node is not the primary at the current primary epoch or is
// self-fenced (the caller re-routes), with a *ReplicationError when a Sync replica did not
// store the write (the caller retries), with ErrBadRequest for an empty key, and with
// ErrTooLarge for a key or value over its limit. Cancelling ctx abandons a Sync replication (the
// write is then not acknowledged).
func (s *Store) Put(ctx context.Context, key, value string) (Entry, error) {
	if key == "" {
		return Entry{}, fmt.Errorf("%w: empty key", ErrBadRequest)
	}
	if err := checkSize(key, value, s.opts.MaxValueBytes); err != nil {
		return Entry{}, err
	}
	p, err := s.ck.GetPartition(key)
	if err != nil {
		return Entry{}, err
	}
	part := s.partition(p.ID)
	part.mu.Lock()
	// Read the map again under the partition's lock. An export of the partition takes the same
	// lock once the exporting node's map has reached the epoch that asked for the copy, so a
	// write either is in that export or already sees the copying node among its targets.
	p, _ = s.ck.GetPartition(key)
	e := p.PrimaryEpoch
	if !s.ck.IsPrimaryAt(p, e) || e < part.fence {
		part.mu.Unlock()
		return Entry{}, s.notPrimary(p)
	}
	part.fence = e
	ent := Entry{Key: key, Value: value, Version: Version{Epoch: e, Seq: s.seq.Add(1)}}
	part.merge(ent)
	targets := s.targets(p)
	part.mu.Unlock()
	s.stats.primaryWrites.Add(1)

	req := ReplicateRequest{Partition: p.ID, PrimaryEpoch: e, MapEpoch: p.Epoch, From: s.me, Entries: []Entry{ent}}
	if err := s.replicate(ctx, targets, req); err != nil {
		return Entry{}, err
	}
	return ent, nil
}

// replicate sends req to targets: queued (Async) or at once, failing unless every target
// stored it (Sync).
func (s *Store) replicate(ctx context.Context, targets []target, req ReplicateRequest) error {
	if s.async != nil {
		for _, t := range targets {
			s.async.enqueue(t, req)
		}
		return nil
	}
	// A write is one entry; an adoption may carry more than one request can.
	reqs := coalesce([]ReplicateRequest{req}, batchBudget(s.opts.MaxValueBytes))
	errs := make([]error, len(targets))
	var wg sync.WaitGroup
	for i, t := range targets {
		wg.Go(func() {
			for _, r := range reqs {
				if errs[i] = s.send(ctx, t, r); errs[i] != nil {
					return
				}
			}
		})
	}
	wg.Wait()
	rerr := &ReplicationError{Partition: req.Partition}
	for i, err := range errs {
		if err != nil {
			rerr.Failed = append(rerr.Failed, fmt.Errorf("%s: %w", targets[i].id, err))
		} else {
			s.stats.replicaSends.Add(int64(len(req.Entries)))
		}
	}
	if len(rerr.Failed) > 0 {
		s.stats.replicationFailures.Add(int64(len(rerr.Failed)))
		return rerr
	}
	return nil
}

// Get returns key's entry from this node, which must be the primary of its partition
// (*NotPrimaryError otherwise). It returns ErrNotFound for a key never stored.
func (s *Store) Get(key string) (Entry, error) {
	if key == "" {
		return Entry{}, fmt.Errorf("%w: empty key", ErrBadRequest)
	}
	p, err := s.ck.GetPartition(key)
	if err != nil {
		return Entry{}, err
	}
	if !s.ck.IsPrimary(p) {
		return Entry{}, s.notPrimary(p)
	}
	if e, ok := s.Local(key); ok {
		return e, nil
	}
	return Entry{}, ErrNotFound
}

// Local returns this node's copy of key, whatever its role.
func (s *Store) Local(key string) (Entry, bool) {
	p, err := s.ck.GetPartition(key)
	if err != nil {
		return Entry{}, false
	}
	part := s.partition(p.ID)
	part.mu.Lock()
	defer part.mu.Unlock()
	e, ok := part.entries[key]
	return e, ok
}

// ReplicateRequest carries a primary's writes of one partition to a replica.
type ReplicateRequest struct {
	Partition string `json:"partition"`
	// PrimaryEpoch is the primary epoch the writes were made at: the fencing token.
	PrimaryEpoch uint64 `json:"primary_epoch"`
	// MapEpoch is the epoch of the sender's map: the receiver first waits until its own map is
	// at least as new, so that both judge roles from the same map or the receiver from a newer one.
	MapEpoch uint64  `json:"map_epoch"`
	From     string  `json:"from"`
	Entries  []Entry `json:"entries"`
}

// Apply stores a primary's replicated writes on this node. It refuses with ErrTooLarge an entry
// over the size limits; it waits (up to a few seconds, or until ctx ends) for this node's map
// to reach req.MapEpoch, then refuses with ErrNotHolder when this node neither holds the
// partition nor copies it in, and with ErrStaleEpoch when the writes are stamped with an older
// primary epoch than this node knows for the partition.
func (s *Store) Apply(ctx context.Context, req ReplicateRequest) error {
	p, err := s.check(ctx, req)
	if err != nil {
		return err
	}
	if !s.holds(p) {
		return fmt.Errorf("%w: %s at map epoch %d", ErrNotHolder, p.ID, p.Epoch)
	}
	part := s.partition(p.ID)
	part.mu.Lock()
	defer part.mu.Unlock()
	if known := max(part.fence, p.PrimaryEpoch); req.PrimaryEpoch < known {
		s.stats.staleRefused.Add(1)
		return fmt.Errorf("%w: %s written at primary epoch %d by %s, this node knows primary epoch %d",
			ErrStaleEpoch, p.ID, req.PrimaryEpoch, req.From, known)
	}
	part.fence = req.PrimaryEpoch
	for _, e := range req.Entries {
		if part.merge(e) {
			s.stats.replicaApplied.Add(1)
		}
	}
	return nil
}

// check validates req, waits for this node's map to reach req.MapEpoch and returns the
// partition of req's entries.
func (s *Store) check(ctx context.Context, req ReplicateRequest) (*clusterkit.Partition, error) {
	if req.Partition == "" || req.PrimaryEpoch == 0 || len(req.Entries) == 0 {
		return nil, fmt.Errorf("%w: a replicate request needs partition, primary_epoch and entries", ErrBadRequest)
	}
	// Checked here too, not only by Put: the sync example's clients write through Apply.
	for _, e := range req.Entries {
		if err := checkSize(e.Key, e.Value, s.opts.MaxValueBytes); err != nil {
			return nil, err
		}
	}
	if err := s.waitEpoch(ctx, req.MapEpoch); err != nil {
		return nil, err
	}
	var p *clusterkit.Partition
	for _, e := range req.Entries {
		q, err := s.ck.GetPartition(e.Key)
		if err != nil {
			return nil, err
		}
		if e.Key == "" || q.ID != req.Partition {
			return nil, fmt.Errorf("%w: key %q is not in %s", ErrBadRequest, e.Key, req.Partition)
		}
		p = q
	}
	return p, nil
}

// Adopt takes over writes that a former primary of the partition acknowledged but could not
// deliver to the replicas before the primary changed (Async): their replicas now refuse the
// old epoch. This node, which must be the current primary, merges them by version (an older
// write never replaces a newer one) and replicates what it then holds of them under its own
// primary epoch. It fails with a *NotPrimaryError when this node is not the primary.
func (s *Store) Adopt(ctx context.Context, req ReplicateRequest) error {
	p, err := s.check(ctx, req)
	if err != nil {
		return err
	}
	part := s.partition(p.ID)
	part.mu.Lock()
	p, _ = s.ck.GetPartition(req.Entries[0].Key)
	e := p.PrimaryEpoch
	if !s.ck.IsPrimaryAt(p, e) || e < part.fence {
		part.mu.Unlock()
		return s.notPrimary(p)
	}
	part.fence = e
	out := ReplicateRequest{Partition: p.ID, PrimaryEpoch: e, MapEpoch: p.Epoch, From: s.me}
	for _, ent := range req.Entries {
		part.merge(ent)
		// Send what this node now holds for the key: the adopted write, or a newer one.
		out.Entries = append(out.Entries, part.entries[ent.Key])
	}
	targets := s.targets(p)
	part.mu.Unlock()
	s.stats.adopted.Add(int64(len(req.Entries)))
	return s.replicate(ctx, targets, out)
}

// Export returns this node's entries of partition id, once its map has reached minEpoch (it
// waits up to a few seconds, or until ctx ends).
func (s *Store) Export(ctx context.Context, id string, minEpoch uint64) ([]Entry, error) {
	if s.ck.GetNodes(&clusterkit.Partition{ID: id}) == nil {
		return nil, fmt.Errorf("%w: unknown partition %q", ErrBadRequest, id)
	}
	if err := s.waitEpoch(ctx, minEpoch); err != nil {
		return nil, err
	}
	part := s.partition(id)
	part.mu.Lock()
	defer part.mu.Unlock()
	out := make([]Entry, 0, len(part.entries))
	for _, e := range part.entries {
		out = append(out, e)
	}
	return out, nil
}

// waitEpoch waits until this node's map epoch is at least e.
func (s *Store) waitEpoch(ctx context.Context, e uint64) error {
	if s.ck.Epoch() >= e {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, mapWait)
	defer cancel()
	t := time.NewTicker(2 * time.Millisecond)
	defer t.Stop()
	for s.ck.Epoch() < e {
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: at map epoch %d, waiting for %d", ErrMapBehind, s.ck.Epoch(), e)
		case <-t.C:
		}
	}
	return nil
}

// send posts req to t's replicate endpoint.
func (s *Store) send(ctx context.Context, t target, req ReplicateRequest) error {
	if t.addr == "" {
		return fmt.Errorf("node %s publishes no %q in its metadata", t.id, AddrKey)
	}
	return call(ctx, s.httpc, http.MethodPost, t.addr, "/store/replicate", req, nil)
}

// errors.Is targets for the codes of the HTTP API.
var (
	// ErrNotPrimary: this node is not the partition's primary (or is fenced); re-route.
	ErrNotPrimary = errors.New("store: not the partition's primary")
	// ErrStaleEpoch: a replicated write comes from a deposed primary.
	ErrStaleEpoch = errors.New("store: write stamped with a stale primary epoch")
	// ErrNotHolder: a replicated write reached a node that holds no copy of the partition.
	ErrNotHolder = errors.New("store: this node holds no copy of the partition")
	// ErrNotFound: the key was never stored.
	ErrNotFound = errors.New("store: key not found")
	// ErrBadRequest: the request is malformed; the message says what is wrong.
	ErrBadRequest = errors.New("store: bad request")
	// ErrMapBehind: this node's map did not reach the epoch the request needs in time.
	ErrMapBehind = errors.New("store: partition map behind the sender's")
	// ErrReplication: a Sync write did not reach every replica.
	ErrReplication = errors.New("store: replication failed")
	// ErrUnauthorized: the request lacks the cluster's token, or has another one.
	ErrUnauthorized = errors.New("store: unauthorized")
	// ErrTooLarge: a key, a value or a request body is over its limit; the message names it.
	ErrTooLarge = errors.New("store: too large")
	// ErrInvalidOptions is wrapped by the error New returns for an Options field out of range.
	ErrInvalidOptions = errors.New("store: invalid options")
)

// NotPrimaryError is a write or read refused because this node is not the partition's primary
// at the current primary epoch, or is self-fenced. Primary and PrimaryAddr name the primary in
// this node's map when it is another node.
type NotPrimaryError struct {
	Partition   string `json:"partition"`
	Primary     string `json:"primary,omitempty"`
	PrimaryAddr string `json:"primary_addr,omitempty"`
	Fenced      bool   `json:"fenced,omitempty"`
}

func (e *NotPrimaryError) Error() string {
	switch {
	case e.Fenced:
		return fmt.Sprintf("store: not serving %s: this node is fenced (its lease could not be renewed)", e.Partition)
	case e.Primary != "":
		return fmt.Sprintf("store: not the primary of %s; %s is", e.Partition, e.Primary)
	}
	return fmt.Sprintf("store: not the primary of %s", e.Partition)
}

// Is makes errors.Is(err, ErrNotPrimary) hold.
func (e *NotPrimaryError) Is(target error) bool { return target == ErrNotPrimary }

// ReplicationError is a Sync write that some replicas did not store. The primary has it; it is
// not acknowledged, and a retry writes it again.
type ReplicationError struct {
	Partition string
	Failed    []error
}

func (e *ReplicationError) Error() string {
	return fmt.Sprintf("store: replication of a %s write failed: %v", e.Partition, errors.Join(e.Failed...))
}

// Is makes errors.Is(err, ErrReplication) hold.
func (e *ReplicationError) Is(target error) bool { return target == ErrReplication }
