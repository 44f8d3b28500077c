package quorum

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/clusterkit-go/clusterkit/examples/internal/store"
	"github.com/clusterkit-go/clusterkit/pkg/client"
)

// Retry pacing of Set and Get: a failed round is retried once the client's map has moved on,
// or after the backoff.
const (
	minBackoff = 5 * time.Millisecond
	maxBackoff = 200 * time.Millisecond
	// straggler bounds how long a write keeps going to the holders that had not answered when
	// the quorum was reached.
	straggler = 2 * time.Second
)

// KV is the sync example's client: quorum writes and reads over the routes of a pkg/client
// Client. Safe for concurrent use; writes of one key must not be concurrent (the newest
// version wins, and versions are ordered per client). Close waits for the writes still
// reaching slow holders.
type KV struct {
	c     *client.Client
	httpc *http.Client
	id    string
	seq   atomic.Uint64
	wg    sync.WaitGroup

	// Retries counts rounds that did not reach a quorum and were tried again.
	Retries atomic.Int64
}

// NewKV returns a KV that routes with c, talks to the nodes' data APIs with httpc and signs its
// writes with id.
func NewKV(c *client.Client, httpc *http.Client, id string) *KV {
	kv := &KV{c: c, httpc: httpc, id: id}
	// Start from the clock, so that a restarted client's versions are past its earlier ones.
	kv.seq.Store(uint64(time.Now().UnixNano()))
	return kv
}

// Close waits for the writes still being sent to holders after their quorum.
func (kv *KV) Close() { kv.wg.Wait() }

// QuorumError is a round that did not reach its quorum: what each node answered.
type QuorumError struct {
	Key, Partition string
	MapEpoch       uint64
	// Acked counts the holders that stored the write (or answered the read), Need the majority.
	Acked, Need int
	// PendingMissing are copying nodes that did not store a write.
	PendingMissing []string
	Failed         map[string]error
}

func (e *QuorumError) Error() string {
	var parts []string
	for id, err := range e.Failed {
		parts = append(parts, fmt.Sprintf("%s: %v", id, err))
	}
	sort.Strings(parts)
	msg := fmt.Sprintf("sync: %q (%s, map epoch %d): %d of %d holders", e.Key, e.Partition, e.MapEpoch, e.Acked, e.Need)
	if len(e.PendingMissing) > 0 {
		msg += fmt.Sprintf(", copying nodes %v missing", e.PendingMissing)
	}
	return msg + ": " + strings.Join(parts, "; ")
}

// final reports whether a node refused the round for a reason that another round does not
// cure: the client's token, or the size of the value.
func (e *QuorumError) final() bool {
	for _, err := range e.Failed {
		if errors.Is(err, store.ErrUnauthorized) || errors.Is(err, store.ErrTooLarge) {
			return true
		}
	}
	return false
}

// answer is one node's reply in a round.
type answer struct {
	node    client.Node
	pending bool
	read    ReadResponse
	err     error
}

// Set writes key = value to every holder and copying node of key's partition, in parallel, and
// returns once a majority of the holders and every copying node stored it. A round that falls
// short is retried with the client's newest map until ctx ends, unless a node refused the
// client's token (401) or the value's size (413). The token comes with the KV's HTTP client
// (store.TokenClient).
func (kv *KV) Set(ctx context.Context, key, value string) error {
	return kv.retry(ctx, func() error { return kv.write(ctx, key, value) })
}

// Get returns the newest version of key among a majority of its holders; found is false when
// none of them has it.
func (kv *KV) Get(ctx context.Context, key string) (string, bool, error) {
	var e ReadResponse
	err := kv.retry(ctx, func() (err error) {
		e, err = kv.read(ctx, key)
		return err
	})
	return e.Entry.Value, e.Found, err
}

func (kv *KV) retry(ctx context.Context, round func() error) error {
	backoff := minBackoff
	for {
		epoch := kv.c.Epoch()
		err := round()
		if err == nil {
			return nil
		}
		var qe *QuorumError
		if !errors.As(err, &qe) || qe.final() {
			return err
		}
		kv.Retries.Add(1)
		// Wait for a newer map (a node refused the client's as stale) or the backoff.
		deadline := time.Now().Add(backoff)
		for kv.c.Epoch() == epoch && time.Now().Before(deadline) {
			select {
			case <-ctx.Done():
				return fmt.Errorf("%w (last round: %v)", ctx.Err(), err)
			case <-time.After(time.Millisecond):
			}
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%w (last round: %v)", ctx.Err(), err)
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// round sends one request to every target in parallel and collects the answers until the
// quorum is decided; the requests still out then finish in the background (bounded).
func (kv *KV) round(ctx context.Context, key string, r client.Route, withPending bool, send func(context.Context, client.Node) answer) (*QuorumError, []answer) {
	targets := len(r.Nodes)
	if withPending {
		targets += len(r.Pending)
	}
	answers := make(chan answer, targets)
	// Requests outlive the round by up to straggler: a holder slower than the quorum still
	// gets the write.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), straggler)
	var out sync.WaitGroup
	for i := 0; i < targets; i++ {
		n, pending := client.Node{}, false
		if i < len(r.Nodes) {
			n = r.Nodes[i]
		} else {
			n, pending = r.Pending[i-len(r.Nodes)], true
		}
		out.Go(func() {
			a := send(sctx, n)
			a.node, a.pending = n, pending
			answers <- a
		})
	}
	kv.wg.Go(func() {
		out.Wait()
		cancel()
	})
	qe := &QuorumError{Key: key, Partition: r.Partition, MapEpoch: r.Epoch, Need: len(r.Nodes)/2 + 1, Failed: map[string]error{}}
	pendingLeft := 0
	if withPending {
		pendingLeft = len(r.Pending)
	}
	var got []answer
	for i := 0; i < targets; i++ {
		var a answer
		select {
		case a = <-answers:
		case <-ctx.Done():
			qe.Failed["context"] = ctx.Err()
			return qe, got
		}
		switch {
		case a.err != nil:
			qe.Failed[a.node.ID] = a.err
			if a.pending {
				qe.PendingMissing = append(qe.PendingMissing, a.node.ID)
			}
		case a.pending:
			pendingLeft--
		default:
			qe.Acked++
			got = append(got, a)
		}
		if qe.Acked >= qe.Need && pendingLeft == 0 && len(qe.PendingMissing) == 0 {
			return nil, got
		}
	}
	return qe, got
}

func (kv *KV) write(ctx context.Context, key, value string) error {
	r, err := kv.c.Route(key)
	if err != nil {
		return err
	}
	req := WriteRequest{
		ReplicateRequest: store.ReplicateRequest{
			Partition: r.Partition, PrimaryEpoch: r.PrimaryEpoch, MapEpoch: r.Epoch, From: kv.id,
			Entries: []store.Entry{{Key: key, Value: value, Version: store.Version{Epoch: r.PrimaryEpoch, Seq: kv.seq.Add(1)}}},
		},
		Targets: targetIDs(r, true),
	}
	qe, _ := kv.round(ctx, key, r, true, func(ctx context.Context, n client.Node) answer {
		return answer{err: store.Call(ctx, kv.httpc, http.MethodPost, n.Metadata[store.AddrKey], WritePath, nil, req, nil)}
	})
	if qe != nil {
		return qe
	}
	return nil
}

func (kv *KV) read(ctx context.Context, key string) (ReadResponse, error) {
	r, err := kv.c.Route(key)
	if err != nil {
		return ReadResponse{}, err
	}
	req := ReadRequest{Key: key, MapEpoch: r.Epoch, Targets: targetIDs(r, true)}
	qe, got := kv.round(ctx, key, r, false, func(ctx context.Context, n client.Node) answer {
		var a answer
		a.err = store.Call(ctx, kv.httpc, http.MethodPost, n.Metadata[store.AddrKey], ReadPath, nil, req, &a.read)
		return a
	})
	if qe != nil {
		return ReadResponse{}, qe
	}
	var newest ReadResponse
	for _, a := range got {
		if a.read.Found && (!newest.Found || newest.Entry.Version.Less(a.read.Entry.Version)) {
			newest = a.read
		}
	}
	return newest, nil
}

func targetIDs(r client.Route, withPending bool) []string {
	ids := make([]string, 0, len(r.Nodes)+len(r.Pending))
	for _, n := range r.Nodes {
		ids = append(ids, n.ID)
	}
	if withPending {
		for _, n := range r.Pending {
			ids = append(ids, n.ID)
		}
	}
	return ids
}
