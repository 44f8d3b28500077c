package ui

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/clusterkit-go/clusterkit/internal/keys"
	"github.com/clusterkit-go/clusterkit/internal/state"
	"github.com/clusterkit-go/clusterkit/pkg/clusterkit"
	"github.com/clusterkit-go/clusterkit/pkg/clustertest"
	"github.com/clusterkit-go/clusterkit/pkg/wire"
)

var screenshot = flag.String("screenshot", "", "write a 1200x800 PNG of the dashboard (three nodes, two copies in progress) to this file")

// The dashboard in one Chromium, started while the first cluster starts: the browser's start is
// most of the time a browser test takes.
func TestDashboard(t *testing.T) {
	c := startChrome(t)
	t.Run("FollowsTheMap", func(t *testing.T) { testFollowsTheMap(t, c) })
	t.Run("OverHTTPS", func(t *testing.T) { testOverHTTPS(t, c) })
	<-c.ready
	if c.err == nil {
		t.Logf("Chromium started in %v", c.took.Round(time.Millisecond))
	}
}

// The dashboard shows the map a node holds and follows it by itself: two nodes of 256 partitions,
// then a third joins. The page, opened once, shows every partition in the colour of its primary
// (as many cells of each node's colour as GET /cluster gives it primaries), both nodes and the
// node's epoch; hovering and clicking a cell shows its holders; when the third node joins, the
// page shows it copying in (two copies held back by its hook, listed as GET /cluster lists them),
// then the settled map: three nodes, a later epoch, cells in the new node's colour, the join in
// the history; all without a reload, and without an error in the browser's console.
//
// The nodes run in the test process (pkg/clustertest): the page talks to a node only over HTTP,
// and an in-process node serves the same handler on a real port as the node binary does, without
// the binary's build time. Processes are what test/e2e is for.
func testFollowsTheMap(t *testing.T, chrome *chrome) {
	const parts = 256
	began := time.Now()
	c := clustertest.New(t, clusterkit.Options{PartitionCount: parts, ReplicationFactor: 2})
	start := func(id, zone string, setup ...func(*clusterkit.ClusterKit)) {
		o := c.Options(id)
		o.Zone = zone
		c.Start(o, setup...)
	}
	start("node-1", "zone-a")
	start("node-2", "zone-b")
	c.WaitConverged(15 * time.Second)
	addr := c.Node("node-1").AdvertiseAddr()
	b := chrome.open(t)

	// /ui redirects to /ui/, which loads.
	b.run(t, chromedp.Navigate("http://"+addr+"/ui"))
	first := clusterOf(t, addr)
	p := b.waitPage(t, 10*time.Second, "the page shows the map of two nodes", func(p page) error {
		if !strings.HasSuffix(p.URL, "/ui/") {
			return fmt.Errorf("the page is at %s, want /ui/", p.URL)
		}
		return p.shows(clusterOf(t, addr))
	})
	if p.Epoch != strconv.FormatUint(first.Cluster.Epoch, 10) {
		t.Fatalf("the page shows epoch %s, GET /cluster answered %d", p.Epoch, first.Cluster.Epoch)
	}

	// Hovering over partition-0 shows its holders; clicking it selects it, clicking again
	// lets it go.
	p0 := first.Cluster.PartitionMap["partition-0"]
	want := []string{"partition-0", "primary: " + p0.PrimaryNode, "replicas: " + strings.Join(p0.ReplicaNodes, ", ")}
	x, y := b.cellCentre(t, 0)
	b.run(t, chromedp.MouseEvent(chromedp.MouseMoved, x, y))
	b.waitText(t, "#tip", want)
	b.run(t, chromedp.MouseClickXY(x, y))
	b.waitText(t, "#selected", []string{"partition-0", "primary " + p0.PrimaryNode})
	b.run(t, chromedp.MouseClickXY(x, y), chromedp.MouseEvent(chromedp.MouseMoved, 0, 0))
	b.waitText(t, "#selected", []string{"No partition selected"})

	// A third node joins; its hook holds its first two copies back, so the page shows them in
	// progress.
	eval[bool](t, b, `window.notReloaded = true`)
	var (
		release  = make(chan struct{})
		released sync.Once
		mu       sync.Mutex
		held     []string
		hooks    atomic.Int32
	)
	releaseAll := func() { released.Do(func() { close(release) }) }
	defer releaseAll()
	start("node-3", "zone-c", func(ck *clusterkit.ClusterKit) {
		ck.OnPartitionChange(func(partitionID string, _ []*clusterkit.Node, to *clusterkit.Node) {
			if to == nil || to.ID != "node-3" || hooks.Add(1) > 2 {
				return
			}
			mu.Lock()
			held = append(held, partitionID)
			mu.Unlock()
			<-release
		})
	})
	b.waitPage(t, 15*time.Second, "the page shows node-3 copying in the two partitions it holds back", func(p page) error {
		mu.Lock()
		want := slices.Sorted(slices.Values(held))
		mu.Unlock()
		var got []string
		for _, h := range p.Handoffs {
			if h.Node != "node-3" || h.Attempt != "1" || h.Overdue != "no" {
				return fmt.Errorf("handoff row %+v, want node-3 at attempt 1, not overdue", h)
			}
			got = append(got, h.Partition)
		}
		sort.Strings(got)
		if len(want) != 2 || !slices.Equal(got, want) {
			return fmt.Errorf("the page lists handoffs of %v, node-3 holds back %v", got, want)
		}
		cl := clusterOf(t, addr)
		if len(cl.Cluster.Handoffs) != 2 {
			return fmt.Errorf("GET /cluster lists %d handoffs", len(cl.Cluster.Handoffs))
		}
		return p.shows(cl)
	})
	if *screenshot != "" {
		mu.Lock()
		pending, _ := strconv.Atoi(strings.TrimPrefix(held[0], "partition-"))
		mu.Unlock()
		b.screenshot(t, pending, *screenshot)
	}
	releaseAll()
	c.WaitConverged(15 * time.Second)

	// The settled map, without a reload.
	p = b.waitPage(t, 10*time.Second, "the page shows the settled map of three nodes", func(p page) error {
		cl := clusterOf(t, addr)
		if len(cl.Cluster.Nodes) != 3 || len(cl.Cluster.Handoffs) != 0 {
			return fmt.Errorf("GET /cluster lists %d nodes and %d handoffs", len(cl.Cluster.Nodes), len(cl.Cluster.Handoffs))
		}
		if err := p.shows(cl); err != nil {
			return err
		}
		if len(p.Handoffs) != 0 {
			return fmt.Errorf("the page still lists handoffs %v", p.Handoffs)
		}
		if !slices.ContainsFunc(p.History, func(cause string) bool { return cause == "join: node-3" }) {
			return fmt.Errorf("the history shows causes %q, none is the join of node-3", p.History)
		}
		return nil
	})
	if !p.NotReloaded {
		t.Fatal("the page was reloaded")
	}
	if e, _ := strconv.ParseUint(p.Epoch, 10, 64); e <= first.Cluster.Epoch {
		t.Fatalf("the page shows epoch %d, not after the first one's %d", e, first.Cluster.Epoch)
	}
	checkAdminStates(t, c, b, addr)
	b.checkConsole(t)
	t.Logf("two nodes, a third joining, followed by the page in %v", time.Since(began).Round(time.Millisecond))
}

// checkAdminStates writes operators' records under admin/, as clusterkit maintenance, drain,
// cordon and weight write them: a maintenance first, which holds the placement still, so that
// the map does not change and the page learns the rest from GET /cluster/nodes alone. The page
// shows node-3 draining, node-2 cordoned, node-1 of weight 3 and the maintenance, then every
// node serving again at weight 1 once the records are deleted; all without a reload.
func checkAdminStates(t *testing.T, c *clustertest.Cluster, b *browser, addr string) {
	s := keys.New(c.Name())
	put := func(kind, name string, a state.AdminAction) {
		t.Helper()
		a.Kind, a.By, a.At = kind, "ui-test", time.Now().UTC()
		if err := a.Check(256); err != nil {
			t.Fatal(err)
		}
		v, err := json.Marshal(a)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Etcd().Put(context.Background(), s.Admin(kind, name), string(v)); err != nil {
			t.Fatal(err)
		}
	}
	before := clusterOf(t, addr).Cluster.Epoch
	put(state.AdminMaintenance, "ui-test", state.AdminAction{Reason: "ui test"})
	put(state.AdminDrain, "node-3", state.AdminAction{Node: "node-3"})
	put(state.AdminCordon, "node-2", state.AdminAction{Node: "node-2"})
	put(state.AdminWeight, "node-1", state.AdminAction{Node: "node-1", Weight: 3})
	want := map[string]string{"node-1": "serving", "node-2": "cordoned", "node-3": "draining"}
	p := b.waitPage(t, 10*time.Second, "the page shows node-3 draining, node-2 cordoned, node-1 of weight 3", func(p page) error {
		if !maps.Equal(p.State, want) || p.Weight["node-1"] != "3" || p.Weight["node-2"] != "1" || p.Maintenance != "ui test" {
			return fmt.Errorf("states %v, weights %v, maintenance %q", p.State, p.Weight, p.Maintenance)
		}
		return nil
	})
	if now := clusterOf(t, addr).Cluster.Epoch; p.Epoch != strconv.FormatUint(before, 10) || now != before {
		t.Errorf("the map changed during the maintenance: epoch %d before, %d after, the page shows %s", before, now, p.Epoch)
	}
	if _, err := c.Etcd().Delete(context.Background(), s.AdminPrefix(), clientv3.WithPrefix()); err != nil {
		t.Fatal(err)
	}
	want = map[string]string{"node-1": "serving", "node-2": "serving", "node-3": "serving"}
	p = b.waitPage(t, 10*time.Second, "the page shows every node serving at weight 1", func(p page) error {
		if !maps.Equal(p.State, want) || p.Weight["node-1"] != "1" || p.Maintenance != "–" {
			return fmt.Errorf("states %v, weights %v, maintenance %q", p.State, p.Weight, p.Maintenance)
		}
		return nil
	})
	if !p.NotReloaded {
		t.Fatal("the page was reloaded")
	}
}

// In secure mode the API, the page included, is served over https, and the page loads and
// follows the map there (the browser ignores certificate errors: it does not know the cluster's
// CA).
func testOverHTTPS(t *testing.T, chrome *chrome) {
	dir := t.TempDir()
	ck, err := clusterkit.NewClusterKit(clusterkit.Options{NodeID: "node-1", HTTPAddr: "127.0.0.1:0", DataDir: dir,
		JoinToken: "0123456789abcdef0123456789abcdef", EmbeddedMembers: 1, PartitionCount: 32})
	if err != nil {
		t.Fatal(err)
	}
	if err := ck.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ck.Stop() }) // after the tab's cleanup: no poll is left waiting
	b := chrome.open(t)
	b.run(t, chromedp.Navigate("https://"+ck.AdvertiseAddr()+"/ui/"))
	b.waitPage(t, 10*time.Second, "the page shows the map over https", func(p page) error {
		if !strings.HasPrefix(p.URL, "https://") {
			return fmt.Errorf("the page is at %s", p.URL)
		}
		if len(p.Nodes) != 1 || p.Nodes[0] != "node-1" || p.Epoch != strconv.FormatUint(ck.Epoch(), 10) {
			return fmt.Errorf("the page shows nodes %v at epoch %s, the node holds epoch %d", p.Nodes, p.Epoch, ck.Epoch())
		}
		if n := p.Cells[p.Legend["node-1"]]; n != 32 {
			return fmt.Errorf("%d cells in node-1's colour, want 32", n)
		}
		return nil
	})
	b.checkConsole(t)
}

// chromium returns the path of a Chromium binary, or skips the test.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "chromium-headless-shell", "google-chrome", "google-chrome-stable", "headless-shell"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("no Chromium binary on PATH (chromium, chromium-browser, chromium-headless-shell, google-chrome or headless-shell): " +
		"install one (Debian: apt-get install chromium) to run the dashboard's browser tests")
	return ""
}

// chrome is a headless Chromium, started in the background and closed when the test that
// started it ends.
type chrome struct {
	ready chan struct{} // closed once the browser started, or failed to (err)
	ctx   context.Context
	err   error
	took  time.Duration
}

func startChrome(t *testing.T) *chrome {
	t.Helper()
	opts := append(slices.Clone(chromedp.DefaultExecAllocatorOptions[:]), chromedp.ExecPath(chromium(t)),
		chromedp.NoSandbox, chromedp.WindowSize(1200, 800), chromedp.Flag("ignore-certificate-errors", true))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	c := &chrome{ready: make(chan struct{}), ctx: ctx}
	go func() {
		defer close(c.ready)
		began := time.Now()
		c.err = chromedp.Do(ctx)
		c.took = time.Since(began)
	}()
	t.Cleanup(func() {
		<-c.ready
		chromedp.Cancel(ctx) // closes the browser and waits for it
		cancel()
		cancelAlloc()
	})
	return c
}

// browser is a tab of a chrome, closed when the test that opened it ends. It records what the
// page's console and the browser log report as errors: exceptions, policy violations, failed
// loads.
type browser struct {
	ctx      context.Context
	mu       sync.Mutex
	problems []string
}

// open opens a 1200x800 tab, once the browser has started.
func (c *chrome) open(t *testing.T) *browser {
	t.Helper()
	<-c.ready
	if c.err != nil {
		t.Fatalf("start Chromium: %v", c.err)
	}
	ctx, cancel := chromedp.NewContext(c.ctx)
	b := &browser{ctx: ctx}
	// Console opens the tab; the goroutine reads what it logs until the tab's context ends.
	messages := chromedp.Console(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for m, err := range messages {
			if err != nil {
				return
			}
			if m.Type == chromedp.ConsoleError || m.IsException() {
				b.problem(fmt.Sprintf("%s (%s)", m, m.URL))
			}
		}
	}()
	t.Cleanup(func() {
		chromedp.Cancel(ctx) // closes the tab
		cancel()
		<-done
	})
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1200, 800)); err != nil {
		t.Fatalf("open a tab: %v", err)
	}
	return b
}

func (b *browser) problem(s string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.problems = append(b.problems, s)
}

// checkConsole fails the test if the browser reported an error.
func (b *browser) checkConsole(t *testing.T) {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, p := range b.problems {
		t.Errorf("browser: %s", p)
	}
}

func (b *browser) run(t *testing.T, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		t.Fatal(err)
	}
}

// eval evaluates the JavaScript expression js in the page, into a T.
func eval[T any](t *testing.T, b *browser, js string) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](js))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// page is what the dashboard shows, as a person reads it.
type page struct {
	URL   string `json:"url"`
	Epoch string `json:"epoch"`
	// Nodes are the node table's rows; Zone and Primary their zone and primary columns.
	Nodes   []string          `json:"nodes"`
	Zone    map[string]string `json:"zone"`
	Primary map[string]string `json:"primary"`
	// Weight and State are the weight and state columns; Maintenance the header's maintenance.
	Weight      map[string]string `json:"weight"`
	State       map[string]string `json:"state"`
	Maintenance string            `json:"maintenance"`
	// Legend maps each node of the legend to its colour ("#rrggbb").
	Legend map[string]string `json:"legend"`
	// Cells counts the grid's cells by the colour they are drawn in.
	Cells       map[string]int `json:"cells"`
	Handoffs    []handoffRow   `json:"handoffs"`
	History     []string       `json:"history"`
	Status      string         `json:"status"`
	NotReloaded bool           `json:"notReloaded"`
}

type handoffRow struct {
	Partition string `json:"partition"`
	Node      string `json:"node"`
	Attempt   string `json:"attempt"`
	Overdue   string `json:"overdue"`
}

// pageJS reads the page, and the grid's cells from the canvas' pixels: the top left pixel of
// each cell, where neither the copy mark nor the gap between cells is drawn.
const pageJS = `(() => {
  const text = (sel) => { const e = document.querySelector(sel); return e ? e.textContent.trim() : ''; };
  const all = (sel) => [...document.querySelectorAll(sel)];
  const c = document.getElementById('grid');
  const n = +c.dataset.count || 0, cell = +c.dataset.cell, cols = +c.dataset.cols, dpr = window.devicePixelRatio || 1;
  const cells = {};
  if (n > 0 && c.width > 0) {
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    for (let i = 0; i < n; i++) {
      const x = Math.floor((i % cols) * cell * dpr), y = Math.floor(Math.floor(i / cols) * cell * dpr);
      const o = (y * c.width + x) * 4;
      const hex = d[o + 3] === 0 ? 'none' : '#' + [d[o], d[o + 1], d[o + 2]].map((v) => v.toString(16).padStart(2, '0')).join('');
      cells[hex] = (cells[hex] || 0) + 1;
    }
  }
  return {
    url: location.href,
    epoch: text('#epoch'),
    status: text('#status'),
    nodes: all('#nodes tbody tr').map((r) => r.dataset.node),
    zone: Object.fromEntries(all('#nodes tbody tr').map((r) => [r.dataset.node, r.querySelector('td.zone').textContent])),
    primary: Object.fromEntries(all('#nodes tbody tr').map((r) => [r.dataset.node, r.querySelector('td.primary').textContent])),
    weight: Object.fromEntries(all('#nodes tbody tr').map((r) => [r.dataset.node, r.querySelector('td.weight').textContent])),
    state: Object.fromEntries(all('#nodes tbody tr').map((r) => [r.dataset.node, r.querySelector('td.state').textContent])),
    maintenance: text('#maintenance'),
    legend: Object.fromEntries(all('#legend .item').map((e) => [e.dataset.node, e.dataset.color])),
    cells,
    handoffs: all('#handoffs tbody tr').map((r) => ({ partition: r.dataset.partition, node: r.dataset.node,
      attempt: r.cells[3].textContent, overdue: r.cells[5].textContent })),
    history: all('#history tbody td.cause').map((td) => td.textContent),
    notReloaded: window.notReloaded === true,
  };
})()`

// shows reports how the page differs from the map of cl: its epoch, its nodes and their zones,
// and for each node as many cells of its colour, and as many primaries in its row, as it has
// primaries in cl.
func (p page) shows(cl wire.Cluster) error {
	if p.Epoch != strconv.FormatUint(cl.Cluster.Epoch, 10) {
		return fmt.Errorf("epoch %s, GET /cluster has %d", p.Epoch, cl.Cluster.Epoch)
	}
	ids := slices.Sorted(maps.Keys(cl.Cluster.Nodes))
	if !slices.Equal(p.Nodes, ids) {
		return fmt.Errorf("nodes %v, GET /cluster has %v", p.Nodes, ids)
	}
	primaries := map[string]int{}
	for _, part := range cl.Cluster.PartitionMap {
		primaries[part.PrimaryNode]++
	}
	drawn := 0
	for _, id := range ids {
		if p.Zone[id] != cl.Cluster.Nodes[id].Zone {
			return fmt.Errorf("%s is in zone %q, GET /cluster says %q", id, p.Zone[id], cl.Cluster.Nodes[id].Zone)
		}
		colour, ok := p.Legend[id]
		if !ok {
			return fmt.Errorf("the legend has no %s: %v", id, p.Legend)
		}
		if p.Cells[colour] != primaries[id] || p.Primary[id] != strconv.Itoa(primaries[id]) {
			return fmt.Errorf("%s: %d cells of its colour %s and %s primaries in its row; GET /cluster gives it %d primaries (cells by colour: %v)",
				id, p.Cells[colour], colour, p.Primary[id], primaries[id], p.Cells)
		}
		drawn += p.Cells[colour]
	}
	if drawn != len(cl.Cluster.PartitionMap) {
		return fmt.Errorf("%d cells in the nodes' colours, want %d (cells by colour: %v)", drawn, len(cl.Cluster.PartitionMap), p.Cells)
	}
	return nil
}

// waitPage reads the page until cond accepts it, and fails the test with what it last read
// after within.
func (b *browser) waitPage(t *testing.T, within time.Duration, what string, cond func(page) error) page {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
		p, err := chromedp.Run(ctx, chromedp.Evaluate[page](pageJS))
		cancel()
		if err == nil {
			if err = cond(p); err == nil {
				return p
			}
		}
		if time.Now().After(deadline) {
			b.checkConsole(t)
			t.Fatalf("%s: still not after %v: %v (status line: %q)", what, within, err, p.Status)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitText waits until the element of sel is shown and its text contains each of want.
func (b *browser) waitText(t *testing.T, sel string, want []string) {
	t.Helper()
	b.waitPage(t, 5*time.Second, sel+" shows "+strings.Join(want, ", "), func(page) error {
		text := eval[string](t, b, fmt.Sprintf(`(() => { const e = document.querySelector(%q); return e && !e.hidden ? e.textContent : ''; })()`, sel))
		for _, w := range want {
			if !strings.Contains(text, w) {
				return fmt.Errorf("it shows %q", text)
			}
		}
		return nil
	})
}

// cellCentre returns where partition i's cell is in the window.
func (b *browser) cellCentre(t *testing.T, i int) (x, y float64) {
	t.Helper()
	r := eval[[]float64](t, b, fmt.Sprintf(`(() => {
  const c = document.getElementById('grid'), r = c.getBoundingClientRect();
  const cell = +c.dataset.cell, cols = +c.dataset.cols;
  return [r.left + (%[1]d %% cols + 0.5) * cell, r.top + (Math.floor(%[1]d / cols) + 0.5) * cell];
})()`, i))
	return r[0], r[1]
}

// screenshot writes the window to path as a PNG, with partition i selected and under the pointer.
func (b *browser) screenshot(t *testing.T, i int, path string) {
	t.Helper()
	x, y := b.cellCentre(t, i)
	b.run(t, chromedp.MouseClickXY(x, y), chromedp.MouseEvent(chromedp.MouseMoved, x, y), chromedp.Sleep(200*time.Millisecond))
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %s (%d bytes)", path, len(png))
	b.run(t, chromedp.MouseClickXY(x, y), chromedp.MouseEvent(chromedp.MouseMoved, 0, 0))
}

// clusterOf reads GET /cluster from the node at addr.
func clusterOf(t *testing.T, addr string) wire.Cluster {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/cluster")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var c wire.Cluster
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /cluster: %s", resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(&c); err != nil {
		t.Fatal(err)
	}
	return c
}
