package e2e

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/clusterkit-go/clusterkit/pkg/clusterkit"
)

// On an etcd process with authentication on, a user whose role grants readwrite on the
// cluster's prefix and nothing else is all a node needs: two nodes start, agree on a map, watch
// etcd's database size (a status request, outside every prefix) and one leaves cleanly, without
// a single refusal logged. Bad credentials and roles that do not cover the prefix fail Start
// at once, with an error that says what to change, and leave nothing in etcd.
func TestEtcdLeastPrivilege(t *testing.T) {
	etcd := startPlainEtcdProcess(t)
	name := "auth-" + randomHex(t)
	prefix := "/clusterkit/" + name + "/"
	// User ck, role clusterkit: readwrite on prefix, as the README's etcdctl commands set up.
	rootPassword, ckPassword := etcd.enableAuth(t, prefix)
	root := etcd.client(t, "root", rootPassword)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	readWrite, read := clientv3.PermissionType(clientv3.PermReadWrite), clientv3.PermissionType(clientv3.PermRead)
	otherPassword := addEtcdUser(ctx, t, root, "ck-other", "/other/", clientv3.GetPrefixRangeEnd("/other/"), readWrite)
	readOnlyPassword := addEtcdUser(ctx, t, root, "ck-readonly", prefix, clientv3.GetPrefixRangeEnd(prefix), read)
	// The prefix's own key alone: etcdctl role grant-permission without --prefix=true.
	keyOnlyPassword := addEtcdUser(ctx, t, root, "ck-key-only", prefix, "", readWrite)

	// refusals are the lines the nodes logged, at any level, about etcd refusing them.
	obs, logged := observer.New(zap.DebugLevel)
	refusals := func() []string {
		var out []string
		for _, e := range logged.All() {
			line := fmt.Sprintf("%s: %s %v", e.LoggerName, e.Message, e.ContextMap())
			for _, s := range []string{"permission denied", "authentication", "user name is empty", "auth token", "auth revision"} {
				if strings.Contains(line, s) {
					out = append(out, line)
					break
				}
			}
		}
		return out
	}
	options := func(id, user, password string) clusterkit.Options {
		test := zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)).Core()
		return clusterkit.Options{
			NodeID:            id,
			HTTPAddr:          "127.0.0.1:0",
			DataDir:           t.TempDir(),
			ClusterName:       name,
			PartitionCount:    partitionCount,
			ReplicationFactor: replicationFactor,
			LeaseTTL:          2 * time.Second,
			// Far longer than any refusal takes: a Start that fails by its deadline hung.
			StartTimeout:  30 * time.Second,
			EtcdEndpoints: []string{etcd.URL},
			EtcdUsername:  user,
			EtcdPassword:  password,
			Logger:        zap.New(zapcore.NewTee(obs, test)).Named(id),
		}
	}

	before, err := root.Get(ctx, "\x00", clientv3.WithFromKey(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	refused := []struct {
		name, user, password string
		want                 error
		// etcdErr is etcd's own error, wrapped too.
		etcdErr error
		// says are parts of the message: what to change.
		says []string
	}{
		{"wrong password", "ck", "wrong-" + ckPassword, clusterkit.ErrEtcdAuthFailed, rpctypes.ErrAuthFailed,
			[]string{`user "ck"`, "EtcdUsername and EtcdPassword"}},
		{"unknown user", "nobody", ckPassword, clusterkit.ErrEtcdAuthFailed, rpctypes.ErrAuthFailed,
			[]string{`user "nobody"`}},
		{"no credentials", "", "", clusterkit.ErrEtcdAuthFailed, rpctypes.ErrUserEmpty,
			[]string{"requires authentication", "set EtcdUsername and EtcdPassword"}},
		{"role on another prefix", "ck-other", otherPassword, clusterkit.ErrEtcdPermissionDenied, rpctypes.ErrPermissionDenied,
			[]string{`etcd user "ck-other"`, "readwrite on the prefix " + prefix, "--prefix=true readwrite " + prefix}},
		{"read-only role on the prefix", "ck-readonly", readOnlyPassword, clusterkit.ErrEtcdPermissionDenied, rpctypes.ErrPermissionDenied,
			[]string{`etcd user "ck-readonly"`, "readwrite on the prefix " + prefix}},
		{"role on the prefix's key alone", "ck-key-only", keyOnlyPassword, clusterkit.ErrEtcdPermissionDenied, rpctypes.ErrPermissionDenied,
			[]string{`etcd user "ck-key-only"`, "readwrite on the prefix " + prefix}},
	}
	for _, tt := range refused {
		t.Run(tt.name, func(t *testing.T) {
			ck, err := clusterkit.NewClusterKit(options("intruder", tt.user, tt.password))
			if err != nil {
				t.Fatal(err)
			}
			defer ck.Stop()
			err = ck.Start()
			t.Logf("Start: %v", err)
			if err == nil {
				t.Fatal("Start succeeded")
			}
			if errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("Start waited for its StartTimeout instead of failing at once: %v", err)
			}
			if !errors.Is(err, tt.want) || !errors.Is(err, tt.etcdErr) {
				t.Errorf("Start: %v; want an error wrapping %v and %v", err, tt.want, tt.etcdErr)
			}
			for _, s := range tt.says {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("Start: %v; want it to say %q", err, s)
				}
			}
		})
	}
	// Refused nodes wrote nothing: no key, no lease, and etcd's revision did not move.
	after, err := root.Get(ctx, "\x00", clientv3.WithFromKey(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	if after.Count != 0 || after.Header.Revision != before.Header.Revision {
		t.Errorf("after the refused starts etcd holds %d keys at revision %d, want none at revision %d",
			after.Count, after.Header.Revision, before.Header.Revision)
	}
	if leases, err := root.Leases(ctx); err != nil || len(leases.Leases) != 0 {
		t.Errorf("after the refused starts etcd holds leases %v (%v), want none", leases, err)
	}
	if r := refusals(); len(r) > 0 {
		// Start returns its error; it does not log it too.
		t.Errorf("refused nodes logged %d lines about it:\n%s", len(r), strings.Join(r, "\n"))
	}

	// Two nodes under the least-privileged user.
	nodes := map[string]*clusterkit.ClusterKit{}
	for _, id := range []string{"node-1", "node-2"} {
		o := options(id, "ck", ckPassword)
		if id == "node-1" {
			o.Registerer = prometheus.NewRegistry() // GET /metrics serves it
		}
		ck, err := clusterkit.NewClusterKit(o)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ck.Stop() })
		if err := ck.Start(); err != nil {
			t.Fatalf("start %s: %v", id, err)
		}
		nodes[id] = ck
	}
	httpc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	waitFor(t, 10*time.Second, "one map of node-1 and node-2", func() error { return checkCluster(httpc, nodes) })
	// The size monitor's status request needs no permission on any key, only an authenticated
	// user: the gauge holds etcd's answer.
	waitFor(t, 10*time.Second, "the etcd database size from a status request", func() error {
		size, err := metricValue(httpc, nodes["node-1"].AdvertiseAddr(), "clusterkit_etcd_db_size_bytes")
		if err == nil && size <= 0 {
			err = fmt.Errorf("clusterkit_etcd_db_size_bytes is %v", size)
		}
		return err
	})

	// node-2 leaves: node-1 alone in the map, node-2's record and lease gone.
	nodes["node-2"].Stop()
	delete(nodes, "node-2")
	waitFor(t, 10*time.Second, "a map of node-1 alone", func() error { return checkCluster(httpc, nodes) })
	keys := keysUnder(ctx, t, root, prefix)
	if slices.Contains(keys, prefix+"nodes/node-2") || !slices.Contains(keys, prefix+"nodes/node-1") {
		t.Errorf("after node-2 left etcd holds %q; want node-1's record and not node-2's", keys)
	}
	if leases, err := root.Leases(ctx); err != nil || len(leases.Leases) != 1 {
		t.Errorf("after node-2 left etcd holds leases %v (%v), want node-1's alone", leases, err)
	}
	// Nothing a node does, in the foreground or in the background, was refused by etcd.
	if r := refusals(); len(r) > 0 {
		t.Errorf("etcd refused the least-privileged nodes %d times:\n%s", len(r), strings.Join(r, "\n"))
	}
}

// addEtcdUser adds user with a role of the same name that grants perm on the keys from key up
// to rangeEnd (key alone when rangeEnd is empty), as etcdctl role add, role grant-permission,
// user add and user grant-role do, and returns its password.
func addEtcdUser(ctx context.Context, t *testing.T, root *clientv3.Client, user, key, rangeEnd string, perm clientv3.PermissionType) string {
	t.Helper()
	password := randomHex(t)
	if _, err := root.RoleAdd(ctx, user); err != nil {
		t.Fatalf("add role %s: %v", user, err)
	}
	if _, err := root.RoleGrantPermission(ctx, user, key, rangeEnd, perm); err != nil {
		t.Fatalf("grant [%s, %s) to role %s: %v", key, rangeEnd, user, err)
	}
	if _, err := root.UserAdd(ctx, user, password); err != nil {
		t.Fatalf("add user %s: %v", user, err)
	}
	if _, err := root.UserGrantRole(ctx, user, user); err != nil {
		t.Fatalf("grant role %s to user %s: %v", user, user, err)
	}
	return password
}
