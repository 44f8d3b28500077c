package e2e

import (
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/clusterkit-go/clusterkit/internal/wiretest"
)

// delayProxy forwards TCP to target, delivering the bytes of both directions after delay.
type delayProxy struct {
	l      net.Listener
	target string
	delay  atomic.Int64
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  []net.Conn
}

func (p *delayProxy) serve() {
	for {
		c, err := p.l.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, s)
		p.mu.Unlock()
		p.wg.Add(2)
		go func() { defer p.wg.Done(); p.copyLate(s, c) }()
		go func() { defer p.wg.Done(); p.copyLate(c, s) }()
	}
}

// copyLate copies src to dst, each read delivered delay after it was read.
func (p *delayProxy) copyLate(dst, src net.Conn) {
	type chunk struct {
		at time.Time
		b  []byte
	}
	q := make(chan chunk, 4096)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ch := range q {
			time.Sleep(time.Until(ch.at))
			if _, err := dst.Write(ch.b); err != nil {
				return
			}
		}
	}()
	buf := make([]byte, 64<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			q <- chunk{at: time.Now().Add(time.Duration(p.delay.Load())), b: append([]byte(nil), buf[:n]...)}
		}
		if err != nil {
			break
		}
	}
	close(q)
	<-done
	dst.Close()
}

func (p *delayProxy) close() {
	p.l.Close()
	p.mu.Lock()
	for _, c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// A node whose keepalive answers arrive late must believe its lease gone no later than etcd
// does: while etcd has no record of it, it claims no primary role.
func TestLateKeepaliveAnswersNeverOutliveTheLease(t *testing.T) {
	bin := buildNodeBinary(t)
	etcd := startPlainEtcdProcess(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	px := &delayProxy{l: l, target: etcd.URL[len("http://"):]}
	go px.serve()
	defer px.close()

	c := newFailoverCluster(t, bin, etcd.URL)
	for i := 1; i <= 3; i++ {
		c.launch(t, fmt.Sprintf("node-%d", i))
	}
	// node-4 reaches etcd through the proxy.
	victim := c.launchOnEtcd(t, "node-4", "http://"+l.Addr().String())
	for _, n := range c.nodes {
		n.waitReady(t)
	}
	c.waitStable(t, 30*time.Second)

	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{etcd.URL}, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	key := "/clusterkit/" + c.name + "/nodes/node-4"

	httpc := c.httpc
	var held wiretest.Claims
	if err := fetchJSON(httpc, victim.addr, "/cluster/claims", &held); err != nil {
		t.Fatal(err)
	}
	t.Logf("node-4 holds %d primaries", len(held.Primaries))
	// From now on node-4's requests reach etcd, and etcd's answers reach node-4, 1.5s late:
	// its renewals arrive after the lease has run out.
	px.delay.Store(int64(1500 * time.Millisecond))
	switched := time.Now()
	var recordGone time.Time
	for time.Since(switched) < 8*time.Second {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		resp, err := cli.Get(ctx, key)
		cancel()
		absent := err == nil && len(resp.Kvs) == 0
		if absent && recordGone.IsZero() {
			recordGone = time.Now()
			t.Logf("+%v: node-4's lease expired in etcd (record deleted)", recordGone.Sub(switched).Round(time.Millisecond))
		}
		var a wiretest.Claims
		var h wiretest.Health
		if fetchJSON(httpc, victim.addr, "/cluster/claims", &a) == nil {
			fetchJSON(httpc, victim.addr, "/health", &h)
			if absent && !a.Fenced && len(a.Primaries) > 0 {
				var other wiretest.Cluster
				fetchJSON(httpc, c.nodes[0].addr, "/cluster", &other)
				newer := 0
				for p, e := range a.Primaries {
					if q := other.Cluster.PartitionMap[p]; q.PrimaryNode != "node-4" && q.PrimaryEpoch > e {
						newer++
					}
				}
				t.Errorf("+%v: lease gone %v ago, yet node-4 says fenced=false, lease_valid_for=%s, claims %d primaries; %d of them have a newer primary in node-1's map (epoch %d)",
					time.Since(switched).Round(time.Millisecond), time.Since(recordGone).Round(time.Millisecond), h.LeaseValidFor, len(a.Primaries), newer, other.Cluster.Epoch)
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	if recordGone.IsZero() {
		t.Fatal("node-4's lease never expired: the delay did not take effect")
	}
	px.delay.Store(0)
}
