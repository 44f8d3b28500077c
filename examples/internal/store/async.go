package store

import (
	"errors"
	"slices"
	"sync"
	"time"

	"go.uber.org/zap"
)

// maxBatch is the most entries sent in one replicate request.
const maxBatch = 512

// asyncReplicator sends a primary's writes to the replicas in the background: one queue and
// one goroutine per destination node, which batches what is queued and retries while the
// write is still wanted there.
//
// When the partition's primary has changed before a queued write reached a replica, the
// replica refuses it (stale epoch), although the write was acknowledged. Such writes go to
// one more queue, the handover queue, which sends them to the partition's current primary:
// it adopts them (merging by version, so an old write never replaces a newer one) and
// replicates them under its own epoch (see Store.Adopt).
type asyncReplicator struct {
	s     *Store
	mu    sync.Mutex
	peers map[string]*peer
	wg    sync.WaitGroup
}

// handover is the peers key of the handover queue; node IDs cannot contain spaces.
const handover = "handover queue"

// peer is the queue of one destination node, or the handover queue.
type peer struct {
	id   string
	mu   sync.Mutex
	addr string
	reqs []ReplicateRequest
	wake chan struct{}
}

func newAsyncReplicator(s *Store) *asyncReplicator {
	return &asyncReplicator{s: s, peers: map[string]*peer{}}
}

// enqueue queues req for t. It never blocks.
func (a *asyncReplicator) enqueue(t target, req ReplicateRequest) {
	n := int64(len(req.Entries))
	a.mu.Lock()
	if a.s.ctx.Err() != nil {
		a.mu.Unlock()
		a.s.stats.replicationDropped.Add(n)
		return
	}
	pr := a.peers[t.id]
	if pr == nil {
		pr = &peer{id: t.id, wake: make(chan struct{}, 1)}
		a.peers[t.id] = pr
		a.wg.Go(func() { a.run(pr) })
	}
	a.mu.Unlock()
	a.s.stats.queued.Add(n)
	pr.mu.Lock()
	pr.addr = t.addr
	pr.reqs = append(pr.reqs, req)
	pr.mu.Unlock()
	select {
	case pr.wake <- struct{}{}:
	default:
	}
}

// wait waits for the queue goroutines, which end with the store's context.
func (a *asyncReplicator) wait() {
	a.mu.Lock()
	a.mu.Unlock() // no new goroutine after this: enqueue checks the context under mu
	a.wg.Wait()
}

// run sends pr's queue until the store is closed.
func (a *asyncReplicator) run(pr *peer) {
	ctx := a.s.ctx
	backoff := 20 * time.Millisecond
	for {
		select {
		case <-ctx.Done():
			return
		case <-pr.wake:
		}
		for {
			pr.mu.Lock()
			batch, addr := pr.reqs, pr.addr
			pr.reqs = nil
			pr.mu.Unlock()
			if len(batch) == 0 {
				break
			}
			retry := a.sendAll(pr.id, addr, batch)
			if len(retry) == 0 {
				backoff = 20 * time.Millisecond
				continue
			}
			pr.mu.Lock()
			pr.reqs = append(retry, pr.reqs...)
			pr.mu.Unlock()
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, time.Second)
		}
	}
}

// sendAll sends batch to node id (or hands it over), merging the requests of one partition
// and primary epoch, and returns what must be sent again.
func (a *asyncReplicator) sendAll(id, addr string, batch []ReplicateRequest) []ReplicateRequest {
	if id == handover {
		return a.handOver(batch)
	}
	s := a.s
	var retry []ReplicateRequest
	for _, req := range coalesce(batch, batchBudget(s.opts.MaxValueBytes)) {
		n := int64(len(req.Entries))
		err := s.send(s.ctx, target{id, addr}, req)
		if err == nil {
			s.stats.queued.Add(-n)
			s.stats.replicaSends.Add(n)
			continue
		}
		p, perr := s.ck.GetPartition(req.Entries[0].Key)
		switch {
		case perr == nil && (errors.Is(err, ErrStaleEpoch) || !s.ck.IsPrimaryAt(p, req.PrimaryEpoch)):
			// The primary changed: the new one takes the write over and replicates it.
			s.stats.handedOver.Add(n)
			s.stats.queued.Add(-n)
			a.enqueue(target{id: handover}, req)
		case perr == nil && slices.ContainsFunc(s.targets(p), func(t target) bool { return t.id == id }):
			s.stats.replicationFailures.Add(1)
			retry = append(retry, req)
		default:
			// id no longer holds the partition, while this node still leads it at that
			// epoch: the write is not wanted there any more.
			s.stats.queued.Add(-n)
			s.stats.replicationDropped.Add(n)
			s.log.Info("dropped queued replication", zap.String("to", id), zap.String("partition", req.Partition),
				zap.Int64("entries", n), zap.Error(err))
		}
	}
	return retry
}

// handOver sends writes whose primary changed to the partition's current primary, and returns
// those that must be sent again.
func (a *asyncReplicator) handOver(batch []ReplicateRequest) []ReplicateRequest {
	s := a.s
	var retry []ReplicateRequest
	for _, req := range coalesce(batch, batchBudget(s.opts.MaxValueBytes)) {
		n := int64(len(req.Entries))
		req.MapEpoch = max(req.MapEpoch, s.ck.Epoch())
		req.From = s.me
		var err error
		p, err := s.ck.GetPartition(req.Entries[0].Key)
		if err == nil {
			if primary := s.ck.GetPrimary(p); primary.ID == s.me {
				err = s.Adopt(s.ctx, req)
			} else {
				err = call(s.ctx, s.httpc, "POST", primary.Metadata[AddrKey], "/store/adopt", req, nil)
			}
		}
		if err != nil {
			s.stats.replicationFailures.Add(1)
			retry = append(retry, req)
			continue
		}
		s.stats.queued.Add(-n)
	}
	return retry
}

// coalesce merges consecutive requests of the same partition and primary epoch, and cuts them
// so that each request carries at most maxBatch entries whose entryCost adds up to at most
// budget (one entry always fits: the budget allows the largest). The receiver bounds request
// bodies to match (see bodyLimit).
func coalesce(batch []ReplicateRequest, budget int) []ReplicateRequest {
	var out []ReplicateRequest
	cost := 0 // of the entries of the last request of out
	for _, r := range batch {
		for _, e := range r.Entries {
			c := entryCost(e)
			if k := len(out) - 1; k >= 0 && out[k].Partition == r.Partition && out[k].PrimaryEpoch == r.PrimaryEpoch &&
				len(out[k].Entries) < maxBatch && cost+c <= budget {
				out[k].Entries = append(out[k].Entries, e)
				out[k].MapEpoch = max(out[k].MapEpoch, r.MapEpoch)
				cost += c
				continue
			}
			next := r
			next.Entries = []Entry{e}
			out = append(out, next)
			cost = c
		}
	}
	return out
}
