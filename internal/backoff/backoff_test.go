package backoff

import (
	"testing"
	"time"
)

// Delays double from Min to Max, each jittered into [d/2, d], and start again after Reset.
func TestBackoff(t *testing.T) {
	b := Backoff{Min: 100 * time.Millisecond, Max: time.Second}
	want := []time.Duration{100, 200, 400, 800, 1000, 1000}
	for round := 0; round < 2; round++ {
		for i, w := range want {
			w *= time.Millisecond
			if d := b.Next(); d < w/2 || d > w {
				t.Fatalf("round %d, retry %d: %v, want within [%v, %v]", round, i, d, w/2, w)
			}
		}
		b.Reset()
	}
	// Jitter: many draws at the cap are not all equal.
	seen := map[time.Duration]bool{}
	for range 50 {
		seen[b.Next()] = true
	}
	if len(seen) < 10 {
		t.Fatalf("%d distinct delays in 50 draws", len(seen))
	}
}
