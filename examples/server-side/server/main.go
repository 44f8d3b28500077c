// Command server is a node of the server-side routing example: any node accepts plain HTTP
// from clients that know nothing of the cluster, and routes each request itself.
//
//	curl -X POST http://127.0.0.1:9080/kv/set -d '{"key":"k","value":"v"}'
//	curl 'http://127.0.0.1:9080/kv/get?key=k'
//
// On POST /kv/set the node looks up the key's partition: as its primary it stores the value and
// replicates it to the replicas before answering (store.Sync); otherwise it forwards the request
// to the primary. A replica forwards too, rather than storing a write the primary has not
// ordered: the primary stamps every write with its epoch and a counter, so its copies and the
// replicas' never disagree on which write is newer. GET /kv/get reads from the primary the same
// way. When the primary is unreachable (it died and the map has not replaced it yet) or refuses
// (it just lost the role), the node retries against the primary of its current map until
// -route-timeout; a client sees the failover as a slower answer, not an error.
//
// Answers: 200 {"key","value","version","node"} (node: the primary that served it); 404
// not_found; 400 bad_request; 413 too_large (a value over -max-value-bytes, 1 MiB by default);
// 401 unauthorized when the cluster has a join token and the request does not carry it
// (curl -H "Authorization: Bearer $JOIN_TOKEN" ...); 503 (or the primary's own error) when no
// primary answered in time. GET /kv/stats counts the requests served as primary, forwarded and
// retried. A forwarded request carries the token too.
//
// Flags: see examples/internal/kvnode, plus -route-timeout.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net/http"
	"net/url"
	"os"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/clusterkit-go/clusterkit/examples/internal/kvnode"
	"github.com/clusterkit-go/clusterkit/examples/internal/store"
)

// forwardedHeader marks a request a node forwarded: the receiver serves it as primary or
// refuses it, but never forwards it again, so two nodes whose maps briefly differ cannot
// bounce a request between them.
const forwardedHeader = "X-KV-Forwarded-By"

func main() {
	fs := flag.NewFlagSet("server", flag.ExitOnError)
	cfg := kvnode.RegisterFlags(fs)
	routeTimeout := fs.Duration("route-timeout", 15*time.Second, "how long a node keeps retrying to reach a key's primary")
	fs.Parse(os.Args[1:])
	err := kvnode.Run(cfg, store.Sync, func(n *kvnode.Node) {
		r := &router{node: n, timeout: *routeTimeout, httpc: n.HTTP}
		n.Mux.HandleFunc("POST /kv/set", r.set)
		n.Mux.HandleFunc("GET /kv/get", r.get)
		n.Mux.HandleFunc("GET /kv/stats", r.stats)
	})
	if err != nil {
		log.Fatal(err)
	}
}

// router serves the client API of one node.
type router struct {
	node    *kvnode.Node
	timeout time.Duration
	httpc   *http.Client

	asPrimary, forwarded, retries atomic.Int64
}

func (r *router) set(w http.ResponseWriter, req *http.Request) {
	put, err := r.node.Store.ReadPut(w, req)
	if err != nil {
		store.WriteError(w, err)
		return
	}
	r.route(w, req, put.Key, func(ctx context.Context) (store.Entry, error) {
		return r.node.Store.Put(ctx, put.Key, put.Value)
	}, func(ctx context.Context, addr string) (store.Entry, error) {
		var e store.Entry
		err := store.Call(ctx, r.httpc, http.MethodPost, addr, "/kv/set", r.forwardHeader(), put, &e)
		return e, err
	})
}

func (r *router) get(w http.ResponseWriter, req *http.Request) {
	key := req.URL.Query().Get("key")
	if key == "" {
		store.WriteError(w, fmt.Errorf("%w: the query needs a non-empty key", store.ErrBadRequest))
		return
	}
	r.route(w, req, key, func(context.Context) (store.Entry, error) {
		return r.node.Store.Get(key)
	}, func(ctx context.Context, addr string) (store.Entry, error) {
		var e store.Entry
		err := store.Call(ctx, r.httpc, http.MethodGet, addr, "/kv/get?key="+url.QueryEscape(key), r.forwardHeader(), nil, &e)
		return e, err
	})
}

func (r *router) forwardHeader() http.Header {
	return http.Header{forwardedHeader: {r.node.CK.GetMyNodeID()}}
}

// answer is a served request: the entry, and the primary that served it.
type answer struct {
	store.Entry
	Node string `json:"node"`
}

// route serves key's request locally when this node is the primary, else forwards it to the
// primary; it retries while the primary is unreachable, refuses (not_primary) or could not
// replicate, until r.timeout. A forwarded request is served once, never forwarded again.
func (r *router) route(w http.ResponseWriter, req *http.Request, key string,
	local func(context.Context) (store.Entry, error), remote func(context.Context, string) (store.Entry, error)) {
	ck := r.node.CK
	forwarded := req.Header.Get(forwardedHeader) != ""
	ctx, cancel := context.WithTimeout(req.Context(), r.timeout)
	defer cancel()
	backoff := 5 * time.Millisecond
	for attempt := 1; ; attempt++ {
		var e store.Entry
		var err error
		served := ck.GetMyNodeID()
		p, perr := ck.GetPartition(key)
		switch {
		case perr != nil:
			err = perr
		case ck.IsPrimary(p) || forwarded:
			// A forwarded request is served here or refused: the sender re-routes.
			e, err = local(ctx)
			if err == nil {
				r.asPrimary.Add(1)
			}
		default:
			primary := ck.GetPrimary(p)
			served = primary.ID
			e, err = remote(ctx, primary.Metadata[store.AddrKey])
			if err == nil {
				r.forwarded.Add(1)
			}
		}
		if err == nil {
			store.WriteJSON(w, http.StatusOK, answer{Entry: e, Node: served})
			return
		}
		if forwarded || !retryable(err) || ctx.Err() != nil {
			if ctx.Err() != nil {
				r.node.Log.Warn("no primary answered in time", zap.String("key", key), zap.Int("attempts", attempt), zap.Error(err))
			}
			store.WriteError(w, err)
			return
		}
		r.retries.Add(1)
		select {
		case <-ctx.Done():
			store.WriteError(w, err)
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 200*time.Millisecond)
	}
}

// retryable reports whether another attempt, after the map has had time to change, may
// succeed: everything but a bad request, a missing key, a cancelled client, and a refusal of the
// token or of the size, which no change of the map cures.
func retryable(err error) bool {
	for _, final := range []error{store.ErrBadRequest, store.ErrNotFound, context.Canceled, store.ErrUnauthorized, store.ErrTooLarge} {
		if errors.Is(err, final) {
			return false
		}
	}
	return true
}

func (r *router) stats(w http.ResponseWriter, _ *http.Request) {
	store.WriteJSON(w, http.StatusOK, map[string]int64{
		"served_as_primary": r.asPrimary.Load(),
		"forwarded":         r.forwarded.Load(),
		"retries":           r.retries.Load(),
	})
}
