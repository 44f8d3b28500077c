// Package proctest runs the examples' programs as real processes in end-to-end tests: it builds
// them with `go build` (with the race detector when the test has it), starts them with their
// logs in the test's temporary directory, waits for their "ready" line, and kills or stops them.
// Every process is killed when the test ends, and a data race reported in a log fails the test.
package proctest

import (
	"bufio"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Build builds the package pkg (an import path) into the test's temporary directory and
// returns the binary's path.
func Build(t *testing.T, pkg string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), filepath.Base(pkg))
	args := []string{"build", "-o", path}
	if raceEnabled {
		args = append(args, "-race")
	}
	args = append(args, pkg)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "go", args...).CombinedOutput(); err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return path
}

// FreeAddr returns a 127.0.0.1 address with a port that was free a moment ago.
func FreeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// Process is a started program. Its stderr goes to LogPath.
type Process struct {
	Name    string
	LogPath string

	cmd    *exec.Cmd
	exited chan struct{}
	status int
	// ready is closed once readyLine holds the first stdout line that starts with "ready ".
	ready     chan struct{}
	readyLine string
}

// Start starts bin with args. The process is killed when the test ends (if it still runs), and
// its log is checked for data races then.
func Start(t *testing.T, name, bin string, args ...string) *Process {
	t.Helper()
	p := &Process{Name: name, LogPath: filepath.Join(t.TempDir(), name+".log"), exited: make(chan struct{}), ready: make(chan struct{})}
	logFile, err := os.Create(p.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Stderr = logFile
	p.cmd.SysProcAttr = killWithParent()
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		logFile.Close()
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		// Read stdout to its end (Wait needs that), noting the ready line.
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if l := sc.Text(); p.readyLine == "" && strings.HasPrefix(l, "ready ") {
				p.readyLine = l
				close(p.ready)
			}
		}
		p.cmd.Wait()
		logFile.Close()
		p.status = p.cmd.ProcessState.ExitCode()
		close(p.exited)
	}()
	t.Cleanup(func() {
		p.Kill(t)
		log := p.Log()
		if strings.Contains(log, "WARNING: DATA RACE") {
			t.Errorf("%s: the race detector reported a data race:\n%s", name, log)
		} else if t.Failed() {
			t.Logf("%s log (%s), last lines:\n%s", name, p.LogPath, tail(log, 15))
		}
	})
	return p
}

// WaitReady waits for the process's "ready ..." line on stdout and returns its fields after
// "ready".
func (p *Process) WaitReady(t *testing.T, within time.Duration) []string {
	t.Helper()
	select {
	case <-p.ready:
		return strings.Fields(p.readyLine)[1:]
	case <-p.exited:
		t.Fatalf("%s exited with status %d before it was ready; log:\n%s", p.Name, p.status, tail(p.Log(), 30))
	case <-time.After(within):
		t.Fatalf("%s not ready after %v; log:\n%s", p.Name, within, tail(p.Log(), 30))
	}
	return nil
}

// Kill sends SIGKILL and waits for the process to be gone.
func (p *Process) Kill(t *testing.T) {
	t.Helper()
	select {
	case <-p.exited:
		return
	default:
	}
	p.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		t.Errorf("%s still running 10s after SIGKILL", p.Name)
	}
}

// Stop sends SIGTERM to every process at once and waits for them; the test fails if one is
// still running after within or exits with a status other than 0.
func Stop(t *testing.T, within time.Duration, ps ...*Process) {
	t.Helper()
	for _, p := range ps {
		p.cmd.Process.Signal(syscall.SIGTERM)
	}
	deadline := time.After(within)
	for _, p := range ps {
		select {
		case <-p.exited:
			if p.status != 0 {
				t.Errorf("%s exited with status %d after SIGTERM; log:\n%s", p.Name, p.status, tail(p.Log(), 20))
			}
		case <-deadline:
			t.Fatalf("%s still running %v after SIGTERM; log:\n%s", p.Name, within, tail(p.Log(), 20))
		}
	}
}

// Log returns what the process wrote to stderr so far.
func (p *Process) Log() string {
	b, _ := os.ReadFile(p.LogPath)
	return string(b)
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Node is an example server started by StartNode.
type Node struct {
	*Process
	// ID is the node ID, Addr its ClusterKit HTTP address, KVAddr its data API address.
	ID, Addr, KVAddr string
}

// StartNode starts an example server (see examples/internal/kvnode) as node id with a 2s lease
// and 16 partitions, its data API on kvAddr (a free port when empty), joining the node at join
// unless join is empty (it then starts the cluster's embedded etcd), and waits until it is
// ready. Extra flags follow. The first three nodes to join run the embedded etcd's members:
// tests that kill or pause nodes start them in an order that says which ones those are.
func StartNode(t *testing.T, bin, id, kvAddr, join string, extra ...string) *Node {
	t.Helper()
	n := LaunchNode(t, bin, id, kvAddr, join, extra...)
	n.WaitNode(t)
	return n
}

// LaunchNode is StartNode without the wait: call WaitNode before using the node's Addr. Nodes
// launched together join concurrently.
func LaunchNode(t *testing.T, bin, id, kvAddr, join string, extra ...string) *Node {
	t.Helper()
	if kvAddr == "" {
		kvAddr = FreeAddr(t)
	}
	n := &Node{ID: id, KVAddr: kvAddr}
	args := []string{"-id", id, "-addr", "127.0.0.1:0", "-kv-addr", n.KVAddr, "-data-dir", t.TempDir(),
		"-lease-ttl", "2s", "-partitions", "16"}
	if join != "" {
		args = append(args, "-join", join)
	}
	n.Process = Start(t, id, bin, append(args, extra...)...)
	return n
}

// WaitNode waits until a launched node is ready and records its ClusterKit address.
func (n *Node) WaitNode(t *testing.T) {
	t.Helper()
	ready := n.WaitReady(t, time.Minute)
	if len(ready) != 2 || ready[0] != n.ID {
		t.Fatalf("%s printed ready %v, want its ID and address", n.ID, ready)
	}
	n.Addr = ready[1]
}

// Pause stops the process with SIGSTOP; Resume continues it.
func (p *Process) Pause(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatalf("SIGSTOP %s: %v", p.Name, err)
	}
}

// Resume continues a paused process with SIGCONT.
func (p *Process) Resume(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatalf("SIGCONT %s: %v", p.Name, err)
	}
}
