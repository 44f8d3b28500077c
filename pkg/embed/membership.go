package embed

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
)

// ErrLastMember is returned by Remove for the only voting member of a cluster: removing it would
// leave no cluster at all.
var ErrLastMember = errors.New("embed: the cluster's only voting member cannot be removed")

// ErrQuorumAtRisk is returned by Remove when too few of the other members answer: without the
// member removed, they would not make a quorum.
var ErrQuorumAtRisk = errors.New("embed: removing this member would leave the cluster without a running quorum")

// retryEvery is how often Join asks again to add a member while etcd says the cluster is not
// healthy enough, or to promote a learner that is not yet in sync.
const retryEvery = 100 * time.Millisecond

// healthInterval is etcd's: a member must have been connected to its peers this long before it
// accepts a membership change, plus a margin.
const healthInterval = 6 * time.Second

// HasData reports whether dir holds a member's data (its write-ahead log): a member started
// there restarts as the member it was, whatever its configuration says.
func HasData(dir string) bool {
	entries, err := os.ReadDir(filepath.Join(dir, "member", "wal"))
	if err != nil {
		return false
	}
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".wal") {
			return true
		}
	}
	return false
}

// Join adds a new member named cfg.Name to the etcd cluster that client talks to, and returns it
// running and voting. The member is added as a learner (retrying while etcd refuses new members because a recent change has not
// settled, which takes up to 5 seconds after another member joined; the learner does not count towards the quorum
// while it copies the cluster's data, so the cluster stays available), started with the
// cluster's current members, and promoted to a voting member once it has caught up, retrying
// while etcd answers that the learner is not yet in sync. It blocks until then, ctx ends, or
// cfg.StartTimeout passes for the start; on any error the learner is removed again and cfg.Dir
// cleared, so that Join can simply be called again.
//
// cfg.Dir must not hold a member's data: restart an existing member with Start. etcd admits one
// learner at a time, so concurrent Joins to one cluster must be serialised by the caller (the
// second one fails otherwise). client must reach a quorum of the cluster; Join neither closes
// it nor changes its endpoints.
func Join(ctx context.Context, client *clientv3.Client, cfg Config) (*Member, error) {
	if client == nil {
		return nil, fmt.Errorf("%w: client is nil", ErrInvalidConfig)
	}
	if HasData(cfg.Dir) {
		return nil, fmt.Errorf("%w: Dir %s already holds a member's data: restart it with Start", ErrInvalidConfig, cfg.Dir)
	}
	ec, err := prepare(cfg)
	if err != nil {
		return nil, err
	}
	peerURL := ec.AdvertisePeerUrls[0].String()
	// A member started while the cluster has not decided its version yet (just after a new
	// cluster elected its first leader) refuses to start ("incompatible with current running
	// cluster"): wait for the version first.
	var clientTLS *tls.Config
	if cfg.TLS != nil {
		clientTLS = cfg.TLS.ClientTLS
	}
	if err := waitClusterVersion(ctx, client.Endpoints(), clientTLS); err != nil {
		return nil, fmt.Errorf("embed: join %s: %w", cfg.Name, err)
	}
	for attempt := 1; ; attempt++ {
		m, err := join(ctx, client, cfg, ec, peerURL)
		// etcd checks, as the new member starts, that the initial cluster it was given lists the
		// members the cluster has then. When the membership changed between the learner's
		// addition and its start (seen under the race detector with five nodes joining: a
		// member whose join was finishing), the start fails with "error validating peerURLs";
		// the learner was removed again, so the join is tried afresh, with the members of then.
		if err == nil || attempt == 3 || !strings.Contains(err.Error(), "error validating peerURLs") || ctx.Err() != nil {
			return m, err
		}
		ec, err = prepare(cfg)
		if err != nil {
			return nil, err
		}
	}
}

// join adds the member as a learner, starts it with the members of then, and promotes it.
func join(ctx context.Context, client *clientv3.Client, cfg Config, ec *embed.Config, peerURL string) (*Member, error) {
	var added *clientv3.MemberAddResponse
	var err error
	for {
		added, err = client.MemberAddAsLearner(ctx, []string{peerURL})
		if err == nil {
			break
		}
		// etcd refuses a new member until the one serving the request has been connected to a
		// quorum for 5 seconds (its health interval), as it is just after another member joined.
		if !errors.Is(err, rpctypes.ErrUnhealthy) {
			return nil, fmt.Errorf("embed: add learner %s at %s: %w", cfg.Name, peerURL, err)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("embed: add learner %s at %s: %w (%w)", cfg.Name, peerURL, err, ctx.Err())
		case <-time.After(retryEvery):
		}
	}
	id := added.Member.ID
	var m *Member
	undo := func(cause error) error {
		if m != nil {
			m.Close()
		}
		rctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := client.MemberRemove(rctx, id); err != nil && !errors.Is(err, rpctypes.ErrMemberNotFound) {
			cause = fmt.Errorf("%w (and removing the learner %x again failed: %v)", cause, id, err)
		}
		os.RemoveAll(ec.Dir)
		return cause
	}
	// The initial cluster must list every member by its peer URLs; etcd matches them against the
	// running cluster. Names matter only for this member.
	var initial []string
	for _, mem := range added.Members {
		name := mem.Name
		if mem.ID == id {
			name = cfg.Name
		} else if name == "" {
			// Another member added but never started: only a caller that does not serialise
			// its Joins gets here.
			return nil, undo(fmt.Errorf("embed: member %x (%v) was added but never started: remove it first", mem.ID, mem.PeerURLs))
		}
		for _, u := range mem.PeerURLs {
			initial = append(initial, name+"="+u)
		}
	}
	ec.InitialCluster = strings.Join(initial, ",")
	ec.ClusterState = embed.ClusterStateFlagExisting
	m, err = run(ctx, ec, cfg.StartTimeout)
	if err != nil {
		return nil, undo(err)
	}
	for {
		_, err := client.MemberPromote(ctx, id)
		if err == nil {
			return m, nil
		}
		if !errors.Is(err, rpctypes.ErrMemberLearnerNotReady) {
			return nil, undo(fmt.Errorf("embed: promote learner %s (%x): %w", cfg.Name, id, err))
		}
		select {
		case <-ctx.Done():
			return nil, undo(fmt.Errorf("embed: learner %s (%x) did not catch up with the leader: %w", cfg.Name, id, ctx.Err()))
		case <-time.After(retryEvery):
		}
	}
}

// Remove takes the member out of its cluster for good, through client (which must reach the
// cluster's other members), then stops it and deletes its data directory, so that it can never
// be started again as a member its cluster no longer knows. etcd refuses the removal when it
// would leave fewer running members than a quorum (strict reconfiguration check; Remove retries
// for etcd's health interval, about 5s, since a member that has just rejoined counts as running
// only after it). Remove itself refuses when too few of the other members answer now
// (ErrQuorumAtRisk) and for the last voting member (ErrLastMember). A refused removal changes
// nothing: the member keeps running. Remove blocks until done or ctx ends.
func (m *Member) Remove(ctx context.Context, client *clientv3.Client) error {
	id := m.ID()
	list, err := client.MemberList(ctx)
	if err != nil {
		return fmt.Errorf("embed: list members: %w", err)
	}
	others, answering := 0, 0
	var silent []string
	for _, mem := range list.Members {
		if mem.ID == id || mem.IsLearner {
			continue
		}
		others++
		if Serves(ctx, client, mem.ClientURLs) {
			answering++
		} else {
			silent = append(silent, mem.Name)
		}
	}
	if others == 0 {
		return ErrLastMember
	}
	// etcd checks this too, but answers only "unhealthy cluster", which also means "wait".
	if quorum := others/2 + 1; answering < quorum {
		return fmt.Errorf("%w: %d of the other %d members answer (%v do not), %d needed", ErrQuorumAtRisk, answering, others, silent, quorum)
	}
	// etcd also refuses while the member serving the request has not been connected to the
	// others for its health interval (5s), as just after a member (re)joined: that passes.
	settle := time.Now().Add(healthInterval)
	for {
		_, err := client.MemberRemove(ctx, id)
		if err == nil || errors.Is(err, rpctypes.ErrMemberNotFound) {
			break
		}
		// The request may have been served by this very member, which stops serving the moment
		// it applies its own removal: the answer is then lost, the removal not.
		if gone, lerr := m.removedFrom(client); lerr == nil && gone {
			break
		}
		if !errors.Is(err, rpctypes.ErrUnhealthy) || time.Now().After(settle) {
			return fmt.Errorf("embed: remove member %x: %w", id, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("embed: remove member %x: %w (%w)", id, err, ctx.Err())
		case <-time.After(retryEvery):
		}
	}
	m.Close()
	if err := os.RemoveAll(m.dir); err != nil {
		return fmt.Errorf("embed: member %x removed, but deleting its data failed: %w", id, err)
	}
	return nil
}

// removedFrom reports whether the member list no longer has m.
func (m *Member) removedFrom(client *clientv3.Client) (bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	list, err := client.MemberList(ctx)
	if err != nil {
		return false, err
	}
	for _, mem := range list.Members {
		if mem.ID == m.ID() {
			return false, nil
		}
	}
	return true, nil
}

// Serves reports whether an etcd member serves clients on one of its client URLs, asking each
// through client for the member's status, for at most a second each. It blocks until then or ctx
// ends.
func Serves(ctx context.Context, client *clientv3.Client, urls []string) bool {
	for _, u := range urls {
		sctx, cancel := context.WithTimeout(ctx, time.Second)
		_, err := client.Status(sctx, u)
		cancel()
		if err == nil {
			return true
		}
	}
	return false
}

// waitClusterVersion waits until a member at one of endpoints reports a decided cluster version
// on its /version endpoint, or ctx ends. https endpoints are asked with clientTLS; endpoints
// that cannot be asked (https without clientTLS, an etcd that requires other credentials) are not
// waited for: when none answers, it returns at once.
func waitClusterVersion(ctx context.Context, endpoints []string, clientTLS *tls.Config) error {
	httpc := &http.Client{Timeout: time.Second, Transport: &http.Transport{TLSClientConfig: clientTLS}}
	defer httpc.CloseIdleConnections()
	for {
		answered := false
		for _, ep := range endpoints {
			if !strings.HasPrefix(ep, "http://") && (clientTLS == nil || !strings.HasPrefix(ep, "https://")) {
				continue
			}
			v, err := clusterVersion(ctx, httpc, ep)
			if err != nil {
				continue
			}
			answered = true
			if v != "" && v != "not_decided" {
				return nil
			}
		}
		if !answered {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the cluster has not decided its version: %w", ctx.Err())
		case <-time.After(retryEvery):
		}
	}
}

// clusterVersion asks the member at endpoint for its cluster's version ("not_decided" at first).
func clusterVersion(ctx context.Context, httpc *http.Client, endpoint string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(endpoint, "/")+"/version", nil)
	if err != nil {
		return "", err
	}
	resp, err := httpc.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET /version: %s", resp.Status)
	}
	var v struct {
		Cluster string `json:"etcdcluster"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 4096)).Decode(&v); err != nil {
		return "", err
	}
	return v.Cluster, nil
}
