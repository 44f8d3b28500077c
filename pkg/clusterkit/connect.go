package clusterkit

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/clusterkit-go/clusterkit/internal/atomicfile"
	"github.com/clusterkit-go/clusterkit/internal/keys"
	"github.com/clusterkit-go/clusterkit/internal/partition"
	"github.com/clusterkit-go/clusterkit/internal/state"
	"github.com/clusterkit-go/clusterkit/pkg/embed"
)

// This file holds the steps of Start that set up the node's environment: the etcd client for
// the configured mode (starting the embedded member when there is one), the cluster's name and
// fixed settings, and the node's identity in DataDir.

// connect sets up the etcd client for the configured mode, starting the embedded member of a
// bootstrap node, and of a member node that restarts with its DataDir.
func (ck *ClusterKit) connect(ctx context.Context) error {
	var endpoints []string
	ls, err := ck.members.readLocalState()
	if err != nil {
		return err
	}
	switch ck.env.opts.mode() {
	case etcdClient:
		ck.env.client = ck.env.opts.EtcdClient
	case etcdEndpoints:
		endpoints = ck.env.opts.EtcdEndpoints
	case etcdJoin:
		if s := ck.env.secure; s != nil {
			// The CA and a certificate first: every later step speaks TLS.
			info, err := s.join(ctx, ck.env.opts.JoinAddr, ck.env.opts.NodeID, ck.env.addr)
			if err != nil {
				return err
			}
			if info != nil {
				if err := ck.checkClusterName(info.ClusterName, "the node at JoinAddr "+ck.env.opts.JoinAddr); err != nil {
					return err
				}
				endpoints = info.EtcdEndpoints
				break
			}
		}
		if embed.HasData(ck.members.etcdDir()) {
			// A member node restarting: its member knows its cluster, JoinAddr is not needed.
			name, source := ls.ClusterName, "the cluster remembered in DataDir"
			if name == "" {
				// Its DataDir lost what it remembers: the node at JoinAddr knows the name.
				var err error
				if name, _, err = ck.joinEndpoints(ctx, ls); err != nil {
					return err
				}
				source = "the node at JoinAddr " + ck.env.opts.JoinAddr
			}
			if err := ck.checkClusterName(name, source); err != nil {
				return err
			}
			if err := ck.members.startMember(ctx, ls); err != nil {
				return err
			}
			endpoints = union(ck.members.current().Endpoints(), ls.EtcdEndpoints)
			break
		}
		name, eps, err := ck.joinEndpoints(ctx, ls)
		if err != nil {
			return err
		}
		if err := ck.checkClusterName(name, "the node at JoinAddr "+ck.env.opts.JoinAddr); err != nil {
			return err
		}
		endpoints = eps
	case etcdEmbedded:
		if !embed.HasData(ck.members.etcdDir()) && len(ls.EtcdEndpoints) > 0 {
			// Creating a new cluster here would split this node from the one it belonged to.
			return fmt.Errorf("clusterkit: DataDir %s belonged to cluster %q (etcd at %v) but holds no etcd data: set JoinAddr to any node of that cluster to rejoin it, or empty DataDir to create a new cluster",
				ck.env.opts.DataDir, ls.ClusterName, ls.EtcdEndpoints)
		}
		if s := ck.env.secure; s != nil {
			if err := s.bootstrap(ck.env.clusterName, ck.env.opts.NodeID, ck.env.addr); err != nil {
				return err
			}
		}
		if err := ck.members.startMember(ctx, ls); err != nil {
			return err
		}
		endpoints = union(ck.members.current().Endpoints(), ls.EtcdEndpoints)
	}
	ck.env.schema = keys.New(ck.env.clusterName)
	if s := ck.env.secure; s != nil {
		tlsConfig, err := s.etcdTLS()
		if err != nil {
			return err
		}
		ck.env.opts.EtcdTLS = tlsConfig
	}
	if ck.env.client == nil {
		c, err := clientv3.New(clientv3.Config{
			Endpoints:            endpoints,
			DialTimeout:          ck.env.opts.EtcdDialTimeout,
			DialKeepAliveTime:    ck.env.opts.LeaseTTL / 2,
			DialKeepAliveTimeout: ck.env.opts.LeaseTTL / 4,
			Username:             ck.env.opts.EtcdUsername,
			Password:             ck.env.opts.EtcdPassword,
			TLS:                  ck.env.opts.EtcdTLS,
			Logger:               ck.env.log.Named("etcd-client").WithOptions(zap.IncreaseLevel(zap.ErrorLevel)),
		})
		if err != nil {
			// With a user name, clientv3.New authenticates: a wrong password fails here.
			if aerr := ck.accessError(endpoints, err); aerr != nil {
				return aerr
			}
			return fmt.Errorf("clusterkit: etcd client for %v%s: %w", endpoints, tlsHint(endpoints, ck.env.opts.EtcdTLS), err)
		}
		ck.env.client = c
		ck.ownClient = true
	}
	// clientv3.New does not wait for a connection: prove that etcd answers and lets this node
	// read and write the cluster's keys before going on (see probeAccess).
	pctx, cancel := context.WithTimeout(ctx, ck.env.opts.EtcdDialTimeout)
	defer cancel()
	if err := ck.probeAccess(pctx); err != nil {
		if aerr := ck.accessError(ck.env.client.Endpoints(), err); aerr != nil {
			return aerr
		}
		if isNoSpace(err) {
			return fmt.Errorf("clusterkit: etcd at %v refuses writes for want of space (NOSPACE alarm): compact, defragment, then disarm the alarm: %w",
				ck.env.client.Endpoints(), err)
		}
		return fmt.Errorf("clusterkit: etcd at %v does not answer within EtcdDialTimeout (%v)%s: %w",
			ck.env.client.Endpoints(), ck.env.opts.EtcdDialTimeout, tlsHint(endpoints, ck.env.opts.EtcdTLS), err)
	}
	if s := ck.env.secure; s != nil {
		return s.publishCA(pctx, ck.env.client, ck.env.schema.CA())
	}
	return nil
}

// checkClusterName adopts the cluster name learned from source, or checks it against
// Options.ClusterName.
func (ck *ClusterKit) checkClusterName(name, source string) error {
	switch {
	case name == "":
		return fmt.Errorf("clusterkit: %s does not say which cluster it belongs to", source)
	case keys.ValidClusterName(name) != nil:
		return fmt.Errorf("clusterkit: %s names an invalid cluster: %v", source, keys.ValidClusterName(name))
	case ck.env.clusterName == "":
		ck.env.clusterName = name
	case ck.env.clusterName != name:
		return fmt.Errorf("clusterkit: ClusterName is %q but %s belongs to cluster %q", ck.env.clusterName, source, name)
	}
	return nil
}

// joinEndpoints asks the node at JoinAddr for its cluster's name and etcd endpoints. When that
// node does not answer within EtcdDialTimeout and DataDir remembers the endpoints of an earlier
// life, those are used instead: a restarting node does not depend on the node it first joined.
func (ck *ClusterKit) joinEndpoints(ctx context.Context, ls localState) (string, []string, error) {
	if len(ls.EtcdEndpoints) == 0 || ls.ClusterName == "" {
		info, err := fetchJoinInfo(ctx, ck.env.opts.JoinAddr, ck.env.secure, ck.env.opts.HTTPClientTLS)
		if err != nil {
			return "", nil, err
		}
		return info.ClusterName, info.EtcdEndpoints, nil
	}
	jctx, cancel := context.WithTimeout(ctx, ck.env.opts.EtcdDialTimeout)
	info, err := fetchJoinInfo(jctx, ck.env.opts.JoinAddr, ck.env.secure, ck.env.opts.HTTPClientTLS)
	cancel()
	if err == nil {
		return info.ClusterName, info.EtcdEndpoints, nil
	}
	ck.env.log.Warn("JoinAddr does not answer, using the etcd endpoints remembered in DataDir",
		zap.String("join_addr", ck.env.opts.JoinAddr), zap.Strings("endpoints", ls.EtcdEndpoints), zap.Error(err))
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
		PartitionCount:    ck.env.opts.PartitionCount,
		ReplicationFactor: ck.env.opts.ReplicationFactor,
		Hash:              state.HashConfig{Algorithm: state.HashMD5, Modulo: ck.env.opts.PartitionCount, Format: partition.Format},
		CreatedAt:         time.Now().UTC(),
	}
	if ck.env.opts.mode() == etcdEmbedded {
		local.EmbeddedMembers = cmp.Or(ck.env.opts.EmbeddedMembers, DefaultEmbeddedMembers)
	}
	b, err := json.Marshal(local)
	if err != nil {
		return err
	}
	// The config is created only with the cluster: never again once a map exists, so that a
	// deleted config is not silently re-created with other settings.
	key, mapKey := ck.env.schema.Config(), ck.env.schema.Partitions()
	resp, err := ck.env.client.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0), clientv3.Compare(clientv3.CreateRevision(mapKey), "=", 0)).
		Then(clientv3.OpPut(key, string(b))).
		Else(clientv3.OpGet(key)).Commit()
	if err != nil {
		return fmt.Errorf("clusterkit: write cluster config: %w", err)
	}
	if resp.Succeeded {
		ck.env.config = local
		ck.env.log.Info("cluster created", zap.String("cluster_id", local.ClusterID),
			zap.Int("partition_count", local.PartitionCount), zap.Int("replication_factor", local.ReplicationFactor))
		return nil
	}
	var stored state.Config
	kvs := resp.Responses[0].GetResponseRange().Kvs
	if len(kvs) == 0 {
		return fmt.Errorf("clusterkit: cluster config %s is missing while the cluster has a partition map (%s): "+
			"it was deleted; put it back (etcdctl put %s '<the config JSON>') rather than let a node re-create it with other settings",
			key, mapKey, key)
	}
	if err := json.Unmarshal(kvs[0].Value, &stored); err != nil {
		return fmt.Errorf("clusterkit: cluster config at %s is corrupt (%v): put back the cluster's config", key, err)
	}
	if err := stored.Check(); err != nil {
		return fmt.Errorf("clusterkit: cluster config at %s is invalid (%v): put back the cluster's config", key, err)
	}
	if setting, ours, theirs := local.Differs(stored); setting != "" {
		return &ConfigMismatchError{Setting: setting, Local: ours, Cluster: theirs}
	}
	// A node that leaves EmbeddedMembers unset follows the cluster.
	if n := ck.env.opts.EmbeddedMembers; n != 0 && n != stored.EmbeddedMembers {
		return &ConfigMismatchError{Setting: "EmbeddedMembers", Local: n, Cluster: stored.EmbeddedMembers}
	}
	ck.env.config = stored
	return nil
}

// instanceID returns the identity of this DataDir's life, creating it on first use.
func (ck *ClusterKit) instanceID() (string, error) {
	path := filepath.Join(ck.env.opts.DataDir, "instance")
	if b, err := os.ReadFile(path); err == nil && len(b) > 0 {
		return string(b), nil
	}
	if err := os.MkdirAll(ck.env.opts.DataDir, 0o700); err != nil {
		return "", fmt.Errorf("clusterkit: DataDir: %w", err)
	}
	id := newID()
	if err := atomicfile.Write(path, []byte(id), 0o600); err != nil {
		return "", fmt.Errorf("clusterkit: DataDir: %w", err)
	}
	return id, nil
}

func newID() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

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
