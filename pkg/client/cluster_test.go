package client

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clusterkit-go/clusterkit/internal/etcdtest"
	"github.com/clusterkit-go/clusterkit/internal/partition"
	"github.com/clusterkit-go/clusterkit/pkg/clusterkit"
)

func TestMain(m *testing.M) { os.Exit(etcdtest.RunWithoutLeaks(m)) }

const testPartitions = 32

// testCluster runs ClusterKit nodes in this process on one real etcd. Each node publishes the
// address of a small data service of its own in Metadata["data_addr"]; the service answers
// GET / with the node's ID, and can be closed to play a dead node.
type testCluster struct {
	t    *testing.T
	etcd *etcdtest.Server
	name string

	mu    sync.Mutex
	nodes map[string]*clusterkit.ClusterKit
	data  map[string]*dataService
}

type dataService struct {
	srv    *http.Server
	l      net.Listener
	served chan struct{}
}

func newTestCluster(t *testing.T) *testCluster {
	t.Helper()
	tc := &testCluster{
		t:     t,
		etcd:  etcdtest.Start(t),
		name:  strings.ReplaceAll(t.Name(), "/", "_"),
		nodes: map[string]*clusterkit.ClusterKit{},
		data:  map[string]*dataService{},
	}
	t.Cleanup(tc.stopAll)
	return tc
}

// start starts a node; before is called before its Start (to register hooks).
func (tc *testCluster) start(id string, before ...func(*clusterkit.ClusterKit)) *clusterkit.ClusterKit {
	tc.t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tc.t.Fatal(err)
	}
	ds := &dataService{l: l, served: make(chan struct{})}
	ds.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, id)
	})}
	go func() { defer close(ds.served); ds.srv.Serve(l) }()
	ck, err := clusterkit.NewClusterKit(clusterkit.Options{
		NodeID:         id,
		HTTPAddr:       "127.0.0.1:0",
		EtcdClient:     tc.etcd.Client,
		ClusterName:    tc.name,
		PartitionCount: testPartitions,
		LeaseTTL:       2 * time.Second,
		StartTimeout:   20 * time.Second,
		DataDir:        tc.t.TempDir(),
		Metadata:       map[string]string{"data_addr": l.Addr().String()},
	})
	if err != nil {
		tc.t.Fatal(err)
	}
	for _, f := range before {
		f(ck)
	}
	if err := ck.Start(); err != nil {
		ds.close()
		tc.t.Fatalf("start %s: %v", id, err)
	}
	tc.mu.Lock()
	tc.nodes[id], tc.data[id] = ck, ds
	tc.mu.Unlock()
	return ck
}

func (ds *dataService) close() {
	ds.srv.Close()
	<-ds.served
}

// closeData closes a node's data service: its port refuses connections from then on.
func (tc *testCluster) closeData(id string) {
	tc.mu.Lock()
	ds := tc.data[id]
	tc.mu.Unlock()
	ds.close()
}

func (tc *testCluster) stop(id string) {
	tc.mu.Lock()
	ck, ds := tc.nodes[id], tc.data[id]
	delete(tc.nodes, id)
	delete(tc.data, id)
	tc.mu.Unlock()
	ck.Stop()
	ds.close()
}

func (tc *testCluster) stopAll() {
	tc.mu.Lock()
	ids := make([]string, 0, len(tc.nodes))
	for id := range tc.nodes {
		ids = append(ids, id)
	}
	tc.mu.Unlock()
	for _, id := range ids {
		tc.stop(id)
	}
}

// settled waits until every node holds the same map with no copy in progress, and returns its
// epoch.
func (tc *testCluster) settled(within time.Duration) uint64 {
	tc.t.Helper()
	var epoch uint64
	waitFor(tc.t, within, "cluster settled", func() error {
		tc.mu.Lock()
		defer tc.mu.Unlock()
		epoch = 0
		for id, ck := range tc.nodes {
			if epoch != 0 && ck.Epoch() != epoch {
				return fmt.Errorf("%s at epoch %d, another at %d", id, ck.Epoch(), epoch)
			}
			epoch = ck.Epoch()
			holders := map[string]bool{}
			for _, key := range partitionKeys {
				p, err := ck.GetPartition(key)
				if err != nil {
					return err
				}
				if len(p.PendingNodes) > 0 {
					return fmt.Errorf("%s: %s still moving", id, p.ID)
				}
				for _, n := range ck.GetNodes(p) {
					holders[n.ID] = true
				}
			}
			for other := range tc.nodes {
				if !holders[other] {
					return fmt.Errorf("%s at epoch %d gives %s nothing", id, epoch, other)
				}
			}
		}
		return nil
	})
	return epoch
}

// partitionKeys[i] is a key of partition-i.
var partitionKeys = func() []string {
	keys := make([]string, testPartitions)
	for n, found := 0, 0; found < testPartitions; n++ {
		k := fmt.Sprintf("key-%d", n)
		if i := partition.Index(k, testPartitions); keys[i] == "" {
			keys[i] = k
			found++
		}
	}
	return keys
}()

// waitFor polls cond until it holds, failing the test after within.
var waitFor = etcdtest.WaitFor

func newClient(t *testing.T, cfg Config) *Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// getData is the operation the tests run through Do: GET / on the node's data service.
func getData(httpc *http.Client) func(ctx context.Context, n Node, r Route) error {
	return func(ctx context.Context, n Node, r Route) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+n.Metadata["data_addr"]+"/", nil)
		if err != nil {
			return err
		}
		resp, err := httpc.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			return err
		}
		if resp.StatusCode == http.StatusServiceUnavailable {
			return fmt.Errorf("%s: %w", n.ID, ErrUnavailable)
		}
		if string(body) != n.ID {
			return fmt.Errorf("data service of %s answered %q", n.ID, body)
		}
		return nil
	}
}
