package client

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/clusterkit-go/clusterkit/internal/etcdtest"
	"github.com/clusterkit-go/clusterkit/internal/partition"
	"github.com/clusterkit-go/clusterkit/pkg/clusterkit"
	"github.com/clusterkit-go/clusterkit/pkg/clustertest"
)

func TestMain(m *testing.M) { os.Exit(etcdtest.RunWithoutLeaks(m)) }

const testPartitions = 32

// testCluster runs ClusterKit nodes in this process (pkg/clustertest). Each node publishes the
// address of a small data service of its own in Metadata["data_addr"]; the service answers
// GET / with the node's ID, and can be closed to play a dead node.
type testCluster struct {
	t    *testing.T
	kit  *clustertest.Cluster
	name string
	etcd *clientv3.Client

	mu   sync.Mutex
	data map[string]*dataService
}

type dataService struct {
	srv    *http.Server
	l      net.Listener
	served chan struct{}
}

func newTestCluster(t *testing.T) *testCluster {
	t.Helper()
	kit := clustertest.New(t, clusterkit.Options{PartitionCount: testPartitions})
	tc := &testCluster{t: t, kit: kit, name: kit.Name(), etcd: kit.Etcd(), data: map[string]*dataService{}}
	// Registered after the kit's cleanup, so it runs first: nodes leave before their data
	// services close.
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
	o := tc.kit.Options(id)
	o.Metadata = map[string]string{"data_addr": l.Addr().String()}
	ck, err := tc.kit.TryStart(o, before...)
	if err != nil {
		ds.close()
		tc.t.Fatalf("start %s: %v", id, err)
	}
	tc.mu.Lock()
	tc.data[id] = ds
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
	ds := tc.data[id]
	delete(tc.data, id)
	tc.mu.Unlock()
	if tc.kit.Node(id) != nil {
		tc.kit.Stop(id)
	}
	ds.close()
}

func (tc *testCluster) stopAll() {
	tc.mu.Lock()
	ids := make([]string, 0, len(tc.data))
	for id := range tc.data {
		ids = append(ids, id)
	}
	tc.mu.Unlock()
	for _, id := range ids {
		tc.stop(id)
	}
}

// settled waits until the cluster has converged (pkg/clustertest: every node holds the same
// map, every partition fully held, no copy in progress) and returns its epoch.
func (tc *testCluster) settled(within time.Duration) uint64 {
	tc.t.Helper()
	tc.kit.WaitConverged(within)
	for _, ck := range tc.kit.Nodes() {
		return ck.Epoch()
	}
	return 0
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
