package clusterkit

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"go.uber.org/zap"

	"github.com/clusterkit-go/clusterkit/internal/atomicfile"
	"github.com/clusterkit-go/clusterkit/internal/backoff"
	"github.com/clusterkit-go/clusterkit/internal/follow"
	"github.com/clusterkit-go/clusterkit/internal/state"
	"github.com/clusterkit-go/clusterkit/pkg/embed"
)

// localStateFile, in DataDir, is what a node remembers of its cluster between lives: the etcd
// endpoints (so that it can start when the node at JoinAddr is gone) and the ports of its
// embedded member (its peer address is part of the member's identity).
const localStateFile = "cluster.json"

type localState struct {
	ClusterName   string   `json:"cluster_name"`
	EtcdEndpoints []string `json:"etcd_endpoints"`
	// MemberID, ClientPort and PeerPort describe the embedded etcd member this node runs, if any.
	MemberID   string `json:"member_id,omitempty"`
	ClientPort int    `json:"client_port,omitempty"`
	PeerPort   int    `json:"peer_port,omitempty"`
}

// members owns this node's embedded etcd member, if it runs one, and what the node remembers of
// its cluster in DataDir. In a cluster on embedded etcd, run keeps the etcd client pointed at
// every member and lets this node take a free member place; its two goroutines end with ctx.
type members struct {
	env *env
	log *zap.Logger
	// leaving is closed when the node stops: it takes no member place any more.
	leaving <-chan struct{}

	mu     sync.Mutex
	member *embed.Member // nil for a client node
	// decommissioned is set by decommission: the node takes no etcd member place any more.
	decommissioned atomic.Bool
	// joining is set while the node holds a reserved member place and becomes a member
	// (learner, catch-up, promotion); GET /health shows it.
	joining atomic.Bool
	// reserved is the session whose lease keeps this node's reserved member place, while it
	// joins; joinCancel and joinDone end and follow that join (finishJoin). Guarded by mu.
	reserved   *concurrency.Session
	joinCancel context.CancelFunc
	joinDone   chan struct{}
	// onMember is called once the node has taken a free member place after its start (one a
	// decommissioned node left): the node's record then names the member's endpoints.
	onMember func(ctx context.Context, endpoints []string)
}

// memberState is what GET /health says of the node's embedded etcd member: "" in a cluster on
// an external etcd, else "member", "joining" (taking a free place) or "client".
func (ms *members) memberState() string {
	switch {
	case ms.env.config.EmbeddedMembers == 0:
		return ""
	case ms.current() != nil:
		return "member"
	case ms.joining.Load():
		return "joining"
	}
	return "client"
}

// readLocalState returns what the DataDir remembers; the zero value when nothing.
func (ms *members) readLocalState() (localState, error) {
	var ls localState
	b, err := os.ReadFile(filepath.Join(ms.env.opts.DataDir, localStateFile))
	if errors.Is(err, os.ErrNotExist) {
		return ls, nil
	}
	if err != nil {
		return ls, fmt.Errorf("clusterkit: DataDir: %w", err)
	}
	if err := json.Unmarshal(b, &ls); err != nil {
		return ls, fmt.Errorf("clusterkit: DataDir file %s is damaged (delete it to start afresh): %w",
			filepath.Join(ms.env.opts.DataDir, localStateFile), err)
	}
	return ls, nil
}

// saveLocalState writes what the node must remember, atomically and durably (a crash leaves the
// old file or the new one, never a torn or empty one).
func (ms *members) saveLocalState() error {
	ms.mu.Lock()
	ls := localState{ClusterName: ms.env.clusterName, EtcdEndpoints: ms.env.client.Endpoints()}
	if m := ms.member; m != nil {
		ls.MemberID = strconv.FormatUint(m.ID(), 16)
		ls.ClientPort = urlPort(m.Endpoints()[0])
		ls.PeerPort = urlPort(m.PeerURL())
	}
	ms.mu.Unlock()
	b, err := json.Marshal(ls)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(ms.env.opts.DataDir, 0o700); err != nil {
		return fmt.Errorf("clusterkit: DataDir: %w", err)
	}
	if err := atomicfile.Write(filepath.Join(ms.env.opts.DataDir, localStateFile), b, 0o600); err != nil {
		return fmt.Errorf("clusterkit: DataDir: %w", err)
	}
	return nil
}

// urlPort returns the port of a URL, 0 if it has none.
func urlPort(u string) int {
	parsed, err := url.Parse(u)
	if err != nil {
		return 0
	}
	p, _ := strconv.Atoi(parsed.Port())
	return p
}

// current returns the node's etcd member, nil for a client node.
func (ms *members) current() *embed.Member {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	return ms.member
}

// etcdDir is where the embedded etcd member keeps its data.
func (ms *members) etcdDir() string { return filepath.Join(ms.env.opts.DataDir, "etcd") }

// memberConfig is the configuration of this node's embedded etcd member. Ports the member had in
// an earlier life win over derived ones: a member must come back on its peer address.
func (ms *members) memberConfig(ls localState) embed.Config {
	_, port, _ := net.SplitHostPort(ms.env.opts.HTTPAddr)
	httpPort, _ := strconv.Atoi(port)
	advHost, _, _ := net.SplitHostPort(ms.env.addr)
	addr := func(explicit string, offset, remembered int) string {
		if explicit != "" {
			return explicit
		}
		a := embeddedAddr(ms.env.opts.HTTPAddr, advHost, httpPort, offset)
		if remembered != 0 {
			host, _, _ := net.SplitHostPort(a)
			a = net.JoinHostPort(host, strconv.Itoa(remembered))
		}
		return a
	}
	return embed.Config{
		Name:              ms.env.opts.NodeID,
		Dir:               ms.etcdDir(),
		ClientAddr:        addr(ms.env.opts.EmbeddedEtcdClientAddr, embeddedPortOffset, ls.ClientPort),
		PeerAddr:          addr(ms.env.opts.EmbeddedEtcdPeerAddr, 2*embeddedPortOffset, ls.PeerPort),
		AdvertiseHost:     advHost,
		HeartbeatInterval: ms.env.opts.embeddedHeartbeat,
		ElectionTimeout:   10 * ms.env.opts.embeddedHeartbeat,
		UnsafeNoFsync:     ms.env.opts.unsafeNoFsync,
		Logger:            ms.log.Named("etcd").WithOptions(zap.IncreaseLevel(zap.WarnLevel)),
		StartTimeout:      ms.env.opts.StartTimeout,
		TLS:               ms.env.secure.memberTLSOrNil(),
	}
}

// startMember starts this node's embedded member: a new single-member cluster for a bootstrap
// node without data, else the member whose data is in DataDir, which rejoins its cluster.
func (ms *members) startMember(ctx context.Context, ls localState) error {
	restart := embed.HasData(ms.etcdDir())
	cfg := ms.memberConfig(ls)
	if !restart {
		// A new cluster's only member elects itself once its election timeout passes: etcd
		// fast-forwards all but one tick of it, but the timeout is drawn at random between one
		// and two election timeouts, so the wait is up to one election timeout. The
		// bootstrap member runs with the shortest etcd accepts, five heartbeats (up to 500 ms
		// instead of 1 s), until it restarts.
		cfg.HeartbeatInterval = cmp.Or(cfg.HeartbeatInterval, embed.DefaultHeartbeat)
		cfg.ElectionTimeout = 5 * cfg.HeartbeatInterval
	}
	m, err := embed.Start(ctx, cfg)
	if err != nil {
		return fmt.Errorf("clusterkit: embedded etcd: %w", err)
	}
	ms.mu.Lock()
	ms.member = m
	ms.mu.Unlock()
	ms.log.Info("embedded etcd member started", zap.String("member_id", strconv.FormatUint(m.ID(), 16)),
		zap.Strings("client_urls", m.Endpoints()), zap.String("peer_url", m.PeerURL()), zap.Bool("restarted", restart))
	return nil
}

// withLock runs fn while this node holds the etcd mutex named key. The lock runs on a client of
// its own, closed when ctx ends: etcd's Mutex releases its key with the client's own context
// when a wait is cancelled, which, with etcd out of reach (every member stopping at once), would
// block until that client is closed, and the node's own client is closed only after this
// returns. The lock's session outlives ctx only to release the lock; a node that dies holding
// the lock releases it when the session's lease expires, one LeaseTTL later. fn gets the
// comparison that holds while the lock is this node's.
func (ms *members) withLock(ctx, parent context.Context, key string, fn func(owner clientv3.Cmp) error) error {
	lockClient, err := clientv3.New(clientv3.Config{Endpoints: ms.env.client.Endpoints(), DialTimeout: ms.env.opts.EtcdDialTimeout,
		Username: ms.env.opts.EtcdUsername, Password: ms.env.opts.EtcdPassword, TLS: ms.env.opts.EtcdTLS,
		Logger: ms.log.Named("etcd-client").WithOptions(zap.IncreaseLevel(zap.ErrorLevel))})
	if err != nil {
		return fmt.Errorf("clusterkit: %s client: %w", ms.lockName(key), err)
	}
	defer lockClient.Close()
	stopClosing := context.AfterFunc(ctx, func() { lockClient.Close() })
	defer stopClosing()
	session, err := concurrency.NewSession(lockClient, concurrency.WithTTL(int(ms.env.opts.LeaseTTL/time.Second)),
		concurrency.WithContext(parent))
	if err != nil {
		return fmt.Errorf("clusterkit: %s session: %w", ms.lockName(key), err)
	}
	defer session.Close()
	mu := concurrency.NewMutex(session, key)
	if err := mu.Lock(ctx); err != nil {
		return fmt.Errorf("clusterkit: %s: %w", ms.lockName(key), err)
	}
	defer func() {
		uctx, cancel := context.WithTimeout(context.Background(), time.Second)
		mu.Unlock(uctx)
		cancel()
	}()
	return fn(mu.IsOwner())
}

// lockName names a lock key in errors: its last element.
func (ms *members) lockName(key string) string { return key[strings.LastIndexByte(key, '/')+1:] }

// reserve takes a member place for this node when its cluster has fewer voting members than its
// config asks for (counting the places other nodes reserved and are joining into), and every
// voting member is one that a node of the cluster added (its record under etcd-members/ names
// it); otherwise the node stays a client. The decision and the reservation, a record under
// etcd-members/<node-id> on a lease this node keeps alive under parent, happen under the
// etcd-members lock, so that two nodes joining at once never both take the last place; the join
// itself (finishJoin) happens after, without that lock, so that no Start waits for another
// node's join. A learner seen under the lock without a reservation is the leftover of a join
// that died half-way and is removed, as is a member under this node's name that does not
// answer, since this node has no member data: that member's data is lost. It reports whether
// the node reserved a place.
func (ms *members) reserve(ctx, parent context.Context) (bool, error) {
	want := ms.env.config.EmbeddedMembers
	if want == 0 || ms.current() != nil {
		return false, nil
	}
	reserved := false
	err := ms.withLock(ctx, parent, ms.env.schema.EtcdMembersLock(), func(owner clientv3.Cmp) error {
		list, err := ms.env.client.MemberList(ctx)
		if err != nil {
			return fmt.Errorf("clusterkit: list etcd members: %w", err)
		}
		recorded, err := ms.memberRecords(ctx)
		if err != nil {
			return err
		}
		self := ms.env.opts.NodeID
		voting := map[string]bool{}
		for _, m := range list.Members {
			if m.IsLearner || m.Name == self {
				continue
			}
			voting[m.Name] = true
			if rec, ok := recorded[m.Name]; !ok || (rec != "" && rec != strconv.FormatUint(m.ID, 16)) {
				// An etcd that ClusterKit did not build, such as an external cluster restored
				// from a snapshot of the embedded one: it is not ours to change. (A member whose
				// record is still a reservation is a node that has just been promoted.)
				ms.log.Info("etcd has members that no node of this cluster added: staying an etcd client",
					zap.String("member", m.Name), zap.String("member_id", strconv.FormatUint(m.ID, 16)))
				return nil
			}
		}
		// A learner is the leftover of a join that died half-way only while no other node holds
		// a reserved place: otherwise it may be that node's join in progress (a learner added but
		// not yet started has no name to tell whose it is). A reservation whose node died
		// expires with its lease, and the learner is removed then.
		othersJoining := false
		for id, member := range recorded {
			othersJoining = othersJoining || member == "" && id != self
		}
		for _, m := range list.Members {
			stale := m.IsLearner || m.Name == self
			if !stale || m.IsLearner && m.Name != self && othersJoining {
				continue // a voting member, or possibly the learner of a node joining now
			}
			if !m.IsLearner && embed.Serves(ctx, ms.env.client, m.ClientURLs) {
				// Another process runs under this node ID: registration would refuse it too, but
				// removing its member first would do harm.
				return fmt.Errorf("clusterkit: node ID %q already runs etcd member %x at %v: another node runs with this ID, or this node's DataDir is not the one it ran with",
					self, m.ID, m.ClientURLs)
			}
			ms.log.Warn("removing a stale etcd member", zap.String("member_id", strconv.FormatUint(m.ID, 16)),
				zap.String("name", m.Name), zap.Bool("learner", m.IsLearner), zap.Strings("peer_urls", m.PeerURLs))
			if _, err := ms.env.client.MemberRemove(ctx, m.ID); err != nil {
				return fmt.Errorf("clusterkit: remove stale etcd member %x (%s): %w", m.ID, m.Name, err)
			}
		}
		taken := len(voting)
		for id, member := range recorded {
			if member == "" && id != self && !voting[id] {
				taken++ // reserved by a node joining now
			}
		}
		if taken >= want {
			return nil
		}
		// The reservation's lease lives with the node: a node that dies while joining frees
		// its place one LeaseTTL later, and a node whose join ends without a member revokes it.
		session, err := concurrency.NewSession(ms.env.client, concurrency.WithTTL(int(ms.env.opts.LeaseTTL/time.Second)),
			concurrency.WithContext(parent))
		if err != nil {
			return fmt.Errorf("clusterkit: etcd member place lease: %w", err)
		}
		b, err := json.Marshal(state.EtcdMember{NodeID: self, Joining: true, JoinedAt: time.Now().UTC().Truncate(time.Millisecond)})
		if err != nil {
			session.Orphan()
			return err
		}
		resp, err := ms.env.client.Txn(ctx).If(owner).
			Then(clientv3.OpPut(ms.env.schema.EtcdMember(self), string(b), clientv3.WithLease(session.Lease()))).Commit()
		if err == nil && !resp.Succeeded {
			err = errors.New("the etcd-members lock was lost")
		}
		if err != nil {
			ms.dropReservation(session)
			return fmt.Errorf("clusterkit: reserve an etcd member place: %w", err)
		}
		ms.mu.Lock()
		ms.reserved = session
		ms.mu.Unlock()
		ms.joining.Store(true)
		reserved = true
		ms.log.Info("etcd member place reserved: joining etcd in the background", zap.Int("members", len(voting)),
			zap.Int("embedded_members", want))
		return nil
	})
	return reserved, err
}

// dropReservation ends a reservation: it stops keeping its lease alive and revokes it, which
// deletes the record unless a member record replaced it.
func (ms *members) dropReservation(session *concurrency.Session) {
	session.Orphan()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if _, err := ms.env.client.Revoke(ctx, session.Lease()); err != nil {
		ms.log.Debug("revoking the etcd member place's lease failed; it expires by itself", zap.Error(err))
	}
}

// finishJoin makes this node the member whose place it reserved: it adds its learner, lets it
// catch up and promotes it (embed.Join), one node at a time under the etcd-members-join lock,
// retrying with backoff until it is a member, its reservation is lost (its lease expired: then
// the node takes a free place again through fillLoop, like any client node), ctx ends, the node
// stops or it is decommissioned. Decommission cancels it and waits for it.
func (ms *members) finishJoin(parent context.Context) {
	ms.mu.Lock()
	session := ms.reserved
	if session == nil {
		ms.mu.Unlock()
		return
	}
	ctx, cancel := context.WithCancel(parent)
	done := make(chan struct{})
	ms.joinCancel, ms.joinDone = cancel, done
	ms.mu.Unlock()
	defer func() {
		cancel()
		ms.mu.Lock()
		ms.reserved, ms.joinCancel, ms.joinDone = nil, nil, nil
		ms.mu.Unlock()
		ms.joining.Store(false)
		close(done)
	}()
	// Whatever the outcome, the reservation ends with the join: a member's record replaced it,
	// and without a member the place is free again.
	defer ms.dropReservation(session)
	began := time.Now()
	retry := backoff.Backoff{Min: 500 * time.Millisecond, Max: 10 * time.Second}
	for {
		select {
		case <-ms.leaving:
			return
		case <-session.Done():
			ms.log.Warn("the etcd member place's reservation expired before the join ended; the node stays a client and takes a free place again")
			return
		default:
		}
		if ctx.Err() != nil || ms.decommissioned.Load() {
			return
		}
		err := ms.join(ctx, parent)
		if err == nil {
			ms.log.Info("etcd member joined and promoted", zap.String("member_id", strconv.FormatUint(ms.current().ID(), 16)),
				zap.Duration("took", time.Since(began).Round(time.Millisecond)))
			return
		}
		if ctx.Err() != nil {
			return
		}
		ms.log.Warn("joining etcd as a member failed; trying again", zap.Error(err))
		select {
		case <-ctx.Done():
			return
		case <-ms.leaving:
			return
		case <-time.After(retry.Next()):
		}
	}
}

// join is one attempt of finishJoin.
func (ms *members) join(ctx, parent context.Context) error {
	return ms.withLock(ctx, parent, ms.env.schema.EtcdMembersJoinLock(), func(clientv3.Cmp) error {
		m, err := embed.Join(ctx, ms.env.client, ms.memberConfig(localState{}))
		if err != nil {
			return fmt.Errorf("clusterkit: become an etcd member: %w", err)
		}
		ms.mu.Lock()
		ms.member = m
		ms.mu.Unlock()
		// Remember at once: from here on a restart must start from the member's data.
		if err := ms.saveLocalState(); err != nil {
			ms.log.Error("remembering the etcd member failed", zap.Error(err))
		}
		// The member record replaces the reservation (and leaves its lease): it is kept until
		// the node is decommissioned. Without it, later nodes would take the member for one no
		// node added; a restart records it too.
		retry := backoff.Backoff{Min: 100 * time.Millisecond, Max: time.Second}
		for attempt := 1; ; attempt++ {
			err := ms.recordMember(ctx)
			if err == nil {
				break
			}
			if attempt == 5 || ctx.Err() != nil {
				ms.log.Error("recording the etcd member failed; the node records it when it restarts", zap.Error(err))
				break
			}
			select {
			case <-ctx.Done():
			case <-time.After(retry.Next()):
			}
		}
		if _, err := ms.syncEndpoints(ctx); err != nil {
			ms.log.Warn("reading the etcd member list failed", zap.Error(err))
		}
		if ms.onMember != nil {
			ms.onMember(ctx, m.Endpoints())
		}
		return nil
	})
}

// release frees a member place reserved at a Start that ended before its join began.
func (ms *members) release() {
	ms.mu.Lock()
	session := ms.reserved
	ms.reserved = nil
	ms.mu.Unlock()
	if session != nil && ms.current() == nil {
		ms.dropReservation(session)
	}
}

// stopJoin cancels a join in progress and waits for it to end.
func (ms *members) stopJoin() {
	ms.mu.Lock()
	cancel, done := ms.joinCancel, ms.joinDone
	ms.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
}

// memberRecords returns the records under etcd-members/ as node ID -> member ID; the member ID
// is empty for a place reserved by a node joining now.
func (ms *members) memberRecords(ctx context.Context) (map[string]string, error) {
	resp, err := ms.env.client.Get(ctx, ms.env.schema.EtcdMembersPrefix(), clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("clusterkit: read etcd member records: %w", err)
	}
	out := make(map[string]string, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		var rec state.EtcdMember
		if err := json.Unmarshal(kv.Value, &rec); err != nil {
			return nil, fmt.Errorf("clusterkit: etcd member record %s: %w", kv.Key, err)
		}
		out[rec.NodeID] = rec.MemberID
	}
	return out, nil
}

// recordMember writes the record of this node's member under etcd-members/<node-id>, unless
// the record changed since it was read. The record of an earlier life of the same member is
// kept as it is; a reservation is replaced.
func (ms *members) recordMember(ctx context.Context) error {
	m := ms.current()
	rec := state.EtcdMember{NodeID: ms.env.opts.NodeID, MemberID: strconv.FormatUint(m.ID(), 16),
		PeerURLs: []string{m.PeerURL()}, ClientURLs: m.Endpoints(), JoinedAt: time.Now().UTC().Truncate(time.Millisecond)}
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	key := ms.env.schema.EtcdMember(ms.env.opts.NodeID)
	resp, err := ms.env.client.Get(ctx, key)
	if err != nil {
		return fmt.Errorf("clusterkit: read etcd member record: %w", err)
	}
	unchanged := clientv3.Compare(clientv3.CreateRevision(key), "=", 0)
	if len(resp.Kvs) == 1 {
		var old state.EtcdMember
		if json.Unmarshal(resp.Kvs[0].Value, &old) == nil && old.MemberID == rec.MemberID {
			return nil
		}
		unchanged = clientv3.Compare(clientv3.ModRevision(key), "=", resp.Kvs[0].ModRevision)
	}
	tresp, err := ms.env.client.Txn(ctx).If(unchanged).Then(clientv3.OpPut(key, string(b))).Commit()
	if err != nil {
		return fmt.Errorf("clusterkit: record etcd member: %w", err)
	}
	if !tresp.Succeeded {
		return errors.New("clusterkit: record etcd member: changed concurrently")
	}
	return nil
}

// setUp runs once the cluster's config is known: a joining node of a cluster on embedded etcd
// reserves a member place if one is free (run then joins in the background), a member makes
// sure its record is there, and every node of such a cluster learns all members' endpoints
// (run keeps them current). The reservation's lease lives under parent.
func (ms *members) setUp(ctx, parent context.Context) error {
	mode := ms.env.opts.mode()
	if mode != etcdJoin && mode != etcdEmbedded {
		return nil
	}
	if mode == etcdJoin && ms.current() == nil {
		if _, err := ms.reserve(ctx, parent); err != nil {
			return err
		}
	}
	if ms.current() != nil {
		if err := ms.recordMember(ctx); err != nil {
			return err
		}
	}
	if ms.env.config.EmbeddedMembers > 0 {
		if _, err := ms.syncEndpoints(ctx); err != nil {
			return fmt.Errorf("clusterkit: list etcd members: %w", err)
		}
	}
	return ms.saveLocalState()
}

// run keeps the client's endpoints current, finishes the join of a place reserved at Start and
// takes a free member place, until ctx ends; it does nothing for a cluster on an external etcd.
func (ms *members) run(ctx context.Context) {
	if ms.env.config.EmbeddedMembers == 0 {
		return
	}
	var g sync.WaitGroup
	g.Go(func() { ms.syncLoop(ctx) })
	g.Go(func() { ms.finishJoin(ctx) })
	g.Go(func() { ms.fillLoop(ctx) })
	g.Wait()
}

// syncEvery is how often a node reads the etcd member list to keep its client's endpoints
// current.
func (ms *members) syncEvery() time.Duration {
	return min(max(ms.env.opts.LeaseTTL/2, time.Second), 5*time.Second)
}

// syncEndpoints points the etcd client at the client URLs of every voting member, and remembers
// them in DataDir, so that the node does not depend on any single member. It returns whether the
// endpoints changed.
func (ms *members) syncEndpoints(ctx context.Context) (bool, error) {
	list, err := ms.env.client.MemberList(ctx)
	if err != nil {
		return false, err
	}
	var eps []string
	for _, m := range list.Members {
		if m.Name != "" && !m.IsLearner {
			eps = append(eps, m.ClientURLs...)
		}
	}
	slices.Sort(eps)
	old := slices.Sorted(slices.Values(ms.env.client.Endpoints()))
	if len(eps) == 0 || slices.Equal(eps, old) {
		return false, nil
	}
	ms.env.client.SetEndpoints(eps...)
	ms.log.Info("etcd endpoints changed", zap.Strings("endpoints", eps), zap.Strings("before", old))
	return true, ms.saveLocalState()
}

// syncLoop keeps the client's endpoints current until ctx ends. Reading the member list needs
// a quorum; without one the endpoints stay as they are.
func (ms *members) syncLoop(parent context.Context) {
	every := ms.syncEvery()
	ticker := time.NewTicker(every)
	defer ticker.Stop()
	for {
		select {
		case <-parent.Done():
			return
		case <-ticker.C:
		}
		ctx, cancel := context.WithTimeout(parent, every)
		if _, err := ms.syncEndpoints(ctx); err != nil && parent.Err() == nil {
			ms.log.Debug("reading the etcd member list failed", zap.Error(err))
		}
		cancel()
	}
}

// Decommission removes this node from its cluster for good. A node that runs an embedded etcd
// member first removes that member from etcd, deletes its record under etcd-members/ and its etcd
// data, and from then on is an etcd client; a client node of the cluster then takes the free
// member place (learner, then promoted), so that the member count stays as configured while
// enough nodes remain. Then the node drains (see Drain) and stops.
//
// etcd refuses the removal when the remaining members would not make a running quorum, and the
// last member cannot be removed: Decommission then returns the error with nothing changed, and
// the node keeps running as before. If ctx ends during the drain, the member is already removed
// and the node keeps running, still draining, as an etcd client.
//
// Stop and Drain keep the member, because they also serve restarts (a rolling update, a
// SIGTERM): a node restarted with its DataDir comes back as the same member. Only Decommission
// says that the node is not coming bams. It blocks until done or ctx ends.
func (ck *ClusterKit) Decommission(ctx context.Context) error {
	if !ck.running() {
		return ErrNotStarted
	}
	if err := ck.members.decommission(ctx); err != nil {
		return err
	}
	return ck.Drain(ctx)
}

// decommission removes this node's etcd member, if it runs one, and its record.
func (ms *members) decommission(ctx context.Context) error {
	// No member place is taken from here on, and a join in progress ends (its learner removed)
	// or has ended with a member, which goes like any other.
	ms.decommissioned.Store(true)
	ms.stopJoin()
	m := ms.current()
	if m == nil {
		return nil
	}
	// The client must reach the other members before this one goes.
	if _, err := ms.syncEndpoints(ctx); err != nil {
		ms.decommissioned.Store(false)
		return fmt.Errorf("clusterkit: decommission: list etcd members: %w", err)
	}
	id := strconv.FormatUint(m.ID(), 16)
	if err := m.Remove(ctx, ms.env.client); err != nil {
		ms.decommissioned.Store(false)
		return fmt.Errorf("clusterkit: decommission: remove etcd member %s: %w", id, err)
	}
	ms.mu.Lock()
	ms.member = nil
	ms.mu.Unlock()
	ms.log.Info("etcd member removed", zap.String("member_id", id))
	if _, err := ms.env.client.Delete(ctx, ms.env.schema.EtcdMember(ms.env.opts.NodeID)); err != nil {
		ms.log.Warn("deleting the etcd member record failed", zap.Error(err))
	}
	if _, err := ms.syncEndpoints(ctx); err != nil {
		ms.log.Warn("reading the etcd member list after the removal failed", zap.Error(err))
	}
	if err := ms.saveLocalState(); err != nil {
		ms.log.Warn("updating DataDir after the removal failed", zap.Error(err))
	}
	return nil
}

// fillLoop lets a client node take a free etcd member place until ctx ends: whenever a member
// record is deleted (a member node was decommissioned), and whenever the records are read
// afresh, it counts them and, if there are fewer than the cluster's EmbeddedMembers, tries to
// join as a member (under the lock, which checks the etcd member list itself).
func (ms *members) fillLoop(ctx context.Context) {
	p := &follow.Keys{Client: ms.env.client, Key: ms.env.schema.EtcdMembersPrefix(), Prefix: true, Log: ms.log,
		ReadTimeout: ms.syncEvery(),
		Reset:       func(ctx context.Context, _ []*mvccpb.KeyValue) { ms.fillMemberPlace(ctx) },
		Events: func(ctx context.Context, evs []*clientv3.Event) {
			for _, ev := range evs {
				if ev.Type == clientv3.EventTypeDelete {
					ms.fillMemberPlace(ctx)
					return
				}
			}
		},
	}
	p.Run(ctx)
}

// fillMemberPlace takes a free member place, retrying with backoff (a join fails while etcd is
// out of reach, for one), until the node is a member, no place is free, or the node stops.
func (ms *members) fillMemberPlace(parent context.Context) {
	retry := backoff.Backoff{Min: 500 * time.Millisecond, Max: 10 * time.Second}
	for {
		if !ms.tryMemberPlace(parent) {
			return
		}
		select {
		case <-parent.Done():
			return
		case <-ms.leaving:
			return
		case <-time.After(retry.Next()):
		}
	}
}

// tryMemberPlace reserves a free member place and joins; it reports whether to try again.
func (ms *members) tryMemberPlace(parent context.Context) bool {
	select {
	case <-ms.leaving:
		return false
	default:
	}
	ms.mu.Lock()
	busy := ms.member != nil || ms.reserved != nil
	ms.mu.Unlock()
	if busy || ms.decommissioned.Load() || parent.Err() != nil {
		return false
	}
	ctx, cancel := context.WithTimeout(parent, ms.env.opts.StartTimeout)
	defer cancel()
	resp, err := ms.env.client.Get(ctx, ms.env.schema.EtcdMembersPrefix(), clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		ms.log.Warn("counting the etcd members failed; trying again", zap.Error(err))
		return true
	}
	if int(resp.Count) >= ms.env.config.EmbeddedMembers {
		return false
	}
	reserved, err := ms.reserve(ctx, parent)
	if err != nil {
		ms.log.Warn("taking a free etcd member place failed; trying again", zap.Error(err))
		return parent.Err() == nil
	}
	if reserved {
		ms.finishJoin(parent)
	}
	return false
}
