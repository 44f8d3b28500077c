package clusterkit

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"
)

// Stop at any point of Start (before it, while it connects, registers or waits for its map,
// after it) returns once everything Start opened is closed: Start returns nil or an error
// wrapping ErrStopped, the HTTP port and the embedded etcd's ports are closed, and TestMain's
// leak check finds no goroutine left. Stop twice returns; Start after Stop is ErrStopped.
func TestStopDuringStart(t *testing.T) {
	for _, delay := range []time.Duration{0, time.Millisecond, 10 * time.Millisecond, 50 * time.Millisecond,
		200 * time.Millisecond, 600 * time.Millisecond, 3 * time.Second} {
		t.Run(fmt.Sprint(delay), func(t *testing.T) {
			ck, err := NewClusterKit(Options{NodeID: "node-1", HTTPAddr: "127.0.0.1:0", DataDir: t.TempDir(),
				LeaseTTL: 2 * time.Second, EmbeddedMembers: 1, unsafeNoFsync: true})
			if err != nil {
				t.Fatal(err)
			}
			started := make(chan error, 1)
			go func() { started <- ck.Start() }()
			time.Sleep(delay)
			ck.Stop()
			// Stop waits for a Start in progress; a Start called after Stop returns at once.
			var startErr error
			select {
			case startErr = <-started:
			case <-time.After(30 * time.Second):
				t.Fatal("Start did not return after Stop")
			}
			if startErr != nil && !errors.Is(startErr, ErrStopped) {
				t.Fatalf("Start stopped after %v: %v, want nil or ErrStopped", delay, startErr)
			}
			t.Logf("Stop after %v: Start returned %v", delay, startErr)
			for _, addr := range openedAddrs(ck) {
				if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
					c.Close()
					t.Errorf("%s still accepts connections after Stop", addr)
				}
			}
			if err := ck.Stop(); err != nil {
				t.Fatalf("second Stop: %v", err)
			}
			if err := ck.Start(); !errors.Is(err, ErrStopped) {
				t.Fatalf("Start after Stop: %v, want ErrStopped", err)
			}
		})
	}
}

// openedAddrs lists the addresses a node listened on: its HTTP API and its embedded etcd.
func openedAddrs(ck *ClusterKit) []string {
	var out []string
	if a := ck.AdvertiseAddr(); a != "" {
		out = append(out, a)
	}
	if m := ck.members.current(); m != nil {
		for _, ep := range m.Endpoints() {
			if u, ok := strings.CutPrefix(ep, "http://"); ok {
				out = append(out, u)
			}
		}
	}
	return out
}
