// Package etcdtest starts a real etcd server for tests: an embedded single member on
// 127.0.0.1 with free ports and its data in the test's temporary directory.
package etcdtest

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"
	"go.uber.org/zap"

	"github.com/clusterkit-go/clusterkit/pkg/embed"
)

// Server is a running test etcd.
type Server struct {
	Member *embed.Member
	// Client is connected to the server and closed at the end of the test.
	Client *clientv3.Client
}

// Start starts an etcd member that is stopped when tb ends. fsync is off: a test etcd never
// needs to survive a machine crash.
func Start(tb testing.TB) *Server {
	tb.Helper()
	return StartWith(tb, nil)
}

// StartWith is Start with the member's configuration changed by edit, if not nil (a small quota,
// a longer compaction retention).
func StartWith(tb testing.TB, edit func(*embed.Config)) *Server {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg := embed.Config{
		Name:          "test",
		Dir:           tb.TempDir(),
		ClientAddr:    "127.0.0.1:0",
		PeerAddr:      "127.0.0.1:0",
		UnsafeNoFsync: true,
	}
	if edit != nil {
		edit(&cfg)
	}
	m, err := embed.Start(ctx, cfg)
	// A free port embed picked (port 0) can be taken by another process before etcd binds it:
	// start again, in a new directory, with other ports.
	for try := 1; err != nil && try < 3 && strings.Contains(err.Error(), "address already in use") &&
		strings.HasSuffix(cfg.ClientAddr, ":0") && strings.HasSuffix(cfg.PeerAddr, ":0"); try++ {
		cfg.Dir = tb.TempDir()
		m, err = embed.Start(ctx, cfg)
	}
	if err != nil {
		tb.Fatalf("start etcd: %v", err)
	}
	tb.Cleanup(m.Close)
	c := NewClient(tb, m.Endpoints())
	return &Server{Member: m, Client: c}
}

// NewClient returns a client of endpoints that is closed at the end of the test.
func NewClient(tb testing.TB, endpoints []string) *clientv3.Client {
	tb.Helper()
	c, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		tb.Fatalf("etcd client: %v", err)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}

// Members returns the member list of the etcd cluster c talks to as name -> member ID in hex
// (as etcdctl prints it), with "learner " before the ID of a learner, so that tests compare
// member lists with maps.Equal. It fails the test if etcd does not answer; inside a polled
// condition use MemberList.
func Members(tb testing.TB, c *clientv3.Client) map[string]string {
	tb.Helper()
	out, err := MemberList(c)
	if err != nil {
		tb.Fatalf("etcd member list: %v", err)
	}
	return out
}

// MemberList is Members returning the error, for polled conditions (a member list read during
// a membership change can fail and be retried).
func MemberList(c *clientv3.Client) (map[string]string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	list, err := c.MemberList(ctx)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, m := range list.Members {
		out[m.Name] = strconv.FormatUint(m.ID, 16)
		if m.IsLearner {
			out[m.Name] = "learner " + out[m.Name]
		}
	}
	return out, nil
}

// leakWait bounds how long RunWithoutLeaks waits for goroutines to end. The peer connections
// between embedded etcd members outlive their Close by up to etcd's peer read timeout (5s),
// because etcd's peer server re-arms that deadline on every read; goleak's own retries give up
// sooner.
const leakWait = 10 * time.Second

// ignoreLeaks are the goroutines that etcd's server and client start once per process and
// never stop.
var ignoreLeaks = []goleak.Option{
	goleak.IgnoreTopFunction("go.opencensus.io/stats/view.(*worker).start"),
	goleak.IgnoreAnyFunction("go.etcd.io/etcd/pkg/v3/logutil.(*MergeLogger).outputLoop"),
}

// RunWithoutLeaks runs the tests of m and then, if they passed, fails them if goroutines are
// still running after leakWait, other than the testing package's, those etcd starts once per
// process and those opts ignore. It returns the exit code for os.Exit; every package's TestMain
// is
//
//	func TestMain(m *testing.M) { os.Exit(etcdtest.RunWithoutLeaks(m)) }
func RunWithoutLeaks(m *testing.M, opts ...goleak.Option) int {
	code := m.Run()
	if code != 0 {
		return code
	}
	opts = append(slices.Clip(ignoreLeaks), opts...)
	deadline := time.Now().Add(leakWait)
	for {
		err := goleak.Find(opts...)
		if err == nil {
			return code
		}
		if time.Now().After(deadline) {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			return 1
		}
		time.Sleep(200 * time.Millisecond)
	}
}
