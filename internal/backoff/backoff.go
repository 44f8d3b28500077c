// Package backoff is the one retry delay of ClusterKit's loops: exponential, capped, with
// jitter, so that nodes retrying the same failure do not retry in step.
package backoff

import (
	"math/rand/v2"
	"time"
)

// Backoff doubles a delay from Min up to Max. The zero value is not usable; set Min and Max.
type Backoff struct {
	Min, Max time.Duration
	cur      time.Duration
}

// Next returns the delay before the next retry: a random value between half the current delay
// and the current delay, which then doubles up to Max.
func (b *Backoff) Next() time.Duration {
	if b.cur < b.Min {
		b.cur = b.Min
	}
	d := b.cur/2 + rand.N(b.cur/2+1)
	b.cur = min(2*b.cur, b.Max)
	return d
}

// Reset starts again from Min, after a success.
func (b *Backoff) Reset() { b.cur = 0 }
