package clusterkit

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/clusterkit-go/clusterkit/internal/nextmap"

	"github.com/clusterkit-go/clusterkit/internal/wiretest"
	"github.com/clusterkit-go/clusterkit/pkg/embed"
)

func httpGet(t *testing.T, url string, header map[string]string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}

// NodeID and HTTPAddr alone start a working cluster on an embedded etcd; a second node joins it
// through JoinAddr; the HTTP API serves the cluster in the seed's shape with an epoch ETag.
func TestEmbeddedBootstrapJoinAndHTTP(t *testing.T) {
	dir1 := t.TempDir()
	// One etcd member: the joining nodes are its clients (ha_test.go covers three members).
	ck1, err := NewClusterKit(Options{NodeID: "node-1", HTTPAddr: "127.0.0.1:0", DataDir: dir1, LeaseTTL: 2 * time.Second, EmbeddedMembers: 1, unsafeNoFsync: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := ck1.Start(); err != nil {
		t.Fatal(err)
	}
	defer ck1.Stop()
	if _, err := os.Stat(filepath.Join(dir1, "etcd", "member")); err != nil {
		t.Fatalf("embedded etcd data not in DataDir: %v", err)
	}
	ck2, err := NewClusterKit(Options{NodeID: "node-2", HTTPAddr: "127.0.0.1:0", JoinAddr: ck1.AdvertiseAddr(), DataDir: t.TempDir(), LeaseTTL: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := ck2.Start(); err != nil {
		t.Fatal(err)
	}
	defer ck2.Stop()
	if ck2.members.current() != nil {
		t.Fatal("node-2 runs an etcd member in a cluster created with EmbeddedMembers 1")
	}
	if ck2.env.clusterName != "default" {
		t.Fatalf("joined node's cluster name %q, want default", ck2.env.clusterName)
	}
	waitFor(t, 10*time.Second, "both nodes hold the 2-node map, handoffs done", func() error {
		for _, ck := range []*ClusterKit{ck1, ck2} {
			if s := ck.maps.snapshot(); s == nil || len(s.nodeIDs) != 2 || nextmap.Pending(s.raw) > 0 {
				return io.EOF
			}
		}
		if ck1.Epoch() != ck2.Epoch() {
			return io.EOF
		}
		return nil
	})

	base := "http://" + ck2.AdvertiseAddr()
	resp, body := httpGet(t, base+"/cluster", nil)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("GET /cluster: %s %s", resp.Status, body)
	}
	var got wiretest.Cluster
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatal(err)
	}
	c := got.Cluster
	if c.Epoch != ck2.Epoch() || c.Leader == "" || len(c.Nodes) != 2 || c.Nodes["node-1"].IP != ck1.AdvertiseAddr() {
		t.Fatalf("cluster: epoch %d leader %q nodes %v", c.Epoch, c.Leader, c.Nodes)
	}
	if len(c.PartitionMap) != 64 || got.HashConfig.Algorithm != "md5" || got.HashConfig.Modulo != 64 || got.HashConfig.Format != "partition-%d" {
		t.Fatalf("partition map of %d, hash %+v", len(c.PartitionMap), got.HashConfig)
	}
	p := c.PartitionMap["partition-48"] // user:123
	if p.ID != "partition-48" || p.PrimaryNode == "" || len(p.ReplicaNodes) != 1 || p.ReplicaNodes[0] == p.PrimaryNode {
		t.Fatalf("partition-48: %+v", p)
	}

	// The ETag follows the epoch: same map -> 304, changed map -> 200 with a new tag.
	etag := resp.Header.Get("ETag")
	if !strings.Contains(etag, "-") {
		t.Fatalf("ETag %q", etag)
	}
	resp, _ = httpGet(t, base+"/cluster", map[string]string{"If-None-Match": etag})
	if resp.StatusCode != http.StatusNotModified {
		t.Fatalf("unchanged map: %s, want 304", resp.Status)
	}
	ck3, err := NewClusterKit(Options{NodeID: "node-3", HTTPAddr: "127.0.0.1:0", JoinAddr: ck1.AdvertiseAddr(), DataDir: t.TempDir(), LeaseTTL: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := ck3.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "node-2 sees node-3", func() error {
		if s := ck2.maps.snapshot(); len(s.nodeIDs) != 3 {
			return io.EOF
		}
		return nil
	})
	resp, _ = httpGet(t, base+"/cluster", map[string]string{"If-None-Match": etag})
	if resp.StatusCode != http.StatusOK || resp.Header.Get("ETag") == etag {
		t.Fatalf("changed map: %s with ETag %q (old %q)", resp.Status, resp.Header.Get("ETag"), etag)
	}
	ck3.Stop()

	// The only etcd member cannot leave: the node says so and keeps running.
	dctx, dcancel := context.WithTimeout(context.Background(), 10*time.Second)
	err = ck1.Decommission(dctx)
	dcancel()
	if !errors.Is(err, embed.ErrLastMember) || ck1.members.current() == nil {
		t.Fatalf("decommissioning the only etcd member: %v, want ErrLastMember", err)
	}

	resp, body = httpGet(t, base+"/health", nil)
	var health wiretest.Health
	if err := json.Unmarshal(body, &health); err != nil || resp.StatusCode != http.StatusOK || health.NodeID != "node-2" || health.Status != "ok" {
		t.Fatalf("health: %s %s", resp.Status, body)
	}
	resp, body = httpGet(t, base+"/cluster/join", nil)
	var join wiretest.Join
	if err := json.Unmarshal(body, &join); err != nil || resp.StatusCode != http.StatusOK || len(join.EtcdEndpoints) == 0 || join.ClusterName != "default" {
		t.Fatalf("join info: %s %s", resp.Status, body)
	}
	// Read-only: anything but GET is refused.
	post, err := http.Post(base+"/cluster", "application/json", strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	post.Body.Close()
	if post.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("POST /cluster: %s, want 405", post.Status)
	}
	// Without a join token: no CA to hand out, and POST /cluster/join (secure mode's signing
	// request) is refused like any other write.
	if resp, body := httpGet(t, base+"/cluster/ca", nil); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("GET /cluster/ca without secure mode: %s %s, want 404", resp.Status, body)
	}
	post, err = http.Post(base+"/cluster/join", "application/json", strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	post.Body.Close()
	if post.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("POST /cluster/join without secure mode: %s, want 405", post.Status)
	}
	resp, _ = httpGet(t, base+"/nope", nil)
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("GET /nope: %s", resp.Status)
	}
}

// A JoinAddr where no node answers fails Start within the StartTimeout with an error naming it.
func TestJoinAddrUnreachable(t *testing.T) {
	ck, err := NewClusterKit(Options{NodeID: "node-2", HTTPAddr: "127.0.0.1:0", JoinAddr: "127.0.0.1:1", DataDir: t.TempDir(), StartTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	err = ck.Start()
	if err == nil || !strings.Contains(err.Error(), "127.0.0.1:1") {
		t.Fatalf("got %v, want an error naming the JoinAddr", err)
	}
}

// The HTTP API serves from the moment the node listens, before Start has connected to etcd:
// requests then must neither race with Start nor claim a cluster that is not there yet.
func TestHTTPDuringStart(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	ck, err := NewClusterKit(Options{NodeID: "node-1", HTTPAddr: addr, DataDir: t.TempDir(), LeaseTTL: 2 * time.Second, unsafeNoFsync: true})
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	polled := make(chan int)
	go func() {
		unavailable := 0
		for {
			select {
			case <-stop:
				polled <- unavailable
				return
			default:
			}
			for _, path := range []string{"/cluster/join", "/cluster", "/health"} {
				resp, err := http.Get("http://" + addr + path)
				if err != nil {
					continue
				}
				resp.Body.Close()
				if resp.StatusCode == http.StatusServiceUnavailable {
					unavailable++
				}
			}
		}
	}()
	if err := ck.Start(); err != nil {
		t.Fatal(err)
	}
	close(stop)
	t.Logf("%d answers of 503 while starting", <-polled)
	ck.Stop()
}

// A bootstrap node whose DataDir remembers a cluster but lost its etcd data (or was
// decommissioned) refuses to create a new cluster beside the one it belonged to.
func TestBootstrapWithoutEtcdDataRefusesANewCluster(t *testing.T) {
	dir := t.TempDir()
	o := Options{NodeID: "node-1", HTTPAddr: "127.0.0.1:0", DataDir: dir, LeaseTTL: 2 * time.Second, EmbeddedMembers: 1, unsafeNoFsync: true}
	ck, err := NewClusterKit(o)
	if err != nil {
		t.Fatal(err)
	}
	if err := ck.Start(); err != nil {
		t.Fatal(err)
	}
	ck.Stop()
	if err := os.RemoveAll(filepath.Join(dir, "etcd")); err != nil {
		t.Fatal(err)
	}
	ck, err = NewClusterKit(o)
	if err != nil {
		t.Fatal(err)
	}
	err = ck.Start()
	if err == nil || !strings.Contains(err.Error(), "set JoinAddr") {
		t.Errorf("start without the etcd data: %v, want an error that says to set JoinAddr", err)
	}
	ck.Stop()
	if embed.HasData(filepath.Join(dir, "etcd")) {
		t.Error("a new etcd was created")
	}
}
