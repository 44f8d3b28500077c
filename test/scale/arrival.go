package main

// The new map's arrival after a leave or a crash: a recorder polls the epoch every node holds
// and keeps when each node first held each epoch; once the cluster has settled, the first map
// in etcd without the node that went (from the heads the write watch decoded) says which epoch
// is the new map, and each node's first time at that epoch or later is its arrival.

import (
	"cmp"
	"context"
	"slices"
	"sync"
	"time"
)

// epochAt is when a node was first seen holding a map of an epoch.
type epochAt struct {
	epoch uint64
	at    time.Time
}

// recorder polls the epochs of a fixed set of nodes from a goroutine of its own, which close
// stops and waits for.
type recorder struct {
	nodes []node
	// seen[i] are the epochs nodes[i] was seen holding, in increasing order; written by the
	// goroutine only, read after it ended.
	seen [][]epochAt
	stop context.CancelFunc
	wg   sync.WaitGroup
}

// record starts polling the epochs of nodes every interval.
func record(nodes []node, every time.Duration) *recorder {
	ctx, stop := context.WithCancel(context.Background())
	r := &recorder{nodes: slices.Clone(nodes), seen: make([][]epochAt, len(nodes)), stop: stop}
	r.wg.Go(func() { r.run(ctx, every) })
	return r
}

func (r *recorder) run(ctx context.Context, every time.Duration) {
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		for i, n := range r.nodes {
			// A node that is gone answers with an error (a process) or its last epoch.
			e, err := n.epoch(ctx)
			at := time.Now()
			if s := r.seen[i]; err == nil && e > 0 && (len(s) == 0 || s[len(s)-1].epoch < e) {
				r.seen[i] = append(s, epochAt{epoch: e, at: at})
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// close stops the polling and returns, by node ID, the epochs each node was seen holding.
func (r *recorder) close() map[string][]epochAt {
	r.stop()
	r.wg.Wait()
	out := make(map[string][]epochAt, len(r.nodes))
	for i, n := range r.nodes {
		out[n.id()] = r.seen[i]
	}
	return out
}

// head is what the write watch keeps of each map published: its epoch and its nodes, sorted.
type head struct {
	epoch uint64
	nodes []string
}

// firstWithout returns the epoch of the first map in heads (in publication order) after epoch
// after that does not list node gone, and false if there is none.
func firstWithout(heads []head, after uint64, gone string) (uint64, bool) {
	for _, h := range heads {
		if h.epoch > after {
			if _, listed := slices.BinarySearch(h.nodes, gone); !listed {
				return h.epoch, true
			}
		}
	}
	return 0, false
}

// arrivals returns, sorted, how long after at each node of seen other than gone was first seen
// holding a map of epoch want or later, and the nodes never seen with one.
func arrivals(seen map[string][]epochAt, gone string, want uint64, at time.Time) ([]time.Duration, []string) {
	var ds []time.Duration
	var missing []string
	for id, s := range seen {
		if id == gone {
			continue
		}
		i := slices.IndexFunc(s, func(e epochAt) bool { return e.epoch >= want })
		if i < 0 {
			missing = append(missing, id)
			continue
		}
		ds = append(ds, max(0, s[i].at.Sub(at)))
	}
	slices.Sort(ds)
	slices.Sort(missing)
	return ds, missing
}

// percentile is the nearest-rank percentile q of sorted values (with fewer than 100 values,
// the 99th is the largest).
func percentile[T cmp.Ordered](sorted []T, q int) T {
	i := (q*len(sorted)+99)/100 - 1
	return sorted[max(0, i)]
}
