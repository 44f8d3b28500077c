package etcdtest

import (
	"testing"
	"time"
)

// WaitFor polls cond every 20ms until it returns nil, and fails the test with cond's last error
// once within has passed: tests wait for a state with a bound instead of sleeping.
func WaitFor(tb testing.TB, within time.Duration, what string, cond func() error) {
	tb.Helper()
	deadline := time.Now().Add(within)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("%s: still not true after %v: %v", what, within, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
