package clusterkit_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clusterkit-go/clusterkit/internal/wiretest"
	"github.com/clusterkit-go/clusterkit/pkg/clusterkit"
	"github.com/clusterkit-go/clusterkit/pkg/clustertest"
)

type mapAnswer struct {
	code int
	body []byte
	err  error
}

// getMap sends GET /cluster/map with the query given, bounded by within.
func getMap(addr, query string, within time.Duration) mapAnswer {
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/cluster/map?"+query, nil)
	if err != nil {
		return mapAnswer{err: err}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return mapAnswer{err: err}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return mapAnswer{code: resp.StatusCode, body: body, err: err}
}

// delta decodes a 200 answer of GET /cluster/map strictly.
func (a mapAnswer) delta(t *testing.T) wiretest.MapDelta {
	t.Helper()
	if a.err != nil || a.code != http.StatusOK {
		t.Fatalf("GET /cluster/map: %d %s %v", a.code, a.body, a.err)
	}
	var d wiretest.MapDelta
	if err := json.Unmarshal(a.body, &d); err != nil {
		t.Fatalf("GET /cluster/map: %v in %s", err, a.body)
	}
	return d
}

// fullMap reads GET /cluster from addr, strictly decoded.
func fullMap(t *testing.T, addr string) wiretest.Cluster {
	t.Helper()
	a := poll(addr, "", "", 5*time.Second)
	if a.err != nil || a.code != http.StatusOK {
		t.Fatalf("GET /cluster: %d %s %v", a.code, a.body, a.err)
	}
	var c wiretest.Cluster
	if err := json.Unmarshal(a.body, &c); err != nil {
		t.Fatal(err)
	}
	return c
}

// mapNodes are GET /cluster's nodes as GET /cluster/map lists them: without the weight and state,
// which follow the operators' actions, not the map.
func mapNodes(nodes map[string]wiretest.Node) map[string]wiretest.Node {
	out := make(map[string]wiretest.Node, len(nodes))
	for id, n := range nodes {
		n.Weight, n.State = 0, ""
		out[id] = n
	}
	return out
}

// sameShown reports whether a and b show the same holders, pending nodes and primary epoch.
func sameShown(a, b wiretest.Partition) bool {
	return a.PrimaryNode == b.PrimaryNode && reflect.DeepEqual(a.ReplicaNodes, b.ReplicaNodes) &&
		reflect.DeepEqual(a.PendingNodes, b.PendingNodes) && a.PrimaryEpoch == b.PrimaryEpoch
}

// GET /cluster/map?since= answers exactly the partitions that changed since that epoch, each as
// GET /cluster shows it, with the whole node table; every partition when since is 0 or a map
// the node never held; 304 when nothing changed; 400 naming a bad parameter; and its long poll
// answers on the next map.
func TestClusterMapSince(t *testing.T) {
	c := clustertest.New(t, clusterkit.Options{PartitionCount: 16, ReplicationFactor: 2})
	c.Add("node-1")
	ck2 := c.Add("node-2")
	c.WaitConverged(10 * time.Second)
	addr := ck2.AdvertiseAddr()
	before := fullMap(t, addr)

	// since=0 (or none): the whole map, as GET /cluster has it.
	for _, q := range []string{"since=0", ""} {
		d := getMap(addr, q, 5*time.Second).delta(t)
		if !d.Full || d.Since != 0 || d.Epoch != before.Cluster.Epoch || d.ID != before.Cluster.ID || d.PartitionCount != 16 ||
			d.HashConfig != before.HashConfig || !reflect.DeepEqual(d.Nodes, mapNodes(before.Cluster.Nodes)) || len(d.Partitions) != 16 {
			t.Fatalf("?%s: %s", q, getMap(addr, q, 5*time.Second).body)
		}
		for _, p := range d.Partitions {
			if want := before.Cluster.PartitionMap[p.ID]; !reflect.DeepEqual(p, want) {
				t.Fatalf("?%s: %s is %+v, GET /cluster has %+v", q, p.ID, p, want)
			}
		}
	}

	// A join changes some partitions: since=<the epoch before> lists exactly those, each equal
	// to the full map's.
	ck3 := c.Add("node-3")
	c.WaitConverged(10 * time.Second)
	after := fullMap(t, addr)
	d := getMap(addr, fmt.Sprintf("since=%d", before.Cluster.Epoch), 5*time.Second).delta(t)
	if d.Full || d.Since != before.Cluster.Epoch || d.Epoch != after.Cluster.Epoch || d.Leader != after.Cluster.Leader ||
		!d.UpdatedAt.Equal(after.Cluster.UpdatedAt) || !reflect.DeepEqual(d.Nodes, mapNodes(after.Cluster.Nodes)) {
		t.Fatalf("since the join (epochs %d to %d): %+v", before.Cluster.Epoch, after.Cluster.Epoch, d)
	}
	listed := map[string]bool{}
	for _, p := range d.Partitions {
		listed[p.ID] = true
		if want := after.Cluster.PartitionMap[p.ID]; !reflect.DeepEqual(p, want) {
			t.Errorf("%s is %+v, GET /cluster has %+v", p.ID, p, want)
		}
	}
	changed := 0
	for id, p := range after.Cluster.PartitionMap {
		if moved := !sameShown(p, before.Cluster.PartitionMap[id]); moved != listed[id] {
			t.Errorf("%s: changed %v, listed %v", id, moved, listed[id])
		} else if moved {
			changed++
		}
	}
	if changed == 0 || changed == 16 {
		t.Fatalf("the join changed %d of 16 partitions: the test shows nothing", changed)
	}

	// A map the node never held (node-3 joined after epoch 1) or one in the future: every
	// partition.
	for _, q := range []string{"since=1", fmt.Sprintf("since=%d", after.Cluster.Epoch+1000)} {
		if d := getMap(ck3.AdvertiseAddr(), q, 5*time.Second).delta(t); !d.Full || d.Since != 0 || len(d.Partitions) != 16 || d.Epoch != after.Cluster.Epoch {
			t.Errorf("?%s: full %v since %d, %d partitions at epoch %d", q, d.Full, d.Since, len(d.Partitions), d.Epoch)
		}
	}

	// A since above the node's epoch with a wait (a node behind its client): the node waits for
	// a newer map than the client's, and answers in full once the wait has passed.
	began := time.Now()
	future := fmt.Sprintf("since=%d&wait=300ms", after.Cluster.Epoch+1000)
	if d := getMap(addr, future, 5*time.Second).delta(t); !d.Full || d.Epoch != after.Cluster.Epoch || time.Since(began) < 300*time.Millisecond {
		t.Errorf("?%s: full %v at epoch %d after %v", future, d.Full, d.Epoch, time.Since(began))
	}

	// Bad parameters: 400, naming the parameter.
	for _, q := range []string{"since=soon", "since=-1", "since=1.5", "since=3&wait=soon", "since=3&wait=-1s"} {
		name := "since"
		if strings.Contains(q, "wait") {
			name = "wait"
		}
		var e struct{ Error string }
		a := getMap(addr, q, 5*time.Second)
		if a.err != nil || a.code != http.StatusBadRequest || json.Unmarshal(a.body, &e) != nil || !strings.Contains(e.Error, "parameter "+name) {
			t.Errorf("?%s: %d %s %v, want 400 naming %s", q, a.code, a.body, a.err, name)
		}
	}

	// The current epoch: 304 at once, or once the wait has passed, not before.
	now := fmt.Sprintf("since=%d", after.Cluster.Epoch)
	if a := getMap(addr, now, 5*time.Second); a.err != nil || a.code != http.StatusNotModified {
		t.Fatalf("?%s: %d %s %v", now, a.code, a.body, a.err)
	}
	began = time.Now()
	if a := getMap(addr, now+"&wait=300ms", 5*time.Second); a.err != nil || a.code != http.StatusNotModified {
		t.Fatalf("?%s&wait=300ms: %d %s %v", now, a.code, a.body, a.err)
	}
	if d := time.Since(began); d < 300*time.Millisecond {
		t.Fatalf("304 after %v, before the wait of 300ms", d)
	}

	// A join during the long poll: the next map, relative to the client's, well before the
	// wait (the request is bounded far below it).
	done := make(chan mapAnswer, 1)
	go func() { done <- getMap(addr, now+"&wait=30s", 20*time.Second) }()
	time.Sleep(100 * time.Millisecond) // let the poll reach its wait; a later start only makes it trivial
	c.Add("node-4")
	d = (<-done).delta(t)
	if d.Full || d.Since != after.Cluster.Epoch || d.Epoch <= d.Since || len(d.Partitions) == 0 {
		t.Fatalf("long poll across a join: full %v, since %d, epoch %d, %d partitions", d.Full, d.Since, d.Epoch, len(d.Partitions))
	}
	if _, ok := d.Nodes["node-4"]; !ok {
		t.Fatalf("long poll across a join: nodes %v", d.Nodes)
	}
}

// The long polls waiting on a node are bounded: one more is answered 503 at once, on both
// endpoints, so that its client asks another node; a plain read still answers.
func TestLongPollsBounded(t *testing.T) {
	c := clustertest.New(t, clusterkit.Options{PartitionCount: 16, MaxLongPolls: 1})
	ck := c.Add("node-1")
	c.WaitConverged(10 * time.Second)
	addr := ck.AdvertiseAddr()
	cur := fullMap(t, addr)
	since := fmt.Sprintf("since=%d", cur.Cluster.Epoch)
	tag := poll(addr, "", "", 5*time.Second).etag

	// Two polls at once: one waits, the other is refused at once.
	done := make(chan mapAnswer, 2)
	for range 2 {
		go func() { done <- getMap(addr, since+"&wait=5s", 10*time.Second) }()
	}
	if a := <-done; a.err != nil || a.code != http.StatusServiceUnavailable || !strings.Contains(string(a.body), "long polls") {
		t.Fatalf("the first answer of two polls: %d %s %v, want a 503", a.code, a.body, a.err)
	}
	// While the other waits: the refusal says when to try again, GET /cluster's long poll is
	// refused too, a plain read answers.
	if res, err := http.Get("http://" + addr + "/cluster/map?" + since + "&wait=5s"); err != nil || res.StatusCode != http.StatusServiceUnavailable || res.Header.Get("Retry-After") != "1" {
		t.Errorf("a refused poll: %v %v", res, err)
	} else {
		res.Body.Close()
	}
	if a := poll(addr, "5s", tag, 5*time.Second); a.err != nil || a.code != http.StatusServiceUnavailable {
		t.Errorf("GET /cluster?wait=5s beside a waiting poll: %d %s %v", a.code, a.body, a.err)
	}
	if a := getMap(addr, "since=0", 5*time.Second); a.err != nil || a.code != http.StatusOK {
		t.Errorf("a plain read beside a waiting poll: %d %v", a.code, a.err)
	}
	if a := <-done; a.err != nil || a.code != http.StatusNotModified {
		t.Fatalf("the waiting poll: %d %s %v", a.code, a.body, a.err)
	}
	if a := poll(addr, "100ms", tag, 5*time.Second); a.err != nil || a.code != http.StatusNotModified {
		t.Fatalf("a long poll once the first is done: %d %s %v", a.code, a.body, a.err)
	}
}

// follower long-polls one node as a client does, by GET /cluster/map (delta) or GET /cluster,
// and counts what it downloads until it holds the map of epoch until.
type follower struct {
	addr  string
	delta bool
	// sizes are the bodies of the maps it received, epochs their epochs.
	sizes, epochs []int
}

func (f *follower) run(epoch uint64, tag string, until func() uint64) error {
	for {
		if u := until(); u != 0 && epoch >= u {
			return nil
		}
		var code int
		var body []byte
		if f.delta {
			a := getMap(f.addr, fmt.Sprintf("since=%d&wait=1s", epoch), 20*time.Second)
			code, body = a.code, a.body
			if a.err != nil {
				return a.err
			}
		} else {
			a := poll(f.addr, "1s", tag, 20*time.Second)
			code, body, tag = a.code, a.body, a.etag
			if a.err != nil {
				return a.err
			}
		}
		switch code {
		case http.StatusNotModified:
			continue
		case http.StatusOK:
		default:
			return fmt.Errorf("%d %s", code, body)
		}
		var head struct {
			Epoch   uint64
			Cluster struct{ Epoch uint64 }
		}
		if err := json.Unmarshal(body, &head); err != nil {
			return err
		}
		epoch = max(head.Epoch, head.Cluster.Epoch)
		f.sizes, f.epochs = append(f.sizes, len(body)), append(f.epochs, int(epoch))
	}
}

func sum(xs []int) int {
	n := 0
	for _, x := range xs {
		n += x
	}
	return n
}

// At 4096 partitions, a client following one join through GET /cluster/map downloads less per
// map than one following through GET /cluster: what changed instead of the whole map. The
// sizes are logged (go test -v -run TestClusterMapBytesPerChange ./pkg/clusterkit).
func TestClusterMapBytesPerChange(t *testing.T) {
	c := clustertest.New(t, clusterkit.Options{PartitionCount: 4096})
	c.Add("node-1")
	c.Add("node-2")
	ck := c.Add("node-3")
	c.WaitConverged(60 * time.Second)
	addr := ck.AdvertiseAddr()
	first := poll(addr, "", "", 10*time.Second)
	start := ck.Epoch()
	if first.err != nil || first.code != http.StatusOK || !strings.HasSuffix(first.etag, fmt.Sprintf(`-%d"`, start)) {
		t.Fatalf("GET /cluster: %d %s %v (node at epoch %d)", first.code, first.etag, first.err, start)
	}

	var until atomic.Uint64
	inc, full := &follower{addr: addr, delta: true}, &follower{addr: addr}
	errs := make(chan error, 2)
	go func() { errs <- inc.run(start, "", until.Load) }()
	go func() { errs <- full.run(start, first.etag, until.Load) }()
	c.Add("node-4")
	c.WaitConverged(60 * time.Second)
	until.Store(ck.Epoch())
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("P=4096, R=3, 3 nodes + 1 joining, epochs %d to %d", start, until.Load())
	t.Logf("GET /cluster/map: %d answers (epochs %v), %d bytes: %v", len(inc.sizes), inc.epochs, sum(inc.sizes), inc.sizes)
	t.Logf("GET /cluster:     %d answers (epochs %v), %d bytes: %v", len(full.sizes), full.epochs, sum(full.sizes), full.sizes)
	perInc := float64(sum(inc.sizes)) / float64(len(inc.sizes))
	perFull := float64(sum(full.sizes)) / float64(len(full.sizes))
	t.Logf("per map: %.0f bytes incremental, %.0f bytes whole: ratio %.3f", perInc, perFull, perInc/perFull)
	if len(inc.sizes) == 0 || len(full.sizes) == 0 || perInc >= perFull {
		t.Fatalf("incremental %.0f bytes per map, whole %.0f", perInc, perFull)
	}
}
