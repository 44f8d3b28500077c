package workload

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/clusterkit-go/clusterkit/examples/internal/store"
)

// AnyNode is the client of the server-side example: it knows some nodes' data API addresses
// and nothing of the cluster, sends each request to one of them at random, and tries another
// when a node does not answer (it died) or answers 5xx.
type AnyNode struct {
	Addrs []string
	HTTP  *http.Client

	mu sync.Mutex
	// down is when each unreachable node may be tried again.
	down map[string]time.Time
}

// pick returns a node not marked down, at random; any node when all are down.
func (a *AnyNode) pick() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	var up []string
	for _, addr := range a.Addrs {
		if time.Now().After(a.down[addr]) {
			up = append(up, addr)
		}
	}
	if len(up) == 0 {
		up = a.Addrs
	}
	return up[rand.IntN(len(up))]
}

func (a *AnyNode) markDown(addr string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.down == nil {
		a.down = map[string]time.Time{}
	}
	a.down[addr] = time.Now().Add(time.Second)
}

// do runs one request against a node, trying others until ctx ends or an answer other than a
// transport failure or 5xx comes back.
func (a *AnyNode) do(ctx context.Context, method, path string, in, out any) error {
	for {
		addr := a.pick()
		err := store.Call(ctx, a.HTTP, method, addr, path, nil, in, out)
		var apiErr *store.APIError
		switch {
		case err == nil:
			return nil
		case errors.As(err, &apiErr) && apiErr.Status < 500:
			return err
		case !errors.As(err, &apiErr):
			a.markDown(addr)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %v)", ctx.Err(), err)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// Set posts to /kv/set of any node.
func (a *AnyNode) Set(ctx context.Context, key, value string) error {
	return a.do(ctx, http.MethodPost, "/kv/set", store.PutRequest{Key: key, Value: value}, nil)
}

// Get reads /kv/get of any node.
func (a *AnyNode) Get(ctx context.Context, key string) (string, bool, error) {
	var e store.Entry
	err := a.do(ctx, http.MethodGet, "/kv/get?key="+url.QueryEscape(key), nil, &e)
	if errors.Is(err, store.ErrNotFound) {
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	return e.Value, true, nil
}
