package clusterkit

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestOptionsDefaults(t *testing.T) {
	ck, err := NewClusterKit(Options{NodeID: "node-1", HTTPAddr: ":8080"})
	if err != nil {
		t.Fatal(err)
	}
	o := ck.env.opts
	checks := []struct {
		name      string
		got, want any
	}{
		{"PartitionCount", o.PartitionCount, 64},
		{"ReplicationFactor", o.ReplicationFactor, 3},
		{"ClusterName", o.ClusterName, "default"},
		{"LeaseTTL", o.LeaseTTL, 10 * time.Second},
		{"StartTimeout", o.StartTimeout, 30 * time.Second},
		{"ShutdownTimeout", o.ShutdownTimeout, 10 * time.Second},
		{"MaxConcurrentHooks", o.MaxConcurrentHooks, 50},
		{"Weight", o.Weight, 1},
		{"mode", o.mode(), etcdEmbedded},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
	if !strings.HasSuffix(o.DataDir, "/clusterkit/node-1") {
		t.Errorf("DataDir = %q", o.DataDir)
	}
	if ck.GetMyNodeID() != "node-1" {
		t.Errorf("GetMyNodeID = %q", ck.GetMyNodeID())
	}
	// With JoinAddr the cluster name comes from the joined node unless set.
	ck, err = NewClusterKit(Options{NodeID: "node-2", HTTPAddr: ":8081", JoinAddr: "localhost:8080"})
	if err != nil {
		t.Fatal(err)
	}
	if ck.env.opts.ClusterName != "" || ck.env.opts.mode() != etcdJoin {
		t.Errorf("join: ClusterName %q mode %v", ck.env.opts.ClusterName, ck.env.opts.mode())
	}
}

func TestOptionsValidation(t *testing.T) {
	ok := Options{NodeID: "n1", HTTPAddr: ":8080"}
	tests := []struct {
		name  string
		edit  func(*Options)
		field string
	}{
		{"no node ID", func(o *Options) { o.NodeID = "" }, "NodeID"},
		{"slash in node ID", func(o *Options) { o.NodeID = "a/b" }, "NodeID"},
		{"space in node ID", func(o *Options) { o.NodeID = "a b" }, "NodeID"},
		{"no HTTPAddr", func(o *Options) { o.HTTPAddr = "" }, "HTTPAddr"},
		{"HTTPAddr without port", func(o *Options) { o.HTTPAddr = "localhost" }, "HTTPAddr"},
		{"HTTPAddr bad port", func(o *Options) { o.HTTPAddr = ":99999" }, "HTTPAddr"},
		{"JoinAddr without host", func(o *Options) { o.JoinAddr = ":8080" }, "JoinAddr"},
		{"AdvertiseAddr port 0", func(o *Options) { o.AdvertiseAddr = "10.0.0.1:0" }, "AdvertiseAddr"},
		{"negative partitions", func(o *Options) { o.PartitionCount = -1 }, "PartitionCount"},
		{"too many partitions", func(o *Options) { o.PartitionCount = MaxPartitionCount + 1 }, "PartitionCount"},
		{"negative replication", func(o *Options) { o.ReplicationFactor = -3 }, "ReplicationFactor"},
		{"huge replication", func(o *Options) { o.ReplicationFactor = 100 }, "ReplicationFactor"},
		{"TTL under 2s", func(o *Options) { o.LeaseTTL = time.Second }, "LeaseTTL"},
		{"TTL not whole seconds", func(o *Options) { o.LeaseTTL = 2500 * time.Millisecond }, "LeaseTTL"},
		{"negative hooks", func(o *Options) { o.MaxConcurrentHooks = -1 }, "MaxConcurrentHooks"},
		{"negative weight", func(o *Options) { o.Weight = -1 }, "Weight"},
		{"weight over the maximum", func(o *Options) { o.Weight = 2000000000 }, "Weight"},
		{"metadata over the maximum", func(o *Options) { o.Metadata = map[string]string{"blob": strings.Repeat("x", MaxMetadataBytes)} }, "Metadata"},
		{"bad cluster name", func(o *Options) { o.ClusterName = "a/b" }, "ClusterName"},
		{"join and endpoints", func(o *Options) { o.JoinAddr = "h:1"; o.EtcdEndpoints = []string{"http://h:2379"} }, "EtcdClient/EtcdEndpoints/JoinAddr"},
		{"short join token", func(o *Options) { o.JoinToken = "short" }, "JoinToken"},
		{"join token with a space", func(o *Options) { o.JoinToken = "0123456789 abcdef" }, "JoinToken"},
		{"join token on external etcd", func(o *Options) {
			o.JoinToken = "0123456789abcdef"
			o.EtcdEndpoints = []string{"http://h:2379"}
		}, "JoinToken"},
		{"empty endpoint", func(o *Options) { o.EtcdEndpoints = []string{""} }, "EtcdEndpoints"},
		{"user without password", func(o *Options) { o.EtcdEndpoints = []string{"h:2379"}; o.EtcdUsername = "u" }, "EtcdUsername/EtcdPassword"},
		{"negative start timeout", func(o *Options) { o.StartTimeout = -time.Second }, "StartTimeout"},
		{"bad embedded addr", func(o *Options) { o.EmbeddedEtcdClientAddr = "nope" }, "EmbeddedEtcdClientAddr"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := ok
			tt.edit(&o)
			_, err := NewClusterKit(o)
			if !errors.Is(err, ErrInvalidOptions) {
				t.Fatalf("got %v, want ErrInvalidOptions", err)
			}
			if !strings.Contains(err.Error(), ": "+tt.field+":") {
				t.Fatalf("error %q does not name %s", err, tt.field)
			}
		})
	}
}
