package main

// Nodes as processes of their own: the node binary (cmd/clusterkit-node), built once, started
// against the harness's etcd, asked over its HTTP API, stopped with SIGTERM or killed with
// SIGKILL, and its peak resident memory read from /proc.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/clusterkit-go/clusterkit/pkg/wire"
)

// nodePackage is the package of the node binary.
const nodePackage = "github.com/clusterkit-go/clusterkit/cmd/clusterkit-node"

// stopWait bounds a node process's graceful stop: its ShutdownTimeout (10s by default) and
// some. A process still running after it is killed.
const stopWait = 20 * time.Second

// buildNode builds the node binary into dir with the go command and returns its path. It runs
// in the module's source tree (go run ./test/scale, go test ./test/scale).
func buildNode(ctx context.Context, dir string) (string, error) {
	bin := filepath.Join(dir, "clusterkit-node")
	out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, nodePackage).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build %s: %v\n%s", nodePackage, err, out)
	}
	return bin, nil
}

// procNode is a node process. One goroutine reads its stdout into its log, and when stdout
// closes waits for the process and closes exited; stop and kill wait for it.
type procNode struct {
	name    string
	addr    string
	cmd     *exec.Cmd
	logPath string
	exited  chan struct{}
	http    *http.Client
}

// startProc starts node id as a process of bin against s.endpoints, with its data directory and
// log in dir, and waits until it prints its ready line (Start has returned), or ctx ends.
func startProc(ctx context.Context, s nodeSettings, bin, dir, id string, hc *http.Client) (*procNode, error) {
	logPath := filepath.Join(dir, id+".log")
	log, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(),
		"NODE_ID="+id,
		"HTTP_ADDR=127.0.0.1:0",
		"DATA_DIR="+filepath.Join(dir, id),
		"CLUSTER_NAME="+clusterName,
		"PARTITION_COUNT="+strconv.Itoa(s.partitions),
		"REPLICATION_FACTOR="+strconv.Itoa(s.replication),
		"LEASE_TTL="+leaseTTL.String(),
		"ETCD_ENDPOINTS="+strings.Join(s.endpoints, ","),
		"LOG_LEVEL=warn",
	)
	cmd.Stderr = log
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		log.Close()
		return nil, err
	}
	cmd.SysProcAttr = killWithParent()
	if err := cmd.Start(); err != nil {
		log.Close()
		return nil, fmt.Errorf("start %s: %w", id, err)
	}
	n := &procNode{name: id, cmd: cmd, logPath: logPath, exited: make(chan struct{}), http: hc}
	ready := make(chan string, 1)
	go func() {
		defer close(n.exited)
		lines := bufio.NewScanner(stdout)
		for lines.Scan() {
			if line := lines.Text(); strings.HasPrefix(line, "ready ") && len(ready) == 0 {
				ready <- line
			}
			fmt.Fprintln(log, lines.Text())
		}
		io.Copy(log, stdout)
		cmd.Wait()
		log.Close()
	}()
	select {
	case line := <-ready:
		// ready <node-id> <advertise-addr>
		f := strings.Fields(line)
		if len(f) != 3 {
			n.kill()
			return nil, fmt.Errorf("%s: unexpected ready line %q", id, line)
		}
		n.addr = f[2]
		return n, nil
	case <-n.exited:
		return nil, fmt.Errorf("%s exited before it was ready (%v); log %s:\n%s", id, cmd.ProcessState, logPath, n.logTail())
	case <-ctx.Done():
		n.kill()
		return nil, fmt.Errorf("%s not ready: %w; log %s:\n%s", id, ctx.Err(), logPath, n.logTail())
	}
}

func (n *procNode) id() string { return n.name }

func (n *procNode) health(ctx context.Context) (wire.Health, error) {
	var h wire.Health
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+n.addr+"/health", nil)
	if err != nil {
		return h, err
	}
	resp, err := n.http.Do(req)
	if err != nil {
		return h, err
	}
	defer resp.Body.Close()
	// A node without a map answers 503 with the same document.
	if err := json.NewDecoder(resp.Body).Decode(&h); err != nil {
		return h, fmt.Errorf("%s: GET /health: %d: %w", n.name, resp.StatusCode, err)
	}
	return h, nil
}

func (n *procNode) epoch(ctx context.Context) (uint64, error) {
	h, err := n.health(ctx)
	return h.Epoch, err
}

func (n *procNode) leads(ctx context.Context) (bool, error) {
	h, err := n.health(ctx)
	return h.IsLeader, err
}

// stop sends SIGTERM, on which the node leaves gracefully, and waits for the process to exit;
// one still running after stopWait is killed.
func (n *procNode) stop() error {
	if err := n.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	select {
	case <-n.exited:
	case <-time.After(stopWait):
		n.kill()
		return fmt.Errorf("%s still running %v after SIGTERM; killed", n.name, stopWait)
	}
	if code := n.cmd.ProcessState.ExitCode(); code != 0 {
		return fmt.Errorf("%s exited with status %d after SIGTERM; log %s:\n%s", n.name, code, n.logPath, n.logTail())
	}
	return nil
}

func (n *procNode) kill() error {
	err := n.cmd.Process.Signal(syscall.SIGKILL)
	<-n.exited
	if errors.Is(err, os.ErrProcessDone) {
		return nil
	}
	return err
}

// received is not counted for a process: its connection to etcd is its own.
func (n *procNode) received() int64 { return -1 }

func (n *procNode) peakRSS() (int64, error) {
	return readPeakRSS(strconv.Itoa(n.cmd.Process.Pid))
}

func (n *procNode) clusterBody(ctx context.Context) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+n.addr+"/cluster", nil)
	if err != nil {
		return 0, err
	}
	resp, err := n.http.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	size, err := io.Copy(io.Discard, resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("GET /cluster: %d", resp.StatusCode)
	}
	return int(size), err
}

// logTail returns the last lines of the node's log.
func (n *procNode) logTail() string {
	b, _ := os.ReadFile(n.logPath)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-20):], "\n")
}
