// Command formation measures how fast a cluster forms on the embedded default, as a new user
// starts one: node processes of cmd/clusterkit-node on 127.0.0.1, with no etcd of their own
// to configure.
//
//   - "one by one": N nodes (default 5), each started once the one before has returned from
//     Start (its "ready" line); how long each Start took, and when all N hold one map that lists
//     them with no copy pending, counted from the first start.
//   - "at once": one bootstrap node and M-1 (default 19) joining it, all started together;
//     when all M hold one settled map.
//
// With -baseline REV it builds the node binary of that revision too (git archive, go build) and
// runs the same scenarios with it in the same run, alternating, and prints the ratio of the
// medians. Times come from the processes' ready lines and from polling every node's GET
// /health and one node's GET /cluster every 10 ms, so settle times are up to about 10 ms late.
//
//	go run ./test/formation [-nodes 5] [-at-once 20] [-partitions 64] [-runs 3] [-baseline REV]
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

func main() {
	n := flag.Int("nodes", 5, "nodes started one by one")
	atOnce := flag.Int("at-once", 20, "nodes started at once (0: skip)")
	partitions := flag.Int("partitions", 64, "PARTITION_COUNT")
	runs := flag.Int("runs", 3, "runs of each scenario")
	baseline := flag.String("baseline", "", "a git revision whose node binary runs the same scenarios, for the ratio")
	timeout := flag.Duration("timeout", 2*time.Minute, "bound on each scenario")
	flag.Parse()
	if err := run(os.Stdout, config{nodes: *n, atOnce: *atOnce, partitions: *partitions, runs: *runs,
		baseline: *baseline, timeout: *timeout}); err != nil {
		fmt.Fprintln(os.Stderr, "formation:", err)
		os.Exit(1)
	}
}

// config is what a run measures.
type config struct {
	nodes, atOnce, partitions, runs int
	baseline                        string
	timeout                         time.Duration
}

// result is one scenario's measurement.
type result struct {
	// starts are how long each node's Start took, from its process start to its ready line.
	starts []time.Duration
	// settled is the time from the first start until every node holds one settled map.
	settled time.Duration
	epoch   uint64
}

func run(w io.Writer, c config) error {
	dir, err := os.MkdirTemp("", "formation")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	ctx := context.Background()
	bins := map[string]string{}
	bins["this"], err = build(ctx, ".", filepath.Join(dir, "node-this"))
	if err != nil {
		return err
	}
	names := []string{"this"}
	if c.baseline != "" {
		if bins[c.baseline], err = buildRevision(ctx, c.baseline, dir); err != nil {
			return err
		}
		names = []string{c.baseline, "this"}
	}
	fmt.Fprintf(w, "%-12s %-10s %3s %10s %10s %10s %6s\n", "binary", "scenario", "run", "first", "max-other", "settled", "epoch")
	settled := map[string][]time.Duration{}
	for r := 1; r <= c.runs; r++ {
		for _, name := range names {
			for _, sc := range []struct {
				label string
				n     int
				f     func(context.Context, string, string, int, int) (result, error)
			}{{"one-by-one", c.nodes, oneByOne}, {"at-once", c.atOnce, allAtOnce}} {
				if sc.n == 0 {
					continue
				}
				sctx, cancel := context.WithTimeout(ctx, c.timeout)
				res, err := sc.f(sctx, bins[name], filepath.Join(dir, fmt.Sprintf("%s-%s-%d", name, sc.label, r)), sc.n, c.partitions)
				cancel()
				if err != nil {
					return fmt.Errorf("%s %s run %d: %w", name, sc.label, r, err)
				}
				others := time.Duration(0)
				for _, d := range res.starts[1:] {
					others = max(others, d)
				}
				fmt.Fprintf(w, "%-12s %-10s %3d %10s %10s %10s %6d\n", name, fmt.Sprintf("%s/%d", sc.label, sc.n), r,
					ms(res.starts[0]), ms(others), ms(res.settled), res.epoch)
				settled[name+" "+sc.label] = append(settled[name+" "+sc.label], res.settled)
			}
		}
	}
	if c.baseline != "" {
		for _, sc := range []string{"one-by-one", "at-once"} {
			b, t := median(settled[c.baseline+" "+sc]), median(settled["this "+sc])
			if b > 0 && t > 0 {
				fmt.Fprintf(w, "%s: median settled %s (this) against %s (%s): %.2fx faster\n", sc, ms(t), ms(b), c.baseline,
					float64(b)/float64(t))
			}
		}
	}
	return nil
}

func ms(d time.Duration) string { return d.Round(time.Millisecond).String() }

func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(ds))
	return s[len(s)/2]
}

// build builds the node binary of the module in src into bin.
func build(ctx context.Context, src, bin string) (string, error) {
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/clusterkit-node")
	cmd.Dir = src
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build in %s: %v\n%s", src, err, out)
	}
	return bin, nil
}

// buildRevision builds the node binary of a git revision of this repository.
func buildRevision(ctx context.Context, rev, dir string) (string, error) {
	src := filepath.Join(dir, "src-"+strings.NewReplacer("/", "_", "~", "_", "^", "_").Replace(rev))
	if err := os.MkdirAll(src, 0o755); err != nil {
		return "", err
	}
	archive := exec.CommandContext(ctx, "git", "archive", rev)
	untar := exec.CommandContext(ctx, "tar", "-x", "-C", src)
	pipe, err := archive.StdoutPipe()
	if err != nil {
		return "", err
	}
	untar.Stdin = pipe
	var stderr strings.Builder
	archive.Stderr = &stderr
	if err := untar.Start(); err != nil {
		return "", err
	}
	if err := archive.Run(); err != nil {
		untar.Wait()
		return "", fmt.Errorf("git archive %s: %v: %s", rev, err, stderr.String())
	}
	if err := untar.Wait(); err != nil {
		return "", fmt.Errorf("untar %s: %w", rev, err)
	}
	return build(ctx, src, filepath.Join(dir, "node-baseline"))
}

// proc is a node process.
type proc struct {
	id     string
	addr   string
	cmd    *exec.Cmd
	ready  chan string
	exited chan struct{}
	log    string
}

// start starts node id of bin with its data in dir, serving its API on httpAddr, joining
// joinAddr when set.
func start(bin, dir, id, httpAddr, joinAddr string, partitions int) (*proc, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	logPath := filepath.Join(dir, id+".log")
	log, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), "NODE_ID="+id, "HTTP_ADDR="+httpAddr, "DATA_DIR="+filepath.Join(dir, id),
		"JOIN_ADDR="+joinAddr, "PARTITION_COUNT="+strconv.Itoa(partitions), "LEASE_TTL=5s", "LOG_LEVEL=info")
	cmd.Stderr = log
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		log.Close()
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		log.Close()
		return nil, err
	}
	p := &proc{id: id, cmd: cmd, ready: make(chan string, 1), exited: make(chan struct{}), log: logPath}
	go func() {
		defer close(p.exited)
		lines := bufio.NewScanner(stdout)
		for lines.Scan() {
			if f := strings.Fields(lines.Text()); len(f) == 3 && f[0] == "ready" && len(p.ready) == 0 {
				p.ready <- f[2]
			}
			fmt.Fprintln(log, lines.Text())
		}
		cmd.Wait()
		log.Close()
	}()
	return p, nil
}

// wait waits for p's ready line and returns the time since began.
func (p *proc) wait(ctx context.Context, began time.Time) (time.Duration, error) {
	select {
	case addr := <-p.ready:
		p.addr = addr
		return time.Since(began), nil
	case <-p.exited:
		return 0, fmt.Errorf("%s exited before it was ready; its log: %s", p.id, p.log)
	case <-ctx.Done():
		return 0, fmt.Errorf("%s not ready: %w; its log: %s", p.id, ctx.Err(), p.log)
	}
}

// stopAll stops every process and waits for them, SIGKILL after 15 s.
func stopAll(ps []*proc) {
	for _, p := range ps {
		p.cmd.Process.Signal(os.Interrupt)
	}
	for _, p := range ps {
		select {
		case <-p.exited:
		case <-time.After(15 * time.Second):
			p.cmd.Process.Kill()
			<-p.exited
		}
	}
}

func oneByOne(ctx context.Context, bin, dir string, n, partitions int) (res result, err error) {
	return oneByOneThen(ctx, bin, dir, n, partitions, nil)
}

// oneByOneThen is oneByOne, calling then with the running nodes once they have settled.
func oneByOneThen(ctx context.Context, bin, dir string, n, partitions int, then func([]*proc) error) (res result, err error) {
	var ps []*proc
	defer func() { stopAll(ps) }()
	began := time.Now()
	join := ""
	for i := 1; i <= n; i++ {
		t := time.Now()
		p, err := start(bin, dir, fmt.Sprintf("node-%d", i), "127.0.0.1:0", join, partitions)
		if err != nil {
			return res, err
		}
		ps = append(ps, p)
		d, err := p.wait(ctx, t)
		if err != nil {
			return res, err
		}
		res.starts = append(res.starts, d)
		if i == 1 {
			join = p.addr
		}
	}
	res.epoch, err = waitSettled(ctx, ps)
	res.settled = time.Since(began)
	if err == nil && then != nil {
		err = then(ps)
	}
	return res, err
}

func allAtOnce(ctx context.Context, bin, dir string, n, partitions int) (res result, err error) {
	var ps []*proc
	defer func() { stopAll(ps) }()
	began := time.Now()
	// The joining nodes need the bootstrap node's address before it answers: a fixed port.
	port, err := freePort()
	if err != nil {
		return res, err
	}
	join := "127.0.0.1:" + strconv.Itoa(port)
	first, err := start(bin, dir, "node-1", join, "", partitions)
	if err != nil {
		return res, err
	}
	ps = append(ps, first)
	for i := 2; i <= n; i++ {
		p, err := start(bin, dir, fmt.Sprintf("node-%d", i), "127.0.0.1:0", join, partitions)
		if err != nil {
			return res, err
		}
		ps = append(ps, p)
	}
	for _, p := range ps {
		d, err := p.wait(ctx, began)
		if err != nil {
			return res, err
		}
		res.starts = append(res.starts, d)
	}
	res.epoch, err = waitSettled(ctx, ps)
	res.settled = time.Since(began)
	return res, err
}

// freePort picks a port for the bootstrap node's API below Linux's ephemeral range (32768 and
// up), so that no outgoing connection holds it, with its embedded etcd's ports (10000 and 20000
// above it) free too at the time of the pick.
func freePort() (int, error) {
	for range 100 {
		p := 10000 + rand.IntN(2700)
		free := true
		for _, q := range []int{p, p + 10000, p + 20000} {
			l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(q))
			if err != nil {
				free = false
				break
			}
			l.Close()
		}
		if free {
			return p, nil
		}
	}
	return 0, errors.New("no free port below 12700 after 100 picks")
}

// clusterDoc is the part of GET /cluster read here.
type clusterDoc struct {
	Cluster struct {
		Nodes        map[string]json.RawMessage `json:"nodes"`
		PartitionMap map[string]struct {
			PendingNodes []string `json:"pending_nodes"`
		} `json:"partition_map"`
	} `json:"cluster"`
}

// waitSettled polls until every process holds one epoch and that map lists them all with no
// copy pending; it returns the epoch.
func waitSettled(ctx context.Context, ps []*proc) (uint64, error) {
	hc := &http.Client{Timeout: 2 * time.Second}
	get := func(addr, path string, v any) error {
		resp, err := hc.Get("http://" + addr + path)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		return json.NewDecoder(resp.Body).Decode(v)
	}
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		epoch, err := func() (uint64, error) {
			epochs := make([]uint64, len(ps))
			errs := make([]error, len(ps))
			var wg sync.WaitGroup
			for i, p := range ps {
				wg.Go(func() {
					var h struct {
						Epoch uint64 `json:"epoch"`
					}
					errs[i] = get(p.addr, "/health", &h)
					epochs[i] = h.Epoch
				})
			}
			wg.Wait()
			if err := errors.Join(errs...); err != nil {
				return 0, err
			}
			for _, e := range epochs[1:] {
				if e != epochs[0] {
					return 0, fmt.Errorf("epochs %v", epochs)
				}
			}
			var c clusterDoc
			if err := get(ps[0].addr, "/cluster", &c); err != nil {
				return 0, err
			}
			if len(c.Cluster.Nodes) != len(ps) {
				return 0, fmt.Errorf("the map lists %d nodes", len(c.Cluster.Nodes))
			}
			for i, e := range c.Cluster.PartitionMap {
				if len(e.PendingNodes) > 0 {
					return 0, fmt.Errorf("%s has copies pending", i)
				}
			}
			return epochs[0], nil
		}()
		if err == nil {
			return epoch, nil
		}
		last = err
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("not settled: %w (last: %v)", ctx.Err(), last)
		case <-tick.C:
		}
	}
}
