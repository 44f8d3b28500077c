// Package workload drives the examples' clusters: it runs a number of writes and reads against
// a KV, records every acknowledged write, measures latency and throughput, and checks afterwards
// that every acknowledged write is readable with its latest acknowledged value.
//
// Each key belongs to one worker, so that the writes of a key are never concurrent: the latest
// acknowledged value of a key is then well defined, and a read that returns anything else
// (other than a later write whose outcome is unknown) is a lost or stale write.
package workload

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"sync"
	"time"
)

// KV is the store under test, as its clients see it.
type KV interface {
	// Set stores key = value; nil means acknowledged.
	Set(ctx context.Context, key, value string) error
	// Get reads key; found is false for a key never stored.
	Get(ctx context.Context, key string) (value string, found bool, err error)
}

// Config is one run.
type Config struct {
	// Ops is the number of operations (writes and reads).
	Ops int
	// Keys is the number of distinct keys, named <Prefix><n>.
	Keys   int
	Prefix string
	// Concurrency is the number of workers; keys are split between them.
	Concurrency int
	// Rate limits the operations per second of all workers together; 0 is unlimited.
	Rate float64
	// ReadEvery makes every n-th operation of a worker a read of one of its keys already
	// written, checked against the value last acknowledged; 0 means writes only.
	ReadEvery int
	// OpTimeout bounds one operation.
	OpTimeout time.Duration
	// Seed makes the key choices repeatable.
	Seed uint64
}

// KeyState is what a run knows of a key: the value last acknowledged, and the values written
// after it whose writes failed (they may or may not have been stored).
type KeyState struct {
	Acked   string   `json:"acked"`
	Unknown []string `json:"unknown,omitempty"`
}

// accepts reports whether a read of v (found or not) agrees with the state.
func (k KeyState) accepts(v string, found bool) bool {
	if !found {
		return k.Acked == ""
	}
	return v == k.Acked || slices.Contains(k.Unknown, v)
}

// Result is the outcome of a run.
type Result struct {
	Ops, Writes, Reads int
	// Errors counts operations that failed (after the KV's own retries).
	Errors int
	// StaleReads counts reads that returned neither the last acknowledged value nor a later
	// write of unknown outcome.
	StaleReads int
	Elapsed    time.Duration
	// WriteLatency and ReadLatency are the durations of the successful operations, sorted.
	WriteLatency, ReadLatency []time.Duration
	// State is every key's state at the end.
	State map[string]KeyState
	// FirstErrors keeps a few error messages.
	FirstErrors []string
}

// Run runs cfg against kv until its operations are done or ctx ends. The end of ctx stops
// new operations; those under way finish (each within OpTimeout), so that their outcome is known.
func Run(ctx context.Context, kv KV, cfg Config) *Result {
	opBase := context.WithoutCancel(ctx)
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 1
	}
	if cfg.Keys < cfg.Concurrency {
		cfg.Keys = cfg.Concurrency
	}
	if cfg.OpTimeout == 0 {
		cfg.OpTimeout = 30 * time.Second
	}
	res := &Result{State: map[string]KeyState{}}
	var mu sync.Mutex
	var tick <-chan time.Time
	if cfg.Rate > 0 {
		t := time.NewTicker(time.Duration(float64(time.Second) / cfg.Rate))
		defer t.Stop()
		tick = t.C
	}
	ops := make(chan int)
	start := time.Now()
	var wg sync.WaitGroup
	for w := range cfg.Concurrency {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(cfg.Seed, uint64(w)))
			var mine []string // keys of this worker, in key order
			for k := w; k < cfg.Keys; k += cfg.Concurrency {
				mine = append(mine, fmt.Sprintf("%s%d", cfg.Prefix, k))
			}
			state := map[string]KeyState{}
			var written []string
			var wl, rl []time.Duration
			var errs, stale int
			var msgs []string
			n := 0
			for op := range ops {
				n++
				opCtx, cancel := context.WithTimeout(opBase, cfg.OpTimeout)
				if cfg.ReadEvery > 0 && n%cfg.ReadEvery == 0 && len(written) > 0 {
					key := written[rng.IntN(len(written))]
					t0 := time.Now()
					v, found, err := kv.Get(opCtx, key)
					switch {
					case err != nil:
						errs++
						msgs = appendMsg(msgs, fmt.Sprintf("get %s: %v", key, err))
					case !state[key].accepts(v, found):
						stale++
						msgs = appendMsg(msgs, fmt.Sprintf("get %s: read %q (found %v), last acknowledged %q", key, v, found, state[key].Acked))
						rl = append(rl, time.Since(t0))
					default:
						rl = append(rl, time.Since(t0))
					}
				} else {
					key := mine[rng.IntN(len(mine))]
					value := fmt.Sprintf("%s=%d", key, op)
					t0 := time.Now()
					err := kv.Set(opCtx, key, value)
					st := state[key]
					if err != nil {
						errs++
						msgs = appendMsg(msgs, fmt.Sprintf("set %s: %v", key, err))
						st.Unknown = append(st.Unknown, value)
					} else {
						wl = append(wl, time.Since(t0))
						st = KeyState{Acked: value}
					}
					if _, ok := state[key]; !ok {
						written = append(written, key)
					}
					state[key] = st
				}
				cancel()
			}
			mu.Lock()
			defer mu.Unlock()
			maps.Copy(res.State, state)
			res.Writes += len(wl)
			res.Reads += len(rl)
			res.WriteLatency = append(res.WriteLatency, wl...)
			res.ReadLatency = append(res.ReadLatency, rl...)
			res.Errors += errs
			res.StaleReads += stale
			for _, m := range msgs {
				res.FirstErrors = appendMsg(res.FirstErrors, m)
			}
		})
	}
feed:
	for op := range cfg.Ops {
		if tick != nil {
			select {
			case <-tick:
			case <-ctx.Done():
				break feed
			}
		}
		select {
		case ops <- op:
		case <-ctx.Done():
			break feed
		}
	}
	close(ops)
	wg.Wait()
	res.Elapsed = time.Since(start)
	res.Ops = res.Writes + res.Reads + res.Errors
	slices.Sort(res.WriteLatency)
	slices.Sort(res.ReadLatency)
	return res
}

func appendMsg(msgs []string, m string) []string {
	if len(msgs) < 5 {
		msgs = append(msgs, m)
	}
	return msgs
}

// Percentile returns the p-th percentile (0-100) of sorted durations, 0 for none.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted)-1) * p / 100)
	return sorted[i]
}

// Summary is the run in a few lines.
func (r *Result) Summary() string {
	var b strings.Builder
	all := append(append([]time.Duration(nil), r.WriteLatency...), r.ReadLatency...)
	slices.Sort(all)
	fmt.Fprintf(&b, "%d operations (%d writes, %d reads) in %v: %.0f ops/s\n", r.Ops, r.Writes, r.Reads,
		r.Elapsed.Round(time.Millisecond), float64(r.Ops)/r.Elapsed.Seconds())
	fmt.Fprintf(&b, "latency all:    p50 %v  p99 %v  max %v\n", round(Percentile(all, 50)), round(Percentile(all, 99)), round(Percentile(all, 100)))
	fmt.Fprintf(&b, "latency writes: p50 %v  p99 %v  max %v\n", round(Percentile(r.WriteLatency, 50)), round(Percentile(r.WriteLatency, 99)), round(Percentile(r.WriteLatency, 100)))
	if len(r.ReadLatency) > 0 {
		fmt.Fprintf(&b, "latency reads:  p50 %v  p99 %v  max %v\n", round(Percentile(r.ReadLatency, 50)), round(Percentile(r.ReadLatency, 99)), round(Percentile(r.ReadLatency, 100)))
	}
	fmt.Fprintf(&b, "failed operations: %d, stale reads: %d", r.Errors, r.StaleReads)
	for _, m := range r.FirstErrors {
		fmt.Fprintf(&b, "\n  %s", m)
	}
	return b.String()
}

func round(d time.Duration) time.Duration {
	switch {
	case d >= 100*time.Millisecond:
		return d.Round(time.Millisecond)
	case d >= time.Millisecond:
		return d.Round(10 * time.Microsecond)
	}
	return d.Round(time.Microsecond)
}

// Check reads every key of state through kv and returns a description of each key whose value
// is not its latest acknowledged one (or a later write of unknown outcome).
func Check(ctx context.Context, kv KV, state map[string]KeyState) []string {
	var bad []string
	for _, key := range slices.Sorted(maps.Keys(state)) {
		st := state[key]
		v, found, err := kv.Get(ctx, key)
		switch {
		case err != nil:
			bad = append(bad, fmt.Sprintf("%s: read failed: %v", key, err))
		case !st.accepts(v, found):
			bad = append(bad, fmt.Sprintf("%s: read %q (found %v), last acknowledged %q", key, v, found, st.Acked))
		}
	}
	return bad
}

// SaveState writes state to path as JSON.
func SaveState(path string, state map[string]KeyState) error {
	b, err := json.Marshal(state)
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

// LoadState reads a state written by SaveState.
func LoadState(path string) (map[string]KeyState, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var state map[string]KeyState
	if err := json.Unmarshal(b, &state); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if state == nil {
		return nil, errors.New(path + ": no state")
	}
	return state, nil
}
