package clusterkit

import (
	"context"
	"errors"
	"fmt"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// A node needs nothing from etcd outside its cluster's prefix, /clusterkit/<ClusterName>/:
// an etcd user whose role grants readwrite on that prefix is enough. The lease calls (grant,
// keepalive, revoke, time to live) and the size monitor's status requests need an authenticated
// user but no key permission; etcd checks a lease revocation against the keys attached to the
// lease, which are all under the prefix. With authentication on, Start proves that access
// before it writes anything, and fails with an error that says what to change.

// probeAccess reads and writes under the cluster's prefix without changing anything: the put is
// guarded by a comparison that never holds (no key has a negative version), but etcd checks the
// permissions of both branches of a transaction before it evaluates the comparison: read on the
// config key, write on it, and read on the whole prefix. A role without readwrite on the prefix
// is thus refused at start, rather than deep in the registration or the election.
func (ck *ClusterKit) probeAccess(ctx context.Context) error {
	config := ck.env.schema.Config()
	_, err := ck.env.client.Txn(ctx).
		If(clientv3.Compare(clientv3.Version(config), "<", 0)).
		Then(clientv3.OpPut(config, "")).
		Else(clientv3.OpGet(ck.env.schema.Prefix(), clientv3.WithPrefix(), clientv3.WithCountOnly())).
		Commit()
	return err
}

// accessError explains etcd's refusal of the node's credentials (wrapping ErrEtcdAuthFailed) or
// of its access to the cluster's keys (wrapping ErrEtcdPermissionDenied), each also wrapping
// etcd's own error; nil for any other error. Start does not retry either: etcd would refuse the
// next attempt the same way.
func (ck *ClusterKit) accessError(endpoints []string, err error) error {
	user := ck.env.opts.EtcdUsername
	if c := ck.env.opts.EtcdClient; c != nil {
		user = c.Username
	}
	switch {
	case errors.Is(err, rpctypes.ErrAuthFailed):
		return fmt.Errorf("%w: etcd at %v refuses user %q with this password: check EtcdUsername and EtcdPassword (%w)",
			ErrEtcdAuthFailed, endpoints, user, err)
	case errors.Is(err, rpctypes.ErrUserEmpty):
		return fmt.Errorf("%w: etcd at %v requires authentication: set EtcdUsername and EtcdPassword (%w)",
			ErrEtcdAuthFailed, endpoints, err)
	case errors.Is(err, rpctypes.ErrPermissionDenied):
		who := "the node's etcd user"
		if user != "" {
			who = fmt.Sprintf("etcd user %q", user)
		}
		prefix := ck.env.schema.Prefix()
		return fmt.Errorf("%w: %s may not read and write the keys of cluster %q: its role must grant readwrite on the prefix %s "+
			"(etcdctl role grant-permission <role> --prefix=true readwrite %s) (%w)",
			ErrEtcdPermissionDenied, who, ck.env.clusterName, prefix, prefix, err)
	}
	return nil
}
