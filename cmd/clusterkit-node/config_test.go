package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"

	"github.com/clusterkit-go/clusterkit/internal/etcdtest"
	"github.com/clusterkit-go/clusterkit/pkg/clusterkit"
)

// env is a fake environment for parseConfig.
type env map[string]string

func (e env) lookup(name string) (string, bool) {
	v, ok := e[name]
	return v, ok
}

// minimal is the smallest valid environment.
func minimal(extra env) env {
	e := env{"NODE_ID": "node-1", "HTTP_PORT": "8080"}
	for k, v := range extra {
		e[k] = v
	}
	return e
}

func TestParseConfig(t *testing.T) {
	dir := t.TempDir()
	certs := etcdtest.WriteCerts(t, dir)
	caFile, certFile, keyFile := certs.CAFile, certs.CertFile, certs.KeyFile
	garbage := filepath.Join(dir, "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name string
		env  env
		args []string
		// check inspects a valid configuration; wantErr lists what the error must mention.
		check   func(t *testing.T, c *config)
		wantErr []string
	}{
		{
			name: "minimal, as in the Docker section",
			env:  minimal(nil),
			check: func(t *testing.T, c *config) {
				o := c.opts
				if o.NodeID != "node-1" || o.HTTPAddr != ":8080" {
					t.Errorf("NodeID %q HTTPAddr %q, want node-1 and :8080", o.NodeID, o.HTTPAddr)
				}
				if o.DataDir != "" || o.PartitionCount != 0 || o.LeaseTTL != 0 || o.EtcdTLS != nil || o.EtcdEndpoints != nil {
					t.Errorf("unset settings are not left to the Options defaults: %+v", o)
				}
				if c.drain || c.logLevel != zapcore.InfoLevel {
					t.Errorf("drain %v, log level %v; want false, info", c.drain, c.logLevel)
				}
			},
		},
		{
			name: "every setting from the environment",
			env: env{
				"NODE_ID": "node-2", "HTTP_ADDR": "127.0.0.1:9000", "ADVERTISE_ADDR": "node-2:9000",
				"JOIN_ADDR": "node-1:8080", "DATA_DIR": "/data", "CLUSTER_NAME": "orders",
				"PARTITION_COUNT": "32", "REPLICATION_FACTOR": "2", "LEASE_TTL": "5s",
				"ETCD_ENDPOINTS": " http://a:2379, http://b:2379 ", "ETCD_USERNAME": "ck", "ETCD_PASSWORD": "secret",
				"ETCD_CA_FILE": caFile, "ETCD_CERT_FILE": certFile, "ETCD_KEY_FILE": keyFile,
				"ZONE": "eu-1a", "HANDOFF_TIMEOUT": "30s", "CRASH_GRACE_PERIOD": "1m", "LOG_LEVEL": "debug",
				"DRAIN_ON_SIGTERM": "true", "MAX_HANDOFFS_PER_NODE": "4", "MAX_HANDOFFS": "0",
			},
			check: func(t *testing.T, c *config) {
				o := c.opts
				got := []any{o.NodeID, o.HTTPAddr, o.AdvertiseAddr, o.JoinAddr, o.DataDir, o.ClusterName,
					o.PartitionCount, o.ReplicationFactor, o.LeaseTTL, o.EtcdUsername, o.EtcdPassword, o.Zone,
					o.HandoffTimeout, o.CrashGracePeriod, c.logLevel, c.drain, o.MaxHandoffsPerNode, o.MaxHandoffs}
				want := []any{"node-2", "127.0.0.1:9000", "node-2:9000", "node-1:8080", "/data", "orders",
					32, 2, 5 * time.Second, "ck", "secret", "eu-1a",
					30 * time.Second, time.Minute, zapcore.DebugLevel, true, 4, 0}
				if !slices.Equal(got, want) {
					t.Errorf("got  %v\nwant %v", got, want)
				}
				if !slices.Equal(o.EtcdEndpoints, []string{"http://a:2379", "http://b:2379"}) {
					t.Errorf("EtcdEndpoints %q", o.EtcdEndpoints)
				}
				if o.EtcdTLS == nil || o.EtcdTLS.RootCAs == nil || len(o.EtcdTLS.Certificates) != 1 {
					t.Errorf("EtcdTLS %+v: want the CA and one client certificate", o.EtcdTLS)
				}
			},
		},
		{
			name: "flags override the environment",
			env:  minimal(env{"LEASE_TTL": "10s", "DRAIN_ON_SIGTERM": "true", "ETCD_ENDPOINTS": "http://env:2379"}),
			args: []string{"-node-id", "node-9", "-lease-ttl", "3s", "-drain=false", "-etcd-endpoints", "http://flag:2379"},
			check: func(t *testing.T, c *config) {
				if c.opts.NodeID != "node-9" || c.opts.LeaseTTL != 3*time.Second || c.drain ||
					!slices.Equal(c.opts.EtcdEndpoints, []string{"http://flag:2379"}) {
					t.Errorf("flags did not win: %+v drain=%v", c.opts, c.drain)
				}
			},
		},
		{
			name: "-drain alone",
			env:  minimal(nil),
			args: []string{"-drain"},
			check: func(t *testing.T, c *config) {
				if !c.drain {
					t.Error("-drain did not turn draining on")
				}
			},
		},
		{
			name: "decommission and embedded members",
			env:  minimal(env{"DECOMMISSION_ON_SIGTERM": "true", "EMBEDDED_MEMBERS": "5"}),
			check: func(t *testing.T, c *config) {
				if !c.decommission || c.drain || c.opts.EmbeddedMembers != 5 {
					t.Errorf("decommission %v, drain %v, embedded members %d; want true, false, 5", c.decommission, c.drain, c.opts.EmbeddedMembers)
				}
			},
		},
		{
			name: "an HTTP_ADDR flag beats an HTTP_PORT variable",
			env:  minimal(nil),
			args: []string{"-http-addr", "127.0.0.1:7000"},
			check: func(t *testing.T, c *config) {
				if c.opts.HTTPAddr != "127.0.0.1:7000" {
					t.Errorf("HTTPAddr %q", c.opts.HTTPAddr)
				}
			},
		},
		{
			name: "an empty variable counts as unset",
			env:  minimal(env{"DATA_DIR": "", "JOIN_ADDR": ""}),
			check: func(t *testing.T, c *config) {
				if c.opts.DataDir != "" || c.opts.JoinAddr != "" {
					t.Errorf("DataDir %q JoinAddr %q", c.opts.DataDir, c.opts.JoinAddr)
				}
			},
		},
		{
			name:    "nothing set: both required settings are named",
			env:     env{},
			wantErr: []string{"NODE_ID: required", "HTTP_PORT or HTTP_ADDR: required"},
		},
		{
			name:    "HTTP_PORT and HTTP_ADDR contradict each other",
			env:     minimal(env{"HTTP_ADDR": ":9000"}),
			wantErr: []string{"HTTP_ADDR: set either HTTP_ADDR or HTTP_PORT"},
		},
		{
			name:    "port out of range",
			env:     minimal(env{"HTTP_PORT": "70000"}),
			wantErr: []string{`HTTP_PORT: "70000" is not a port number`},
		},
		{
			name: "every malformed number, duration and boolean is named",
			env: minimal(env{"PARTITION_COUNT": "many", "REPLICATION_FACTOR": "0", "LEASE_TTL": "2",
				"HANDOFF_TIMEOUT": "0s", "CRASH_GRACE_PERIOD": "soon", "DRAIN_ON_SIGTERM": "yes please", "LOG_LEVEL": "loud",
				"MAX_HANDOFFS_PER_NODE": "-1", "MAX_HANDOFFS": "lots"}),
			wantErr: []string{
				"MAX_HANDOFFS_PER_NODE: -1 is negative",
				`MAX_HANDOFFS: "lots" is not an integer`,
				`PARTITION_COUNT: "many" is not an integer`,
				"REPLICATION_FACTOR: 0 is not positive",
				`LEASE_TTL: "2" is not a duration`,
				"HANDOFF_TIMEOUT: 0s is not positive",
				`CRASH_GRACE_PERIOD: "soon" is not a duration`,
				`DRAIN_ON_SIGTERM: "yes please" is not a boolean`,
				`LOG_LEVEL: "loud" is not a log level`,
			},
		},
		{
			name:    "a malformed flag is named as the flag",
			env:     minimal(nil),
			args:    []string{"-partition-count", "x"},
			wantErr: []string{`-partition-count: "x" is not an integer`},
		},
		{
			name:    "empty endpoint",
			env:     minimal(env{"ETCD_ENDPOINTS": "http://a:2379,,http://b:2379"}),
			wantErr: []string{"ETCD_ENDPOINTS: ", "empty endpoint"},
		},
		{
			name:    "missing TLS files",
			env:     minimal(env{"ETCD_CA_FILE": filepath.Join(dir, "none.pem"), "ETCD_CERT_FILE": filepath.Join(dir, "none.crt"), "ETCD_KEY_FILE": keyFile}),
			wantErr: []string{"ETCD_CA_FILE: open ", "ETCD_CERT_FILE: stat ", "no such file"},
		},
		{
			name:    "a CA file without a certificate",
			env:     minimal(env{"ETCD_CA_FILE": garbage}),
			wantErr: []string{"ETCD_CA_FILE: " + garbage + " holds no PEM certificate"},
		},
		{
			name:    "a client certificate without its key",
			env:     minimal(env{"ETCD_CERT_FILE": certFile}),
			wantErr: []string{"ETCD_KEY_FILE: required with ETCD_CERT_FILE"},
		},
		{
			name:    "a key that does not match the certificate",
			env:     minimal(env{"ETCD_CERT_FILE": certFile, "ETCD_KEY_FILE": garbage}),
			wantErr: []string{"ETCD_CERT_FILE and ETCD_KEY_FILE: "},
		},
		{
			name:    "unknown flag",
			env:     minimal(nil),
			args:    []string{"-nodeid", "x"},
			wantErr: []string{"command line: flag provided but not defined: -nodeid"},
		},
		{
			name:    "positional argument",
			env:     minimal(nil),
			args:    []string{"node-1"},
			wantErr: []string{`command line: unexpected argument "node-1"`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := parseConfig(tt.env.lookup, tt.args)
			if tt.wantErr != nil {
				if err == nil {
					t.Fatalf("no error; want one mentioning %q", tt.wantErr)
				}
				for _, want := range tt.wantErr {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("error %q does not mention %q", err, want)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, c)
		})
	}
}

// The Options checks stay in clusterkit.NewClusterKit; their errors are prefixed with the
// setting to change, as the user gave it.
func TestExplainOptionsErrors(t *testing.T) {
	tests := []struct {
		name string
		env  env
		args []string
		want string
	}{
		{"lease TTL in fractions of a second", minimal(env{"LEASE_TTL": "1500ms"}), nil, "LEASE_TTL: clusterkit: invalid options: LeaseTTL"},
		{"the flag is named when the flag was given", minimal(nil), []string{"-lease-ttl", "1s"}, "-lease-ttl: clusterkit: invalid options: LeaseTTL"},
		{"too many partitions", minimal(env{"PARTITION_COUNT": "70000"}), nil, "PARTITION_COUNT: clusterkit: invalid options: PartitionCount"},
		{"bad node ID", env{"NODE_ID": "a/b", "HTTP_ADDR": ":8080"}, nil, "NODE_ID: clusterkit: invalid options: NodeID"},
		{"node ID with '='", env{"NODE_ID": "a=b", "HTTP_ADDR": ":8080"}, nil, "NODE_ID: clusterkit: invalid options: NodeID"},
		{"node ID that escapes DATA_DIR", env{"NODE_ID": "..", "HTTP_ADDR": ":8080"}, nil, "NODE_ID: clusterkit: invalid options: NodeID"},
		{"cluster name with '/'", minimal(env{"CLUSTER_NAME": "a/b"}), nil, "CLUSTER_NAME: clusterkit: invalid options: ClusterName"},
		{"handoff timeout of 1ms", minimal(env{"HANDOFF_TIMEOUT": "1ms"}), nil, "HANDOFF_TIMEOUT: clusterkit: invalid options: HandoffTimeout"},
		{"lease TTL of an hour", minimal(env{"LEASE_TTL": "1h"}), nil, "LEASE_TTL: clusterkit: invalid options: LeaseTTL"},
		{"grace period of a week", minimal(env{"CRASH_GRACE_PERIOD": "168h"}), nil, "CRASH_GRACE_PERIOD: clusterkit: invalid options: CrashGracePeriod"},
		{"bad HTTP address", env{"NODE_ID": "a", "HTTP_ADDR": "8080"}, nil, "HTTP_ADDR: clusterkit: invalid options: HTTPAddr"},
		{"endpoints and join address", minimal(env{"ETCD_ENDPOINTS": "http://a:2379", "JOIN_ADDR": "b:8080"}), nil,
			"ETCD_ENDPOINTS, JOIN_ADDR: clusterkit: invalid options"},
		{"password without user", minimal(env{"ETCD_PASSWORD": "x"}), nil, "ETCD_USERNAME, ETCD_PASSWORD: clusterkit: invalid options"},
		{"negative grace period", minimal(env{"CRASH_GRACE_PERIOD": "-1s"}), nil, "CRASH_GRACE_PERIOD: clusterkit: invalid options: CrashGracePeriod"},
		{"even embedded member count", minimal(env{"EMBEDDED_MEMBERS": "2"}), nil, "EMBEDDED_MEMBERS: clusterkit: invalid options: EmbeddedMembers: 2 is not 1, 3 or 5"},
		{"embedded members with external etcd", minimal(env{"EMBEDDED_MEMBERS": "3", "ETCD_ENDPOINTS": "http://a:2379"}), nil,
			"EMBEDDED_MEMBERS: clusterkit: invalid options: EmbeddedMembers: applies to embedded etcd only"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := parseConfig(tt.env.lookup, tt.args)
			if err != nil {
				t.Fatal(err)
			}
			_, err = clusterkit.NewClusterKit(c.opts)
			if !errors.Is(err, clusterkit.ErrInvalidOptions) {
				t.Fatalf("NewClusterKit: %v; want an ErrInvalidOptions", err)
			}
			got := c.explain(err)
			if !strings.HasPrefix(got.Error(), tt.want) || !errors.Is(got, clusterkit.ErrInvalidOptions) {
				t.Errorf("explained as %q; want the prefix %q, still wrapping ErrInvalidOptions", got, tt.want)
			}
		})
	}

	c, err := parseConfig(minimal(env{"PARTITION_COUNT": "32"}).lookup, nil)
	if err != nil {
		t.Fatal(err)
	}
	mismatch := &clusterkit.ConfigMismatchError{Setting: "PartitionCount", Local: 32, Cluster: 64}
	if got := c.explain(mismatch).Error(); !strings.HasPrefix(got, "PARTITION_COUNT: clusterkit: PartitionCount is 32 here") {
		t.Errorf("config mismatch explained as %q", got)
	}
	refused := fmt.Errorf("%w: etcd at [http://etcd:2379] refuses user %q with this password", clusterkit.ErrEtcdAuthFailed, "ck")
	if got := c.explain(refused); !strings.HasPrefix(got.Error(), "ETCD_USERNAME, ETCD_PASSWORD: clusterkit: etcd authentication failed") ||
		!errors.Is(got, clusterkit.ErrEtcdAuthFailed) {
		t.Errorf("credentials etcd refuses explained as %q, want it to name ETCD_USERNAME and ETCD_PASSWORD", got)
	}
}

// JOIN_ADDR naming the node itself makes it the bootstrap node, so that the replicas of a
// StatefulSet can share one template whose JOIN_ADDR names pod 0.
func TestSelfJoinBootstraps(t *testing.T) {
	const pod0 = "clusterkit-0.clusterkit-headless.prod.svc.cluster.local:8080"
	tests := []struct {
		name string
		env  env
		// wantJoin is the JoinAddr the node starts with: "" means it bootstraps.
		wantJoin string
	}{
		{"pod 0 of the StatefulSet", env{"NODE_ID": "clusterkit-0", "HTTP_PORT": "8080", "ADVERTISE_ADDR": pod0, "JOIN_ADDR": pod0}, ""},
		{"pod 1 joins pod 0", env{"NODE_ID": "clusterkit-1", "HTTP_PORT": "8080",
			"ADVERTISE_ADDR": "clusterkit-1.clusterkit-headless.prod.svc.cluster.local:8080", "JOIN_ADDR": pod0}, pod0},
		{"host names ignore case and a trailing dot", env{"NODE_ID": "n", "HTTP_PORT": "8080",
			"ADVERTISE_ADDR": "Node-1.Example.:8080", "JOIN_ADDR": "node-1.example:8080"}, ""},
		{"same host, other port", env{"NODE_ID": "n", "HTTP_PORT": "8081", "ADVERTISE_ADDR": "node-1:8081", "JOIN_ADDR": "node-1:8080"}, "node-1:8080"},
		{"a different name for the same machine is not recognised", env{"NODE_ID": "n", "HTTP_PORT": "8080",
			"ADVERTISE_ADDR": "node-1:8080", "JOIN_ADDR": "node-1.local:8080"}, "node-1.local:8080"},
		{"no ADVERTISE_ADDR: the HTTP port on 127.0.0.1", env{"NODE_ID": "n", "HTTP_PORT": "8080", "JOIN_ADDR": "localhost:8080"}, ""},
		{"no ADVERTISE_ADDR: another local port joins", env{"NODE_ID": "n", "HTTP_PORT": "8081", "JOIN_ADDR": "127.0.0.1:8080"}, "127.0.0.1:8080"},
		{"HTTP_ADDR with a host", env{"NODE_ID": "n", "HTTP_ADDR": "10.1.2.3:9000", "JOIN_ADDR": "10.1.2.3:9000"}, ""},
		{"IPv6 loopback", env{"NODE_ID": "n", "HTTP_ADDR": "[::1]:9000", "JOIN_ADDR": "127.0.0.1:9000"}, ""},
		{"port 0: own address unknown", env{"NODE_ID": "n", "HTTP_ADDR": "127.0.0.1:0", "JOIN_ADDR": "127.0.0.1:0"}, "127.0.0.1:0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := parseConfig(tt.env.lookup, nil)
			if err != nil {
				t.Fatal(err)
			}
			if c.opts.JoinAddr != tt.wantJoin {
				t.Errorf("JoinAddr %q, want %q", c.opts.JoinAddr, tt.wantJoin)
			}
			if bootstrap := tt.wantJoin == ""; bootstrap != (c.selfJoin != "") || bootstrap && c.selfJoin != tt.env["JOIN_ADDR"] {
				t.Errorf("selfJoin %q; bootstrapping: %v", c.selfJoin, bootstrap)
			}
		})
	}

	// With etcd endpoints, a self JOIN_ADDR is not dropped: the contradiction is reported.
	c, err := parseConfig(env{"NODE_ID": "n", "HTTP_PORT": "8080", "ADVERTISE_ADDR": "n:8080", "JOIN_ADDR": "n:8080",
		"ETCD_ENDPOINTS": "http://etcd:2379"}.lookup, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := clusterkit.NewClusterKit(c.opts); err == nil || !strings.HasPrefix(c.explain(err).Error(), "ETCD_ENDPOINTS, JOIN_ADDR: ") {
		t.Errorf("self JOIN_ADDR with ETCD_ENDPOINTS: %v; want the contradiction named", err)
	}
	// An invalid JOIN_ADDR is never mistaken for the node itself.
	c, err = parseConfig(env{"NODE_ID": "n", "HTTP_PORT": "8080", "JOIN_ADDR": "8080"}.lookup, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := clusterkit.NewClusterKit(c.opts); err == nil || !strings.HasPrefix(c.explain(err).Error(), "JOIN_ADDR: ") {
		t.Errorf("JOIN_ADDR 8080: %v; want it named as invalid", err)
	}
}
