package e2e

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/clusterkit-go/clusterkit/internal/proctest"
)

// etcdCluster is three etcd members, each its own process, serving clients over plain HTTP on
// 127.0.0.1. A member can be killed and started again with its data. They are killed at the end
// of the test.
type etcdCluster struct {
	members []*etcdMember
	Version string
	// client reaches every member directly; closed at the end of the test.
	client *clientv3.Client
}

// etcdMember is one member of an etcdCluster.
type etcdMember struct {
	name string
	URL  string
	proc *proctest.Process
}

// startEtcdCluster starts three members with the flags in extra added, and waits until each
// answers healthy. A port taken before a member bound it starts the cluster again on new ports.
func startEtcdCluster(t *testing.T, extra ...string) *etcdCluster {
	t.Helper()
	bin := etcdBinary(t)
	major, minor := etcdVersion(t, bin)
	dir := t.TempDir()
	var lastErr error
	for attempt := 1; attempt <= 3; attempt++ {
		c := &etcdCluster{Version: fmt.Sprintf("%d.%d", major, minor)}
		token := "e2e-" + randomHex(t)
		var peers []string
		peerURLs := map[string]string{}
		for i := 1; i <= 3; i++ {
			name := fmt.Sprintf("m%d", i)
			peerURLs[name] = fmt.Sprintf("http://127.0.0.1:%d", proctest.FreePort(t))
			peers = append(peers, name+"="+peerURLs[name])
			c.members = append(c.members, &etcdMember{name: name, URL: fmt.Sprintf("http://127.0.0.1:%d", proctest.FreePort(t))})
		}
		for _, m := range c.members {
			args := []string{
				"--name", m.name,
				"--data-dir", filepath.Join(dir, fmt.Sprintf("%s-%d", m.name, attempt)),
				"--listen-client-urls", m.URL,
				"--advertise-client-urls", m.URL,
				"--listen-peer-urls", peerURLs[m.name],
				"--initial-advertise-peer-urls", peerURLs[m.name],
				"--initial-cluster", strings.Join(peers, ","),
				"--initial-cluster-state", "new",
				"--initial-cluster-token", token,
				"--logger", "zap",
			}
			// etcd 3.4 (Debian's) has no --unsafe-no-fsync; a test etcd never survives a machine crash.
			if major > 3 || major == 3 && minor >= 5 {
				args = append(args, "--unsafe-no-fsync")
			}
			m.proc = proctest.Start(t, fmt.Sprintf("etcd-%s-%d", m.name, attempt), bin, append(args, extra...)...)
		}
		lastErr = nil
		for _, m := range c.members {
			if err := m.waitHealthy(30 * time.Second); err != nil {
				lastErr = err
				break
			}
		}
		if lastErr == nil {
			c.client = c.newClient(t)
			t.Logf("etcd %s (%s): 3 members at %v", c.Version, bin, c.urls())
			return c
		}
		taken := false
		for _, m := range c.members {
			m.proc.Kill(t)
			taken = taken || strings.Contains(m.proc.Log(), "address already in use")
		}
		if !taken {
			break
		}
	}
	t.Fatal(lastErr)
	return nil
}

func (c *etcdCluster) urls() []string {
	var urls []string
	for _, m := range c.members {
		urls = append(urls, m.URL)
	}
	return urls
}

func (c *etcdCluster) newClient(t *testing.T) *clientv3.Client {
	t.Helper()
	cl, err := clientv3.New(clientv3.Config{Endpoints: c.urls(), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatalf("etcd client: %v", err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}

// leader returns the member that says it leads.
func (c *etcdCluster) leader(t *testing.T) *etcdMember {
	t.Helper()
	var found *etcdMember
	waitFor(t, 15*time.Second, "an etcd leader", func() error {
		var errs []string
		for _, m := range c.members {
			if m.proc.State() != proctest.Running {
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			st, err := c.client.Status(ctx, m.URL)
			cancel()
			switch {
			case err != nil:
				errs = append(errs, fmt.Sprintf("%s: %v", m.name, err))
			case st.Leader == st.Header.MemberId:
				found = m
				return nil
			}
		}
		return fmt.Errorf("no member says it leads (%s)", strings.Join(errs, "; "))
	})
	return found
}

// kill kills the member with SIGKILL; restart starts it again with its data and waits until it
// answers healthy.
func (m *etcdMember) kill(t *testing.T) { m.proc.Kill(t) }

func (m *etcdMember) restart(t *testing.T) {
	t.Helper()
	m.proc.Start(t)
	if err := m.waitHealthy(30 * time.Second); err != nil {
		t.Fatal(err)
	}
}

// waitHealthy waits until GET /health of the member answers 200: it serves and knows a leader.
func (m *etcdMember) waitHealthy(within time.Duration) error {
	httpc := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	deadline := time.Now().Add(within)
	for {
		resp, err := httpc.Get(m.URL + "/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("GET /health: %s", resp.Status)
		}
		if m.proc.State() == proctest.Exited {
			return fmt.Errorf("etcd member %s exited with status %d; log:\n%s", m.name, m.proc.ExitStatus(), proctest.Tail(m.proc.Log(), 30))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("etcd member %s at %s not healthy after %v: %v", m.name, m.URL, within, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
