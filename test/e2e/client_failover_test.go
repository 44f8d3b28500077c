package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clusterkit-go/clusterkit/internal/proctest"
	"github.com/clusterkit-go/clusterkit/pkg/client"
)

const (
	// clientTrials is how many primaries are killed under the client's loop.
	clientTrials = 20
	// mapTrials of them also wait for the map to name another primary before the restart.
	mapTrials = 3
	// recoveryBound is the generous bound every trial must recover within.
	recoveryBound = 10 * time.Second
	// failoverP99 is the README's bound on the client's failover time: the p99 of the trials
	// (with 20 trials, the slowest) must stay below it, with 0 failed operations.
	failoverP99 = 100 * time.Millisecond
	// raceFailoverP99 is the bound for programs built with the race detector, which slows the
	// nodes' and the client's code several times over: 98-151 ms were measured on 2 shared cores.
	raceFailoverP99 = 300 * time.Millisecond
)

// A client (pkg/client) runs GET /health through Do in a tight loop on a key whose primary is
// then killed with SIGKILL; the time from the kill to the next successful operation on that key
// is the client's failover time. Five node processes share an etcd process; each victim is
// restarted with its DATA_DIR and back in every node's map before the next trial, and the
// victims rotate over the nodes. No operation may fail, and the p99 of the failover times must
// stay below failoverP99 (raceFailoverP99 under the race detector).
func TestClientFailover(t *testing.T) {
	began := time.Now()
	bin := buildNodeBinary(t)
	etcd := startPlainEtcdProcess(t)
	c := newFailoverCluster(t, bin, etcd.URL)
	for i := 1; i <= 5; i++ {
		c.launch(t, fmt.Sprintf("node-%d", i))
	}
	var seeds []string
	for _, n := range c.nodes {
		n.waitReady(t)
		seeds = append(seeds, n.addr)
	}
	c.waitStable(t, 30*time.Second)
	t.Logf("5 nodes ready in %v (race: %v)", time.Since(began).Round(time.Millisecond), proctest.RaceEnabled)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	cl, err := client.New(ctx, client.Config{Seeds: seeds})
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	// The operation's own transport: a dead node's pooled connection is reset or refused.
	httpc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		DialContext: (&net.Dialer{Timeout: time.Second}).DialContext,
	}}
	defer httpc.CloseIdleConnections()
	health := func(served *string) func(ctx context.Context, n client.Node, r client.Route) error {
		return func(ctx context.Context, n client.Node, r client.Route) error {
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+n.Addr+"/health", nil)
			if err != nil {
				return err
			}
			resp, err := httpc.Do(req)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			io.Copy(io.Discard, resp.Body)
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("%s: %s: %w", n.ID, resp.Status, client.ErrUnavailable)
			}
			*served = n.ID
			return nil
		}
	}

	var recovered, mapSwitch, reaped []time.Duration
	failedOps := 0
	for trial := 0; trial < clientTrials; trial++ {
		want := c.nodes[trial%len(c.nodes)].id
		key, victim := clientVictim(t, c, cl, want)
		waitMap := trial < mapTrials
		res := killUnderLoad(t, cl, key, victim, health, waitMap)
		if res.recovered < 0 {
			t.Fatalf("trial %d: no successful operation on %q within %v of killing %s: last error %v", trial, key, recoveryBound, victim.id, res.lastErr)
		}
		recovered = append(recovered, res.recovered)
		failedOps += res.failed
		if res.failed > 0 {
			t.Errorf("trial %d: %d operations on %q failed; the last: %v", trial, res.failed, key, res.lastErr)
		}
		reaped = append(reaped, res.reaped)
		msg := fmt.Sprintf("trial %d: killed %s, primary of %q (%s); process gone after %v; next success %v after the kill, on %s; %d ops failed",
			trial, victim.id, key, res.partition, res.reaped.Round(10*time.Microsecond), res.recovered.Round(10*time.Microsecond), res.servedBy, res.failed)
		if waitMap {
			if res.mapSwitch < 0 {
				t.Fatalf("trial %d: the client's map still names %s primary of %q %v after the kill", trial, victim.id, key, recoveryBound)
			}
			mapSwitch = append(mapSwitch, res.mapSwitch)
			msg += fmt.Sprintf("; the client's map named a new primary after %v", res.mapSwitch.Round(time.Millisecond))
		}
		t.Log(msg)
		victim.Start(t)
		victim.waitReady(t)
		// The next kill hits a cluster that has its full membership again, not one still
		// taking the restarted node back.
		c.waitStable(t, 30*time.Second)
	}
	p50, p99, worst := percentiles(recovered)
	t.Logf("kill -9 of the primary -> next successful operation through pkg/client, %d trials: p50 %v, p99 %v, max %v; %d operations failed",
		len(recovered), p50, p99, worst, failedOps)
	bound := failoverP99
	if proctest.RaceEnabled {
		bound = raceFailoverP99
	}
	if p99 >= bound {
		t.Errorf("client failover p99 %v (race detector: %v), want below %v; the trials: %v", p99, proctest.RaceEnabled, bound, roundAll(recovered))
	}
	r50, r99, _ := percentiles(reaped)
	t.Logf("kill -9 -> the process gone (its sockets closed): p50 %v, p99 %v: the operations to it fail from then on", r50, r99)
	// What the client itself adds: from the process being gone to the next success (0 when the
	// success came first, the sockets being closed before the process is reaped).
	var reaction []time.Duration
	for i := range recovered {
		reaction = append(reaction, max(0, recovered[i]-reaped[i]))
	}
	a50, a99, _ := percentiles(reaction)
	t.Logf("process gone -> next successful operation: p50 %v, p99 %v", a50, a99)
	m50, _, mmax := percentiles(mapSwitch)
	t.Logf("kill -9 -> the client's map names a new primary (LEASE_TTL %v), %d trials: p50 %v, max %v", failoverTTL, len(mapSwitch), m50, mmax)
	t.Logf("README: | client failover: kill -9 of a primary -> next successful op (e2e, %d trials, 5 nodes, loopback) | p50 %v, p99 %v, max %v | p99 < 100 ms |",
		len(recovered), p50, p99, worst)
}

// clientVictim returns a key whose primary in the client's map is the node want (or, when want
// leads nothing yet, another running node), with every holder running.
func clientVictim(t *testing.T, c *failoverCluster, cl *client.Client, want string) (string, *nodeProcess) {
	t.Helper()
	var fallback string
	for i := 0; i < 10000; i++ {
		key := fmt.Sprintf("failover-%d", i)
		r, err := cl.Route(key)
		if err != nil {
			t.Fatal(err)
		}
		if len(r.Nodes) < 2 || slices.ContainsFunc(r.Nodes, func(n client.Node) bool {
			p := c.byID(n.ID)
			return p == nil || p.State() != proctest.Running
		}) {
			continue
		}
		if r.Primary().ID == want {
			return key, c.byID(want)
		}
		if fallback == "" {
			fallback = key
		}
	}
	if fallback == "" {
		t.Fatal("no key has two running holders in the client's map")
	}
	r, _ := cl.Route(fallback)
	return fallback, c.byID(r.Primary().ID)
}

type trialResult struct {
	partition string
	// recovered is the time from the kill to the next success on another node, -1 if none.
	recovered time.Duration
	servedBy  string
	// failed counts the operations that returned an error, before the kill and after it.
	failed  int
	lastErr error
	// mapSwitch is the time from the kill until the client's map names another primary.
	mapSwitch time.Duration
	// reaped is the time from the kill until the process was gone (waited for).
	reaped time.Duration
}

// killUnderLoad runs op on key in a loop, kills victim once the loop has succeeded on it, and
// measures the time to the next success on another node (and, with waitMap, to the client's
// map naming another primary).
func killUnderLoad(t *testing.T, cl *client.Client, key string, victim *nodeProcess,
	op func(served *string) func(context.Context, client.Node, client.Route) error, waitMap bool) trialResult {
	t.Helper()
	r, _ := cl.Route(key)
	res := trialResult{partition: r.Partition, recovered: -1, mapSwitch: -1}
	ctx, cancel := context.WithTimeout(context.Background(), recoveryBound+5*time.Second)
	defer cancel()
	var killedAt atomic.Int64 // UnixNano; 0 until the kill
	onVictim := make(chan struct{})
	done := make(chan trialResult, 1)
	go func() {
		out := res
		seenVictim := false
		for ctx.Err() == nil {
			var served string
			err := cl.Do(ctx, key, op(&served))
			now := time.Now()
			if err != nil && ctx.Err() == nil {
				out.failed++
				out.lastErr = err
			}
			k := killedAt.Load()
			if k == 0 {
				if err == nil && served == victim.id && !seenVictim {
					seenVictim = true
					close(onVictim)
				}
				continue
			}
			since := now.Sub(time.Unix(0, k))
			if err == nil && served != victim.id && out.recovered < 0 {
				out.recovered, out.servedBy = since, served
			}
			if !waitMap && out.recovered >= 0 {
				break
			}
			if r, _ := cl.Route(key); out.mapSwitch < 0 && r.Primary().ID != victim.id {
				out.mapSwitch = since
			}
			if out.recovered >= 0 && out.mapSwitch >= 0 || since > recoveryBound {
				break
			}
		}
		done <- out
	}()
	select {
	case <-onVictim:
	case <-time.After(recoveryBound):
		cancel()
		<-done
		t.Fatalf("the loop never succeeded on %s, the primary of %q", victim.id, key)
	}
	killedAt.Store(time.Now().UnixNano())
	victim.Kill(t)
	reaped := time.Since(time.Unix(0, killedAt.Load()))
	out := <-done
	out.reaped = reaped
	return out
}

// percentiles returns the nearest-rank p50 and p99 and the maximum, rounded.
func percentiles(ds []time.Duration) (p50, p99, worst time.Duration) {
	if len(ds) == 0 {
		return 0, 0, 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	rank := func(p int) time.Duration { return s[(len(s)*p+99)/100-1] }
	round := func(d time.Duration) time.Duration { return d.Round(10 * time.Microsecond) }
	return round(rank(50)), round(rank(99)), round(s[len(s)-1])
}
