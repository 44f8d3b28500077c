package clusterkit

import (
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
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"go.uber.org/zap"

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

// readLocalState returns what the DataDir remembers; the zero value when nothing.
func (ck *ClusterKit) readLocalState() (localState, error) {
	var ls localState
	b, err := os.ReadFile(filepath.Join(ck.opts.DataDir, localStateFile))
	if errors.Is(err, os.ErrNotExist) {
		return ls, nil
	}
	if err != nil {
		return ls, fmt.Errorf("clusterkit: DataDir: %w", err)
	}
	if err := json.Unmarshal(b, &ls); err != nil {
		return ls, fmt.Errorf("clusterkit: DataDir file %s is damaged (delete it to start afresh): %w",
			filepath.Join(ck.opts.DataDir, localStateFile), err)
	}
	return ls, nil
}

// saveLocalState writes what the node must remember, atomically (a crash leaves the old file or
// the new one).
func (ck *ClusterKit) saveLocalState() error {
	ck.mu.Lock()
	ls := localState{ClusterName: ck.opts.ClusterName, EtcdEndpoints: ck.client.Endpoints()}
	if m := ck.member; m != nil {
		ls.MemberID = strconv.FormatUint(m.ID(), 16)
		ls.ClientPort = urlPort(m.Endpoints()[0])
		ls.PeerPort = urlPort(m.PeerURL())
	}
	ck.mu.Unlock()
	b, err := json.Marshal(ls)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(ck.opts.DataDir, 0o700); err != nil {
		return fmt.Errorf("clusterkit: DataDir: %w", err)
	}
	path := filepath.Join(ck.opts.DataDir, localStateFile)
	if err := os.WriteFile(path+".tmp", b, 0o600); err != nil {
		return fmt.Errorf("clusterkit: DataDir: %w", err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
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

// embeddedMember returns the node's etcd member, nil for a client node.
func (ck *ClusterKit) embeddedMember() *embed.Member {
	ck.mu.Lock()
	defer ck.mu.Unlock()
	return ck.member
}

// etcdDir is where the embedded etcd member keeps its data.
func (ck *ClusterKit) etcdDir() string { return filepath.Join(ck.opts.DataDir, "etcd") }

// memberConfig is the configuration of this node's embedded etcd member. Ports the member had in
// an earlier life win over derived ones: a member must come back on its peer address.
func (ck *ClusterKit) memberConfig(ls localState) embed.Config {
	_, port, _ := net.SplitHostPort(ck.opts.HTTPAddr)
	httpPort, _ := strconv.Atoi(port)
	advHost, _, _ := net.SplitHostPort(ck.opts.AdvertiseAddr)
	addr := func(explicit string, offset, remembered int) string {
		if explicit != "" {
			return explicit
		}
		a := embeddedAddr(ck.opts.HTTPAddr, advHost, httpPort, offset)
		if remembered != 0 {
			host, _, _ := net.SplitHostPort(a)
			a = net.JoinHostPort(host, strconv.Itoa(remembered))
		}
		return a
	}
	return embed.Config{
		Name:              ck.opts.NodeID,
		Dir:               ck.etcdDir(),
		ClientAddr:        addr(ck.opts.EmbeddedEtcdClientAddr, embeddedPortOffset, ls.ClientPort),
		PeerAddr:          addr(ck.opts.EmbeddedEtcdPeerAddr, 2*embeddedPortOffset, ls.PeerPort),
		AdvertiseHost:     advHost,
		HeartbeatInterval: ck.opts.embeddedHeartbeat,
		ElectionTimeout:   10 * ck.opts.embeddedHeartbeat,
		UnsafeNoFsync:     ck.opts.unsafeNoFsync,
		Logger:            ck.log.Named("etcd").WithOptions(zap.IncreaseLevel(zap.WarnLevel)),
		StartTimeout:      ck.opts.StartTimeout,
	}
}

// startMember starts this node's embedded member: a new single-member cluster for a bootstrap
// node without data, else the member whose data is in DataDir, which rejoins its cluster.
func (ck *ClusterKit) startMember(ctx context.Context, ls localState) error {
	restart := embed.HasData(ck.etcdDir())
	m, err := embed.Start(ctx, ck.memberConfig(ls))
	if err != nil {
		return fmt.Errorf("clusterkit: embedded etcd: %w", err)
	}
	ck.mu.Lock()
	ck.member = m
	ck.mu.Unlock()
	ck.log.Info("embedded etcd member started", zap.String("member_id", strconv.FormatUint(m.ID(), 16)),
		zap.Strings("client_urls", m.Endpoints()), zap.String("peer_url", m.PeerURL()), zap.Bool("restarted", restart))
	return nil
}

// joinAsMember makes this node an embedded etcd member when its cluster has fewer voting members
// than its config asks for, and every voting member is one that a node of the cluster added (its
// record under etcd-members/ names it); otherwise the node stays a client. The decision and the
// join happen under the etcd-members lock, so that two nodes joining at once never both take the
// last place (etcd would also refuse a second learner). A learner seen under the lock is the
// leftover of a join that died half-way (the lock holder promotes its learner before unlocking)
// and is removed, as is a member under this node's name that does not answer, since this node
// has no member data: that member's data is lost. It reports whether the node became a member.
func (ck *ClusterKit) joinAsMember(ctx context.Context) (bool, error) {
	want := ck.config.EmbeddedMembers
	if want == 0 {
		return false, nil
	}
	// The session outlives ctx only to release the lock; a node that dies holding the lock
	// releases it when the session's lease expires, one LeaseTTL later.
	session, err := concurrency.NewSession(ck.client, concurrency.WithTTL(int(ck.opts.LeaseTTL/time.Second)),
		concurrency.WithContext(ck.runCtx))
	if err != nil {
		return false, fmt.Errorf("clusterkit: etcd-members lock session: %w", err)
	}
	defer session.Close()
	mu := concurrency.NewMutex(session, ck.schema.EtcdMembersLock())
	if err := mu.Lock(ctx); err != nil {
		return false, fmt.Errorf("clusterkit: etcd-members lock: %w", err)
	}
	defer func() {
		uctx, cancel := context.WithTimeout(context.Background(), time.Second)
		mu.Unlock(uctx)
		cancel()
	}()
	list, err := ck.client.MemberList(ctx)
	if err != nil {
		return false, fmt.Errorf("clusterkit: list etcd members: %w", err)
	}
	recorded, err := ck.memberRecords(ctx)
	if err != nil {
		return false, err
	}
	for _, m := range list.Members {
		if m.IsLearner || m.Name == ck.opts.NodeID {
			continue
		}
		if recorded[m.Name] != strconv.FormatUint(m.ID, 16) {
			// An etcd that ClusterKit did not build, such as an external cluster restored from a
			// snapshot of the embedded one: it is not ours to change.
			ck.log.Info("etcd has members that no node of this cluster added: staying an etcd client",
				zap.String("member", m.Name), zap.String("member_id", strconv.FormatUint(m.ID, 16)))
			return false, nil
		}
	}
	voting := 0
	for _, m := range list.Members {
		stale := m.IsLearner || m.Name == ck.opts.NodeID
		if !stale {
			voting++
			continue
		}
		if !m.IsLearner && embed.Serves(ctx, ck.client, m.ClientURLs) {
			// Another process runs under this node ID: registration would refuse it too, but
			// removing its member first would do harm.
			return false, fmt.Errorf("clusterkit: node ID %q already runs etcd member %x at %v: another node runs with this ID, or this node's DataDir is not the one it ran with",
				ck.opts.NodeID, m.ID, m.ClientURLs)
		}
		ck.log.Warn("removing a stale etcd member", zap.String("member_id", strconv.FormatUint(m.ID, 16)),
			zap.String("name", m.Name), zap.Bool("learner", m.IsLearner), zap.Strings("peer_urls", m.PeerURLs))
		if _, err := ck.client.MemberRemove(ctx, m.ID); err != nil {
			return false, fmt.Errorf("clusterkit: remove stale etcd member %x (%s): %w", m.ID, m.Name, err)
		}
	}
	if voting >= want {
		return false, nil
	}
	ck.log.Info("joining etcd as a member", zap.Int("members", voting), zap.Int("embedded_members", want))
	m, err := embed.Join(ctx, ck.client, ck.memberConfig(localState{}))
	if err != nil {
		return false, fmt.Errorf("clusterkit: become an etcd member: %w", err)
	}
	ck.mu.Lock()
	ck.member = m
	ck.mu.Unlock()
	// Remember at once: from here on a restart must start from the member's data.
	if err := ck.saveLocalState(); err != nil {
		ck.log.Error("remembering the etcd member failed", zap.Error(err))
	}
	ck.log.Info("etcd member joined and promoted", zap.String("member_id", strconv.FormatUint(m.ID(), 16)),
		zap.Int("members", voting+1))
	return true, ck.recordMember(ctx, mu.IsOwner())
}

// memberRecords returns the records under etcd-members/ as node ID -> member ID.
func (ck *ClusterKit) memberRecords(ctx context.Context) (map[string]string, error) {
	resp, err := ck.client.Get(ctx, ck.schema.EtcdMembersPrefix(), clientv3.WithPrefix())
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

// recordMember writes the record of this node's member under etcd-members/<node-id>, while
// every guard holds. The record of an earlier life of the same member is kept as it is.
func (ck *ClusterKit) recordMember(ctx context.Context, guards ...clientv3.Cmp) error {
	m := ck.embeddedMember()
	rec := state.EtcdMember{NodeID: ck.opts.NodeID, MemberID: strconv.FormatUint(m.ID(), 16),
		PeerURLs: []string{m.PeerURL()}, ClientURLs: m.Endpoints(), JoinedAt: time.Now().UTC().Truncate(time.Millisecond)}
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	key := ck.schema.EtcdMember(ck.opts.NodeID)
	resp, err := ck.client.Get(ctx, key)
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
	tresp, err := ck.client.Txn(ctx).If(append(guards, unchanged)...).Then(clientv3.OpPut(key, string(b))).Commit()
	if err != nil {
		return fmt.Errorf("clusterkit: record etcd member: %w", err)
	}
	if !tresp.Succeeded {
		return errors.New("clusterkit: record etcd member: changed concurrently")
	}
	return nil
}

// setUpEmbedded runs once the cluster's config is known: a joining node of a cluster on
// embedded etcd becomes a member if one is missing, a member makes sure its record is there, and
// every node of such a cluster learns all members' endpoints and keeps them current.
func (ck *ClusterKit) setUpEmbedded(ctx context.Context) error {
	mode := ck.opts.mode()
	if mode != etcdJoin && mode != etcdEmbedded {
		return nil
	}
	if mode == etcdJoin && ck.member == nil {
		if _, err := ck.joinAsMember(ctx); err != nil {
			return err
		}
	}
	if ck.member != nil {
		if err := ck.recordMember(ctx); err != nil {
			return err
		}
	}
	if ck.config.EmbeddedMembers > 0 {
		if _, err := ck.syncEndpoints(ctx); err != nil {
			return fmt.Errorf("clusterkit: list etcd members: %w", err)
		}
		ck.wg.Add(2)
		go func() { defer ck.wg.Done(); ck.runEndpointSync() }()
		go func() { defer ck.wg.Done(); ck.runMemberPlaces() }()
	}
	return ck.saveLocalState()
}

// syncEvery is how often a node reads the etcd member list to keep its client's endpoints
// current.
func (ck *ClusterKit) syncEvery() time.Duration {
	return min(max(ck.opts.LeaseTTL/2, time.Second), 5*time.Second)
}

// syncEndpoints points the etcd client at the client URLs of every voting member, and remembers
// them in DataDir, so that the node does not depend on any single member. It returns whether the
// endpoints changed.
func (ck *ClusterKit) syncEndpoints(ctx context.Context) (bool, error) {
	list, err := ck.client.MemberList(ctx)
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
	old := slices.Sorted(slices.Values(ck.client.Endpoints()))
	if len(eps) == 0 || slices.Equal(eps, old) {
		return false, nil
	}
	ck.client.SetEndpoints(eps...)
	ck.log.Info("etcd endpoints changed", zap.Strings("endpoints", eps), zap.Strings("before", old))
	return true, ck.saveLocalState()
}

// runEndpointSync keeps the client's endpoints current until Stop. Reading the member list
// needs a quorum; without one the endpoints stay as they are.
func (ck *ClusterKit) runEndpointSync() {
	every := ck.syncEvery()
	ticker := time.NewTicker(every)
	defer ticker.Stop()
	for {
		select {
		case <-ck.runCtx.Done():
			return
		case <-ticker.C:
		}
		ctx, cancel := context.WithTimeout(ck.runCtx, every)
		if _, err := ck.syncEndpoints(ctx); err != nil && ck.runCtx.Err() == nil {
			ck.log.Debug("reading the etcd member list failed", zap.Error(err))
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
// says that the node is not coming back. It blocks until done or ctx ends.
func (ck *ClusterKit) Decommission(ctx context.Context) error {
	ck.mu.Lock()
	started, stopped, m := ck.started, ck.stopped, ck.member
	ck.mu.Unlock()
	if !started || stopped {
		return ErrNotStarted
	}
	if m != nil {
		ck.decommissioned.Store(true)
		// The client must reach the other members before this one goes.
		if _, err := ck.syncEndpoints(ctx); err != nil {
			ck.decommissioned.Store(false)
			return fmt.Errorf("clusterkit: decommission: list etcd members: %w", err)
		}
		id := strconv.FormatUint(m.ID(), 16)
		if err := m.Remove(ctx, ck.client); err != nil {
			ck.decommissioned.Store(false)
			return fmt.Errorf("clusterkit: decommission: remove etcd member %s: %w", id, err)
		}
		ck.mu.Lock()
		ck.member = nil
		ck.mu.Unlock()
		ck.log.Info("etcd member removed", zap.String("member_id", id))
		if _, err := ck.client.Delete(ctx, ck.schema.EtcdMember(ck.opts.NodeID)); err != nil {
			ck.log.Warn("deleting the etcd member record failed", zap.Error(err))
		}
		if _, err := ck.syncEndpoints(ctx); err != nil {
			ck.log.Warn("reading the etcd member list after the removal failed", zap.Error(err))
		}
		if err := ck.saveLocalState(); err != nil {
			ck.log.Warn("updating DataDir after the removal failed", zap.Error(err))
		}
	}
	return ck.Drain(ctx)
}

// runMemberPlaces lets a client node take a free etcd member place until Stop: when a member
// record is deleted (a member node was decommissioned), and whenever the watch starts, it counts
// the records and, if there are fewer than the cluster's EmbeddedMembers, tries to join as a
// member (under the lock, which checks the etcd member list itself).
func (ck *ClusterKit) runMemberPlaces() {
	prefix := ck.schema.EtcdMembersPrefix()
	for {
		ck.fillMemberPlace()
		wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ck.runCtx))
		for resp := range ck.client.Watch(wctx, prefix, clientv3.WithPrefix(), clientv3.WithFilterPut()) {
			if resp.Err() != nil {
				break
			}
			if len(resp.Events) > 0 {
				ck.fillMemberPlace()
			}
		}
		cancel()
		select {
		case <-ck.runCtx.Done():
			return
		case <-ck.leaving:
			return
		case <-time.After(ck.syncEvery()):
		}
	}
}

// fillMemberPlace joins as a member if a member place is free.
func (ck *ClusterKit) fillMemberPlace() {
	isMember := ck.embeddedMember() != nil
	select {
	case <-ck.leaving:
		return
	default:
	}
	if isMember || ck.decommissioned.Load() || ck.runCtx.Err() != nil {
		return
	}
	ctx, cancel := context.WithTimeout(ck.runCtx, ck.opts.StartTimeout)
	defer cancel()
	resp, err := ck.client.Get(ctx, ck.schema.EtcdMembersPrefix(), clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil || int(resp.Count) >= ck.config.EmbeddedMembers {
		return
	}
	joined, err := ck.joinAsMember(ctx)
	switch {
	case err != nil:
		ck.log.Warn("taking a free etcd member place failed", zap.Error(err))
	case joined:
		if _, err := ck.syncEndpoints(ctx); err != nil {
			ck.log.Warn("reading the etcd member list failed", zap.Error(err))
		}
	}
}
