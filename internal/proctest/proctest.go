// Package proctest runs programs as real processes in end-to-end tests: it builds them with
// `go build` (with the race detector when the test has it), hands out free 127.0.0.1 ports,
// starts the programs with their output in a log in the test's temporary directory, waits for
// their "ready" line, and kills (SIGKILL), stops (SIGTERM), pauses (SIGSTOP), resumes (SIGCONT)
// and restarts them.
//
// Every process is killed when the test that created it ends, and a data race reported in its
// log fails that test; on Linux the kernel also kills it when the test binary dies. A Process is
// driven by the test's goroutine; only State may be called from other goroutines.
package proctest

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// Build builds the package pkg (an import path, or a path relative to the test's directory)
// into the test's temporary directory and returns the binary's path.
func Build(t *testing.T, pkg string) string {
	t.Helper()
	return BuildAll(t, pkg)[0]
}

// BuildAll builds the packages with one go command, which links them in parallel, and returns
// the binaries' paths in the order of pkgs.
func BuildAll(t *testing.T, pkgs ...string) []string {
	t.Helper()
	dir := t.TempDir()
	args := []string{"build", "-o", dir + string(filepath.Separator)}
	if RaceEnabled {
		args = append(args, "-race")
	}
	args = append(args, pkgs...)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "go", args...).CombinedOutput(); err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	var bins []string
	for _, pkg := range pkgs {
		bins = append(bins, filepath.Join(dir, filepath.Base(pkg)))
	}
	return bins
}

// taken is every port handed out in this test binary: two processes that are given ports
// before either binds them never get the same one.
var taken = struct {
	sync.Mutex
	ports map[int]bool
}{ports: map[int]bool{}}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago and that no other call in
// this test binary returned.
func FreePort(t *testing.T) int {
	t.Helper()
	taken.Lock()
	defer taken.Unlock()
	for range 50 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		p := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if !taken.ports[p] {
			taken.ports[p] = true
			return p
		}
	}
	t.Fatal("no free port that was not handed out before")
	return 0
}

// FreeAddr returns a 127.0.0.1 address with a port from FreePort.
func FreeAddr(t *testing.T) string {
	t.Helper()
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(FreePort(t)))
}

// FreeNodePort returns a port p for the HTTP API of a node that may start an embedded etcd,
// which takes p+10000 and p+20000 for its client and peer ports: the three were free on
// 127.0.0.1 a moment ago, and no other call in this test binary returned any of them. p is
// below 12768, so that all three stay under Linux's range of ports for outgoing connections
// (32768 and up by default): an outgoing connection can then never take one of them between this
// check and the node binding it.
func FreeNodePort(t *testing.T) int {
	t.Helper()
	taken.Lock()
	defer taken.Unlock()
	for range 200 {
		p := 10000 + rand.IntN(2768)
		ports := []int{p, p + 10000, p + 20000}
		if slices.ContainsFunc(ports, func(q int) bool { return taken.ports[q] }) {
			continue
		}
		free := true
		for _, q := range ports {
			l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(q)))
			if err != nil {
				free = false
				break
			}
			l.Close()
		}
		if free {
			for _, q := range ports {
				taken.ports[q] = true
			}
			return p
		}
	}
	t.Fatal("no free port p with p+10000 and p+20000 free too")
	return 0
}

// State is what a Process is doing, as far as the test has made it.
type State int32

const (
	// Running is a started process that was not paused, stopped or killed.
	Running State = iota
	// Paused is a process stopped with SIGSTOP by Pause.
	Paused
	// Exited is a process that has exited, or that was sent SIGKILL or SIGTERM, or that was
	// never started.
	Exited
)

// Process is a program that a test runs, possibly several times: Start starts it again with the
// same arguments, environment and log once it has exited. Its stdout and stderr go to LogPath,
// over all its lives.
type Process struct {
	// Name names the process in failures and its log file.
	Name string
	Bin  string
	Args []string
	// Env is added to the test's environment; it may be changed between lives.
	Env     []string
	LogPath string

	state atomic.Int32
	// life is the current or last run of the program; nil before the first Start.
	life *life
}

// life is one run of a Process.
type life struct {
	cmd    *exec.Cmd
	stdout *stdoutWriter
	exited chan struct{}
	status int // exit status, set before exited is closed
	// logFrom is where this life's output starts in the log.
	logFrom int64
}

// New returns a Process that Start runs; it is killed when the test ends (if it still runs),
// and its log is checked for data races then.
func New(t *testing.T, name, bin string, args ...string) *Process {
	t.Helper()
	p := &Process{Name: name, Bin: bin, Args: args, LogPath: filepath.Join(t.TempDir(), name+".log")}
	p.state.Store(int32(Exited))
	t.Cleanup(func() {
		p.Kill(t)
		log := p.Log()
		if strings.Contains(log, "WARNING: DATA RACE") {
			t.Errorf("%s: the race detector reported a data race:\n%s", name, log)
		} else if t.Failed() {
			t.Logf("%s log (%s), last lines:\n%s", name, p.LogPath, Tail(log, 40))
		}
	})
	return p
}

// Start is New followed by the process's Start.
func Start(t *testing.T, name, bin string, args ...string) *Process {
	t.Helper()
	p := New(t, name, bin, args...)
	p.Start(t)
	return p
}

// Start starts the program; it does not wait for it to be ready. The process must not be
// running.
func (p *Process) Start(t *testing.T) {
	t.Helper()
	if p.life != nil {
		select {
		case <-p.life.exited:
		default:
			t.Fatalf("start %s: it is still running", p.Name)
		}
	}
	logFile, err := os.OpenFile(p.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	info, err := logFile.Stat()
	if err != nil {
		logFile.Close()
		t.Fatal(err)
	}
	cmd := exec.Command(p.Bin, p.Args...)
	if p.Env != nil {
		cmd.Env = append(os.Environ(), p.Env...)
	}
	l := &life{cmd: cmd, stdout: &stdoutWriter{log: logFile, ready: make(chan struct{})}, exited: make(chan struct{}), logFrom: info.Size()}
	cmd.Stdout, cmd.Stderr = l.stdout, logFile
	// A child of the program that outlives it would hold stdout open, and Wait with it.
	cmd.WaitDelay = 5 * time.Second
	cmd.SysProcAttr = killWithParent()
	if err := cmd.Start(); err != nil {
		logFile.Close()
		t.Fatalf("start %s: %v", p.Name, err)
	}
	p.life = l
	p.state.Store(int32(Running))
	go func() {
		err := cmd.Wait()
		logFile.Close()
		l.status = cmd.ProcessState.ExitCode()
		if err != nil && l.status == 0 {
			// The process exited with 0 but its stdout could not be copied to the log.
			l.status = -1
		}
		close(l.exited)
		// After exited is closed: whoever sees Exited of a process that exited by itself can
		// read its status.
		p.state.Store(int32(Exited))
	}()
}

// State returns what the process is doing. It is safe to call from any goroutine.
func (p *Process) State() State { return State(p.state.Load()) }

// ExitStatus returns the exit status of the process's last life: -1 if it was killed by a
// signal, still runs or never started.
func (p *Process) ExitStatus() int {
	if p.life == nil {
		return -1
	}
	select {
	case <-p.life.exited:
		return p.life.status
	default:
		return -1
	}
}

// WaitReady waits for the first line on the process's stdout that starts with "ready " in its
// current life, and returns its fields after "ready". The test fails if the process exits first
// or stays silent for within.
func (p *Process) WaitReady(t *testing.T, within time.Duration) []string {
	t.Helper()
	ready, err := p.AwaitReady(within)
	if err != nil {
		t.Fatal(err)
	}
	return ready
}

// AwaitReady is WaitReady returning an error, with the end of the log, instead of failing the
// test: the caller may start the process again, for instance on another port when PortTaken.
func (p *Process) AwaitReady(within time.Duration) ([]string, error) {
	l := p.life
	timer := time.NewTimer(within)
	defer timer.Stop()
	select {
	case <-l.stdout.ready:
		return strings.Fields(l.stdout.readyLine())[1:], nil
	case <-l.exited:
		return nil, fmt.Errorf("%s exited with status %d before it was ready; log:\n%s", p.Name, l.status, Tail(p.LifeLog(), 30))
	case <-timer.C:
		return nil, fmt.Errorf("%s not ready after %v; log:\n%s", p.Name, within, Tail(p.LifeLog(), 30))
	}
}

// PortTaken reports whether the process's last life has ended because an address it was told
// to listen on was in use: a port that was free when the test chose it was taken by someone else
// before the process bound it. Starting it again on another port is then the remedy.
func (p *Process) PortTaken() bool {
	if p.life == nil {
		return false
	}
	select {
	case <-p.life.exited:
	default:
		return false
	}
	return strings.Contains(p.LifeLog(), "address already in use")
}

// Wait waits for the process to exit by itself and returns its exit status. The test fails if
// it still runs after within.
func (p *Process) Wait(t *testing.T, within time.Duration) int {
	t.Helper()
	select {
	case <-p.life.exited:
		return p.life.status
	case <-time.After(within):
		t.Fatalf("%s still running after %v; log:\n%s", p.Name, within, Tail(p.Log(), 20))
		return -1
	}
}

// Kill sends SIGKILL (to a paused process too) and waits for the process to be gone.
func (p *Process) Kill(t *testing.T) {
	t.Helper()
	if p.life == nil {
		return
	}
	select {
	case <-p.life.exited:
		return
	default:
	}
	p.state.Store(int32(Exited))
	p.life.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-p.life.exited:
	case <-time.After(10 * time.Second):
		t.Errorf("%s still running 10s after SIGKILL", p.Name)
	}
}

// Terminate sends SIGTERM and returns the exit status. The test fails if the process still
// runs after within.
func (p *Process) Terminate(t *testing.T, within time.Duration) int {
	t.Helper()
	p.sigterm()
	return p.waitTerminated(t, within, time.After(within))
}

// Stop sends SIGTERM to every process at once and waits for them; the test fails if one is
// still running after within or exits with a status other than 0.
func Stop(t *testing.T, within time.Duration, ps ...*Process) {
	t.Helper()
	for _, p := range ps {
		p.sigterm()
	}
	deadline := time.After(within)
	for _, p := range ps {
		if status := p.waitTerminated(t, within, deadline); status != 0 {
			t.Errorf("%s exited with status %d after SIGTERM; log:\n%s", p.Name, status, Tail(p.Log(), 20))
		}
	}
}

func (p *Process) sigterm() {
	p.state.Store(int32(Exited))
	p.life.cmd.Process.Signal(syscall.SIGTERM)
}

// waitTerminated waits for a process sent SIGTERM until deadline, which is within after the
// signal, and returns its exit status.
func (p *Process) waitTerminated(t *testing.T, within time.Duration, deadline <-chan time.Time) int {
	t.Helper()
	select {
	case <-p.life.exited:
		return p.life.status
	case <-deadline:
		t.Fatalf("%s still running %v after SIGTERM; log:\n%s", p.Name, within, Tail(p.Log(), 20))
		return -1
	}
}

// Pause stops the process with SIGSTOP; Resume continues it.
func (p *Process) Pause(t *testing.T) {
	t.Helper()
	p.state.Store(int32(Paused))
	if err := p.life.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatalf("SIGSTOP %s: %v", p.Name, err)
	}
}

// Resume continues a paused process with SIGCONT.
func (p *Process) Resume(t *testing.T) {
	t.Helper()
	if err := p.life.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatalf("SIGCONT %s: %v", p.Name, err)
	}
	p.state.Store(int32(Running))
}

// Log returns what the process wrote to stdout and stderr so far, in all its lives.
func (p *Process) Log() string {
	b, _ := os.ReadFile(p.LogPath)
	return string(b)
}

// LifeLog returns what the process wrote to stdout and stderr in its current or last life.
func (p *Process) LifeLog() string {
	log := p.Log()
	if p.life == nil || p.life.logFrom > int64(len(log)) {
		return log
	}
	return log[p.life.logFrom:]
}

// Tail returns the last n lines of s.
func Tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// stdoutWriter is a process's stdout: it goes to the log, and ready is closed at its first line
// that starts with "ready ".
type stdoutWriter struct {
	log   *os.File
	ready chan struct{}

	mu sync.Mutex
	// partial is the unfinished last line, kept until the ready line is found.
	partial []byte
	found   string
}

func (w *stdoutWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	if w.found == "" {
		w.partial = append(w.partial, b...)
		for {
			i := bytes.IndexByte(w.partial, '\n')
			if i < 0 {
				break
			}
			line := string(w.partial[:i])
			w.partial = w.partial[i+1:]
			if strings.HasPrefix(line, "ready ") {
				w.found, w.partial = line, nil
				close(w.ready)
				break
			}
		}
	}
	w.mu.Unlock()
	return w.log.Write(b)
}

func (w *stdoutWriter) readyLine() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.found
}
