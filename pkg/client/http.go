package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/clusterkit-go/clusterkit/internal/backoff"
	"github.com/clusterkit-go/clusterkit/internal/topology"
	"github.com/clusterkit-go/clusterkit/pkg/wire"
)

// maxClusterBody bounds a GET /cluster answer (a 65536-partition map is a few MiB).
const maxClusterBody = 64 << 20

// staleAnswerPause is how long the poll pauses after an answer that brought no newer map.
const staleAnswerPause = time.Second

// scheme is the URL scheme and separator of the nodes' API: https with Config.TLS.
func (c *Client) scheme() string {
	if c.cfg.TLS != nil {
		return "https://"
	}
	return "http://"
}

// errNotModified is a 304: the node's map is still the one named by the tag or epoch sent.
var errNotModified = errors.New("not modified")

// errNoMapEndpoint is a 404 for GET /cluster/map: a node of a version without it, to be asked
// GET /cluster instead.
var errNoMapEndpoint = errors.New("the node does not serve GET /cluster/map")

// fetch GETs the map of the node at addr. With a tag and a wait it is a long poll: it returns
// errNotModified when the node's map is still that one after the wait.
func (c *Client) fetch(ctx context.Context, addr, tag string, wait time.Duration) (*topology.Topology, error) {
	url := c.scheme() + addr + "/cluster"
	if tag != "" && wait > 0 {
		url += "?wait=" + wait.String()
	}
	body, etag, err := c.get(ctx, url, tag)
	if err != nil {
		return nil, err
	}
	var doc wire.Cluster
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, fmt.Errorf("GET %s: not a ClusterKit node: %v", url, err)
	}
	t, err := topology.FromCluster(&doc, etag)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", url, err)
	}
	if want := c.cfg.ClusterName; want != "" && t.ClusterName != want {
		return nil, fmt.Errorf("%w: ClusterName is %q but %s belongs to cluster %q", ErrInvalidConfig, want, addr, t.ClusterName)
	}
	if old := c.topo.Load(); old != nil && old.ClusterID != t.ClusterID {
		return nil, fmt.Errorf("GET %s: the node belongs to another cluster (id %s, this client follows %s)", url, t.ClusterID, old.ClusterID)
	}
	return t, nil
}

// fetchDelta long-polls GET /cluster/map on the node at addr for what changed since the map the
// client holds, and builds the new map from it (see topology.FromDelta). It returns
// errNotModified when the node's map is still the client's after the wait, and
// errNoMapEndpoint when the node does not serve GET /cluster/map.
func (c *Client) fetchDelta(ctx context.Context, addr string, wait time.Duration) (*topology.Topology, error) {
	held := c.topo.Load()
	url := fmt.Sprintf("%s%s/cluster/map?since=%d&wait=%s", c.scheme(), addr, held.Epoch, wait)
	body, etag, err := c.get(ctx, url, "")
	var status statusError
	if errors.As(err, &status) && status.code == http.StatusNotFound {
		return nil, errNoMapEndpoint
	}
	if err != nil {
		return nil, err
	}
	var d wire.MapDelta
	if err := json.Unmarshal(body, &d); err != nil {
		return nil, fmt.Errorf("GET %s: not a ClusterKit node: %v", url, err)
	}
	if d.ID != held.ClusterID {
		return nil, fmt.Errorf("GET %s: the node belongs to another cluster (id %q, this client follows %s)", url, d.ID, held.ClusterID)
	}
	t, err := topology.FromDelta(held, &d, etag)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", url, err)
	}
	return t, nil
}

// statusError is an answer other than 200 and 304.
type statusError struct {
	code int
	msg  string
}

func (e statusError) Error() string { return e.msg }

// get sends GET url, with If-None-Match: tag when tag is set, and returns the body of a 200 (at
// most maxClusterBody bytes) and its ETag. A 304 is errNotModified; any other status a
// statusError naming it.
func (c *Client) get(ctx context.Context, url, tag string) (body []byte, etag string, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, "", err
	}
	if tag != "" {
		req.Header.Set("If-None-Match", tag)
	}
	resp, err := c.httpc.Do(req)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	body, err = io.ReadAll(io.LimitReader(resp.Body, maxClusterBody))
	if err != nil {
		return nil, "", fmt.Errorf("GET %s: %w", url, err)
	}
	switch resp.StatusCode {
	case http.StatusOK:
		return body, resp.Header.Get("ETag"), nil
	case http.StatusNotModified:
		return nil, "", errNotModified
	}
	return nil, "", statusError{code: resp.StatusCode, msg: fmt.Sprintf("GET %s: %s: %s", url, resp.Status, strings.TrimSpace(string(body)))}
}

// firstHTTPRead reads the map from the seeds, in order, round after round until one answers or
// ctx ends. It returns the address that answered.
func (c *Client) firstHTTPRead(ctx context.Context) (string, error) {
	retry := backoff.Backoff{Min: minBackoff, Max: maxBackoff}
	lastErr := make([]error, len(c.cfg.Seeds))
	for {
		for i, addr := range c.cfg.Seeds {
			rctx, cancel := context.WithTimeout(ctx, readTimeout)
			t, err := c.fetch(rctx, addr, "", 0)
			cancel()
			if err == nil {
				c.apply(t)
				return addr, nil
			}
			if errors.Is(err, ErrUnsupportedHash) || errors.Is(err, ErrInvalidConfig) {
				return "", err
			}
			// A read cut short by ctx's end says less than what the seed answered before.
			if lastErr[i] == nil || ctx.Err() == nil {
				lastErr[i] = err
			}
			if ctx.Err() != nil {
				break
			}
		}
		select {
		case <-ctx.Done():
			var b strings.Builder
			for i, addr := range c.cfg.Seeds {
				if lastErr[i] != nil {
					fmt.Fprintf(&b, "; %s: %v", addr, lastErr[i])
				}
			}
			return "", fmt.Errorf("clusterkit: no seed served the cluster map (%w)%s", ctx.Err(), b.String())
		case <-time.After(retry.Next()):
		}
	}
}

// followHTTP keeps the map fresh until ctx ends: it long-polls one node at a time for what
// changed since the map it holds (GET /cluster/map), and moves to the next seed or learned node
// when that one fails, with a backoff once all have failed. A node that does not serve
// GET /cluster/map is long-polled with GET /cluster and the map's tag instead.
func (c *Client) followHTTP(ctx context.Context, addr string) {
	tag := c.topo.Load().ETag
	// plain is set while addr is a node without GET /cluster/map (an older version), until the
	// poll moves to another node: a node upgraded meanwhile is asked again then.
	plain := false
	failures := 0
	retry := backoff.Backoff{Min: minBackoff, Max: maxBackoff}
	for ctx.Err() == nil {
		pctx, cancel := context.WithTimeout(ctx, c.wait+pollSlack)
		c.pollMu.Lock()
		c.pollAddr, c.pollCancel = addr, cancel
		c.pollMu.Unlock()
		var t *topology.Topology
		var err error
		if !plain {
			if t, err = c.fetchDelta(pctx, addr, c.wait); errors.Is(err, errNoMapEndpoint) {
				c.log.Debug("node does not serve GET /cluster/map, polling GET /cluster", zap.String("addr", addr))
				plain, tag = true, c.topo.Load().ETag
			}
		}
		if plain {
			t, err = c.fetch(pctx, addr, tag, c.wait)
		}
		c.pollMu.Lock()
		c.pollAddr, c.pollCancel = "", nil
		c.pollMu.Unlock()
		cancel()
		if ctx.Err() != nil {
			return
		}
		switch {
		case errors.Is(err, errNotModified):
			failures = 0
			retry.Reset()
			continue
		case err == nil:
			failures = 0
			retry.Reset()
			// A node behind the client answers with an older map, which is not applied: in
			// GET /cluster/map it waits until it has a newer one than the client's before it
			// answers; in GET /cluster its own tag is polled next, so that it answers only when
			// it changes. A node that ignores the long poll answers at once every time: the
			// pause bounds that loop.
			tag = t.ETag
			if !c.apply(t) {
				select {
				case <-ctx.Done():
				case <-time.After(staleAnswerPause):
				}
			}
			continue
		}
		candidates := c.candidates()
		c.log.Debug("topology poll failed, moving on", zap.String("addr", addr), zap.Error(err))
		addr = next(candidates, addr)
		tag, plain = c.topo.Load().ETag, false
		if failures++; failures < len(candidates) {
			continue
		}
		c.log.Warn("no node answered the topology poll", zap.Int("tried", failures), zap.Error(err))
		failures = 0
		select {
		case <-ctx.Done():
		case <-time.After(retry.Next()):
		}
	}
}

// candidates are the addresses to poll: the seeds, then every node of the current map.
func (c *Client) candidates() []string {
	out := slices.Clone(c.cfg.Seeds)
	for _, n := range c.topo.Load().Nodes {
		if !slices.Contains(out, n.Addr) {
			out = append(out, n.Addr)
		}
	}
	return out
}

// next returns the address after addr in list, wrapping around.
func next(list []string, addr string) string {
	return list[(slices.Index(list, addr)+1)%len(list)]
}
