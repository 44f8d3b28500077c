package main

// Reading the cluster from etcd: the connection, and one snapshot of the cluster's keys read at
// one revision, decoded with internal/state and internal/mapstore.

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/clusterkit-go/clusterkit/internal/keys"
	"github.com/clusterkit-go/clusterkit/internal/mapstore"
	"github.com/clusterkit-go/clusterkit/internal/state"
)

// session is a connection to etcd and the cluster's settings read through it.
type session struct {
	g      *globals
	cli    *clientv3.Client
	schema keys.Schema
	config *state.Config
}

// open connects to etcd and reads the cluster's config, which proves that etcd answers: both
// within --dial-timeout. It fails when the cluster does not exist. The caller closes the
// session.
func (g *globals) open(ctx context.Context) (*session, error) {
	tlsConfig, err := g.tls()
	if err != nil {
		return nil, err
	}
	cfg := clientv3.Config{
		Endpoints:   g.endpoints,
		DialTimeout: g.dialTimeout,
		TLS:         tlsConfig,
		Logger:      zap.NewNop(),
		Context:     ctx,
	}
	if g.user != "" {
		cfg.Username, cfg.Password, _ = strings.Cut(g.user, ":")
	}
	cli, err := clientv3.New(cfg)
	if err != nil {
		return nil, g.etcdError(err)
	}
	s := &session{g: g, cli: cli, schema: keys.New(g.cluster)}
	dctx, cancel := context.WithTimeout(ctx, g.dialTimeout)
	defer cancel()
	config, err := mapstore.ReadConfig(dctx, cli, s.schema)
	if err == nil && config != nil {
		err = config.Check()
	}
	switch {
	case err != nil && config == nil && !errors.Is(err, state.ErrCorrupt):
		err = g.etcdError(err)
	case err != nil:
		err = stateError("cluster %q has an unusable config at %s: %v", g.cluster, s.schema.Config(), err)
	case config == nil:
		err = stateError("no cluster named %q under prefix %s in etcd at %s (no %s)",
			g.cluster, keys.Root, g.where(), s.schema.Config())
	}
	if err != nil {
		cli.Close()
		return nil, err
	}
	s.config = config
	return s, nil
}

func (s *session) close() { s.cli.Close() }

// where names the endpoints in messages.
func (g *globals) where() string { return strings.Join(g.endpoints, ",") }

// etcdError explains an error of the first requests to etcd: it cannot be reached, or it
// refuses the user.
func (g *globals) etcdError(err error) error {
	user, _, _ := strings.Cut(g.user, ":")
	switch {
	case errors.Is(err, rpctypes.ErrAuthFailed):
		err = fmt.Errorf("etcd at %s refuses user %q with this password (%s): %w", g.where(), user, g.source("user"), err)
	case errors.Is(err, rpctypes.ErrUserEmpty):
		err = fmt.Errorf("etcd at %s requires authentication: set --user user:password: %w", g.where(), err)
	case errors.Is(err, rpctypes.ErrPermissionDenied):
		err = fmt.Errorf("etcd user %q may not read %s: its role needs read on that prefix: %w", user, keys.New(g.cluster).Prefix(), err)
	case errors.Is(err, context.Canceled):
		err = fmt.Errorf("interrupted while connecting to etcd at %s", g.where())
	default:
		err = fmt.Errorf("cannot reach etcd at %s within %s %v: %w", g.where(), g.source("dial-timeout"), g.dialTimeout, unwrapDeadline(err))
	}
	return &exitError{status: exitEtcd, err: err}
}

// unwrapDeadline shortens the gRPC error of a request that timed out to what it says.
func unwrapDeadline(err error) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return errors.New("no answer")
	}
	return err
}

// tls builds the TLS configuration from --cacert, --cert and --key; nil when none is given.
func (g *globals) tls() (*tls.Config, error) {
	if g.cacert == "" && g.cert == "" {
		return nil, nil
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12}
	if g.cacert != "" {
		pem, err := os.ReadFile(g.cacert)
		if err != nil {
			return nil, usageError("--cacert: %v", err)
		}
		c.RootCAs = x509.NewCertPool()
		if !c.RootCAs.AppendCertsFromPEM(pem) {
			return nil, usageError("--cacert: %s holds no PEM certificate", g.cacert)
		}
	}
	if g.cert != "" {
		pair, err := tls.LoadX509KeyPair(g.cert, g.key)
		if err != nil {
			return nil, usageError("--cert and --key: %v", err)
		}
		c.Certificates = []tls.Certificate{pair}
	}
	return c, nil
}

// command runs fn with a connected session and a context bounded by --command-timeout.
func (g *globals) command(ctx context.Context, fn func(ctx context.Context, s *session) error) error {
	s, err := g.open(ctx)
	if err != nil {
		return err
	}
	defer s.close()
	cctx, cancel := context.WithTimeout(ctx, g.commandTimeout)
	defer cancel()
	return fn(cctx, s)
}

// readError explains a read that failed after the connection was made.
func (s *session) readError(what string, err error) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return &exitError{status: exitEtcd, err: fmt.Errorf("read %s from etcd at %s: no answer within %s %v", what, s.g.where(), s.g.source("command-timeout"), s.g.commandTimeout)}
	}
	if errors.Is(err, state.ErrCorrupt) {
		return stateError("the %s of cluster %q cannot be read: %v", what, s.g.cluster, err)
	}
	return &exitError{status: exitEtcd, err: fmt.Errorf("read %s from etcd at %s: %w", what, s.g.where(), err)}
}

// snapshot is the cluster's state, read at one etcd revision.
type snapshot struct {
	name     string
	config   *state.Config
	revision int64
	// mapRevision is the revision the map was written at, 0 without a map.
	mapRevision int64
	// m is the current map; nil when none has been published.
	m *state.Map
	// records are the node records under nodes/, by ID: the nodes whose lease is live.
	records map[string]state.Node
	// admin are the operators' actions in force under admin/, in key order.
	admin []adminRecord
	// leader is the node that leads the election, "" when none does.
	leader string
	// skipped lists the node and admin records that could not be decoded, with the reason.
	skipped []string
	// now is when the snapshot was read, for ages.
	now time.Time
}

// snapshot reads the map, then the node records, the admin records and the election's leader at
// the revision the map was read at, so that they agree with one another.
func (s *session) snapshot(ctx context.Context) (*snapshot, error) {
	snap := &snapshot{name: s.g.cluster, config: s.config, records: map[string]state.Node{}, now: time.Now()}
	r, err := mapstore.ReadMap(ctx, s.cli, s.schema, 0)
	if err != nil {
		return nil, s.readError("partition map", err)
	}
	snap.revision, snap.mapRevision = r.Revision, r.ModRevision
	if r.Map != nil {
		if err := r.Map.Validate(s.config.PartitionCount); err != nil {
			return nil, s.readError("partition map", err)
		}
	}
	snap.m = r.Map
	resp, err := s.cli.Get(ctx, s.schema.NodesPrefix(), clientv3.WithPrefix(), clientv3.WithRev(snap.revision))
	if err != nil {
		return nil, s.readError("node records", err)
	}
	for _, kv := range resp.Kvs {
		id, ok := s.schema.NodeID(string(kv.Key))
		if !ok {
			continue
		}
		n, err := state.DecodeNode(kv.Value)
		if err == nil && n.ID != id {
			err = fmt.Errorf("record of %q under the key of %q", n.ID, id)
		}
		if err != nil {
			snap.skipped = append(snap.skipped, fmt.Sprintf("%s: %v", kv.Key, err))
			continue
		}
		snap.records[id] = n
	}
	resp, err = s.cli.Get(ctx, s.schema.AdminPrefix(), clientv3.WithPrefix(), clientv3.WithRev(snap.revision))
	if err != nil {
		return nil, s.readError("admin records", err)
	}
	for _, kv := range resp.Kvs {
		a, err := state.DecodeAdmin(kv.Value, s.config.PartitionCount)
		if err != nil {
			snap.skipped = append(snap.skipped, fmt.Sprintf("%s: %v", kv.Key, err))
			continue
		}
		snap.admin = append(snap.admin, adminRecord{Key: string(kv.Key), Revision: kv.ModRevision, AdminAction: a})
	}
	// The election's candidates are leader/<lease>, as concurrency.Election writes them: the
	// oldest leads.
	resp, err = s.cli.Get(ctx, s.schema.LeaderPrefix()+"/", append(clientv3.WithFirstCreate(), clientv3.WithRev(snap.revision))...)
	if err != nil {
		return nil, s.readError("election", err)
	}
	if len(resp.Kvs) > 0 {
		snap.leader = string(resp.Kvs[0].Value)
	}
	return snap, nil
}

// requireMap returns the map, or the error of a cluster that has none yet.
func (snap *snapshot) requireMap() (*state.Map, error) {
	if snap.m == nil {
		return nil, stateError("cluster %q has no partition map yet: no node has led it", snap.name)
	}
	return snap.m, nil
}

// leaseGone lists the nodes of the map whose record is gone (their lease expired or was
// revoked): the leader has not published the map without them yet.
func (snap *snapshot) leaseGone() []string {
	out := []string{}
	if snap.m == nil {
		return out
	}
	for _, id := range snap.m.Members() {
		if _, ok := snap.records[id]; !ok {
			out = append(out, id)
		}
	}
	return out
}

// absent lists the crashed nodes whose places the map keeps during their grace period.
func (snap *snapshot) absent() []string {
	out := []string{}
	if snap.m != nil {
		out = append(out, slices.Sorted(maps.Keys(snap.m.Absent))...)
	}
	return out
}
