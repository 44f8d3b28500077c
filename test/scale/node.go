package main

// The measured node, in this process or in one of its own: what the harness asks of a node
// (the map it holds, whether it leads, a graceful stop, a kill, what it read and how much
// memory it took), and the node run in this process with an etcd client of its own whose
// received bytes are counted.

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/stats"

	"github.com/clusterkit-go/clusterkit/internal/crash"
	"github.com/clusterkit-go/clusterkit/pkg/clusterkit"
)

// node is one measured node. Its methods are called from the harness's goroutine, except epoch,
// which the arrival recorder calls from its own while the harness changes the cluster.
type node interface {
	id() string
	// epoch is the epoch of the map the node holds, 0 before the first.
	epoch(ctx context.Context) (uint64, error)
	leads(ctx context.Context) (bool, error)
	// stop makes the node leave gracefully and waits until it has.
	stop() error
	// kill stops the node as kill -9 would: nothing is said to etcd, and its lease stays until
	// it expires or is revoked.
	kill() error
	// received is the bytes the node has received from etcd so far, or -1 when not counted.
	received() int64
	// peakRSS is the peak resident memory of the node's own process so far; 0 for a node in this
	// process, where only the process total is known.
	peakRSS() (int64, error)
	clusterBody(ctx context.Context) (int, error)
}

// nodeSettings are the settings of every node the harness starts.
type nodeSettings struct {
	partitions  int
	replication int
	// startTimeout bounds Start (the scenario's timeout).
	startTimeout time.Duration
	endpoints    []string
}

// leaseTTL is the LeaseTTL of every node: the measurements use 5s.
const leaseTTL = 5 * time.Second

// inprocNode is a node in this process with an etcd client of its own, which it is given and
// does not close: the node closes it when it stops or is killed.
type inprocNode struct {
	ck     *clusterkit.ClusterKit
	client *clientv3.Client
	read   *readCounter
}

// startInproc starts node id in this process, with hooks that do nothing, and waits for Start.
func startInproc(ctx context.Context, s nodeSettings, dir, id string) (*inprocNode, error) {
	read := &readCounter{}
	client, err := clientv3.New(clientv3.Config{
		Endpoints:   s.endpoints,
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
		DialOptions: []grpc.DialOption{grpc.WithStatsHandler(read)},
	})
	if err != nil {
		return nil, fmt.Errorf("%s: etcd client: %w", id, err)
	}
	ck, err := clusterkit.NewClusterKit(clusterkit.Options{
		NodeID:            id,
		HTTPAddr:          "127.0.0.1:0",
		DataDir:           filepath.Join(dir, id),
		ClusterName:       clusterName,
		PartitionCount:    s.partitions,
		ReplicationFactor: s.replication,
		LeaseTTL:          leaseTTL,
		StartTimeout:      s.startTimeout,
		EtcdClient:        client,
	})
	if err != nil {
		client.Close()
		return nil, err
	}
	ck.OnPartitionChange(func(string, []*clusterkit.Node, *clusterkit.Node) {})
	if err := ck.StartContext(ctx); err != nil {
		// A failed Start has undone itself.
		client.Close()
		return nil, fmt.Errorf("%s: %w", id, err)
	}
	return &inprocNode{ck: ck, client: client, read: read}, nil
}

func (n *inprocNode) id() string { return n.ck.GetMyNodeID() }

func (n *inprocNode) epoch(context.Context) (uint64, error) { return n.ck.Epoch(), nil }

func (n *inprocNode) leads(context.Context) (bool, error) { return n.ck.IsLeader(), nil }

func (n *inprocNode) stop() error {
	err := n.ck.Stop()
	n.client.Close()
	return err
}

// kill ends the node's goroutines without a word to etcd, then closes its client, which ends the
// lease keepalives a client runs on its own.
func (n *inprocNode) kill() error {
	if !crash.Stop(n.ck) {
		return errors.New("cannot kill an in-process node")
	}
	n.client.Close()
	return nil
}

func (n *inprocNode) received() int64 { return n.read.bytes.Load() }

func (n *inprocNode) peakRSS() (int64, error) { return 0, nil }

func (n *inprocNode) clusterBody(context.Context) (int, error) {
	w := httptest.NewRecorder()
	n.ck.Handler().ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/cluster", nil))
	if w.Code != http.StatusOK {
		return 0, fmt.Errorf("GET /cluster: %d %s", w.Code, strings.TrimSpace(w.Body.String()))
	}
	return w.Body.Len(), nil
}

// readCounter is a gRPC stats handler that counts the bytes of the messages a client receives:
// each message's payload and its 5-byte gRPC frame header, not HTTP/2's framing. Safe for
// concurrent use.
type readCounter struct {
	bytes atomic.Int64
}

func (r *readCounter) HandleRPC(_ context.Context, s stats.RPCStats) {
	if in, ok := s.(*stats.InPayload); ok {
		r.bytes.Add(int64(in.WireLength))
	}
}

func (r *readCounter) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context { return ctx }

func (r *readCounter) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context {
	return ctx
}

func (r *readCounter) HandleConn(context.Context, stats.ConnStats) {}
