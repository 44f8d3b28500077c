package workload

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/clusterkit-go/clusterkit/examples/internal/store"
	"github.com/clusterkit-go/clusterkit/pkg/client"
)

// Primary is the client of the async example: it routes each key with pkg/client and sends
// the operation to the partition's primary data API (POST /store/put, GET /store/get), which
// answers as soon as it has stored the write. Do moves on to a replica when the primary cannot
// be reached; a replica refuses (not_primary), and Primary tries again, after a short backoff,
// until the map names a new primary or ctx ends.
type Primary struct {
	Client *client.Client
	HTTP   *http.Client
}

// Set writes key = value on its primary.
func (p *Primary) Set(ctx context.Context, key, value string) error {
	return p.retry(ctx, key, func(ctx context.Context, n client.Node) error {
		return store.Call(ctx, p.HTTP, http.MethodPost, n.Metadata[store.AddrKey], "/store/put", nil,
			store.PutRequest{Key: key, Value: value}, nil)
	})
}

// Get reads key from its primary.
func (p *Primary) Get(ctx context.Context, key string) (string, bool, error) {
	var e store.Entry
	err := p.retry(ctx, key, func(ctx context.Context, n client.Node) error {
		return store.Call(ctx, p.HTTP, http.MethodGet, n.Metadata[store.AddrKey], "/store/get?key="+url.QueryEscape(key), nil, nil, &e)
	})
	if errors.Is(err, store.ErrNotFound) {
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	return e.Value, true, nil
}

// retry runs op through Client.Do until it succeeds, fails for good (bad request, not found,
// a refused token or size) or ctx ends.
func (p *Primary) retry(ctx context.Context, key string, op func(context.Context, client.Node) error) error {
	backoff := 5 * time.Millisecond
	for {
		err := p.Client.Do(ctx, key, func(ctx context.Context, n client.Node, _ client.Route) error {
			if n.Metadata[store.AddrKey] == "" {
				return fmt.Errorf("node %s publishes no %q", n.ID, store.AddrKey)
			}
			return op(ctx, n)
		})
		if err == nil || errors.Is(err, store.ErrBadRequest) || errors.Is(err, store.ErrNotFound) ||
			errors.Is(err, store.ErrUnauthorized) || errors.Is(err, store.ErrTooLarge) {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %v)", ctx.Err(), err)
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 100*time.Millisecond)
	}
}
