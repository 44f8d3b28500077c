package clusterkit

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	"github.com/clusterkit-go/clusterkit/internal/dashboard"
	"github.com/clusterkit-go/clusterkit/internal/joininfo"
	"github.com/clusterkit-go/clusterkit/internal/nextmap"
	"github.com/clusterkit-go/clusterkit/pkg/wire"
)

// HTTP limits: the API only answers small GET requests, so anything large or slow is refused.
const (
	maxHeaderBytes    = 16 << 10
	readHeaderTimeout = 5 * time.Second
	writeTimeout      = 30 * time.Second
	idleTimeout       = 60 * time.Second
	maxJoinInfoBytes  = 1 << 20
	// maxClusterWait caps the long poll of GET /cluster?wait=.
	maxClusterWait = 60 * time.Second
	// fenceCheckEvery is how often a long poll checks that the node is not fenced.
	fenceCheckEvery = time.Second
)

func newHTTPServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		MaxHeaderBytes:    maxHeaderBytes,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readHeaderTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
	}
}

// encodedCluster caches the /cluster body of one snapshot and admin view: it is built once per
// map, and again when the operators' actions it shows change.
type encodedCluster struct {
	body *body
	etag string
	// admin is the tag of the admin view the body shows.
	admin string
}

// Handler returns the node's HTTP API, read-only; its JSON documents are declared in pkg/wire:
//
//	GET /cluster       the cluster's nodes (with each one's weight and state, from the operators'
//	                   records under admin/ as the node follows them), partition map and copies,
//	                   the maintenances that stand, and apart from the nodes the crashed ones
//	                   whose places the map keeps (down); its ETag is derived from the epoch and,
//	                   when any operator's drain, cordon, weight or maintenance stands, from those
//	                   too; with ?wait=30s and If-None-Match: <tag>, a long poll that answers as
//	                   soon as the node holds another map or those records change (200), or 304
//	                   after the wait (at most 60s)
//	GET /cluster/nodes GET /cluster without the partition map and the copies: the nodes with
//	                   their weight and state, the maintenances and the down nodes; the same
//	                   ETag and long poll
//	GET /cluster/map   ?since=<epoch>: the partitions that changed since the map of that epoch,
//	                   with the node table; every partition ("full") when since is 0 or a map the
//	                   node no longer keeps; 304 when the map is still that one, after the
//	                   ?wait= long poll of GET /cluster
//	GET /cluster/join  the etcd endpoints and cluster name, for nodes started with JoinAddr
//	GET /health        200 when the node is registered and holds a map, 503 otherwise
//	GET /cluster/claims the partitions this node claims to lead right now, with their primary
//	                   epochs (none while it is self-fenced), for operators and invariant checks
//	GET /cluster/history ?since=<epoch>&limit=<n>: what each map published after that epoch
//	                   changed (cause, moves, copies, compute time), oldest first, from the
//	                   records the leader keeps in etcd (the last 1000 maps)
//	GET /metrics       the metrics of Options.Registerer when it is a prometheus.Gatherer
//	GET /ui/           a read-only dashboard that follows the map (internal/dashboard): static
//	                   files embedded in the binary, under a strict Content-Security-Policy;
//	                   /ui redirects there
//
// Start serves it on HTTPAddr; it can also be mounted on another server. Every other method is
// refused with 405: nothing in this API changes the cluster.
func (ck *ClusterKit) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/cluster", ck.handleCluster)
	mux.HandleFunc("/cluster/nodes", ck.handleNodes)
	mux.HandleFunc("/cluster/map", ck.handleClusterMap)
	mux.HandleFunc("/cluster/join", ck.handleJoin)
	mux.HandleFunc("/health", ck.handleHealth)
	mux.HandleFunc("/cluster/claims", ck.handleClaims)
	mux.HandleFunc("/cluster/ca", ck.handleCA)
	mux.HandleFunc("/cluster/history", ck.handleHistory)
	mux.Handle(dashboard.Path, dashboard.Handler())
	mux.Handle(dashboard.Path+"/", dashboard.Handler())
	if g, ok := ck.env.opts.Registerer.(prometheus.Gatherer); ok {
		mux.Handle("/metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{ErrorLog: zap.NewStdLog(ck.env.log)}))
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The one POST: a joining node's certificate request in secure mode, which changes
		// nothing in the cluster.
		joinPost := r.Method == http.MethodPost && r.URL.Path == "/cluster/join" && ck.env.secure != nil
		if r.Method != http.MethodGet && r.Method != http.MethodHead && !joinPost {
			w.Header().Set("Allow", "GET, HEAD")
			writeError(w, http.StatusMethodNotAllowed, "this API is read-only: use GET")
			return
		}
		if !joinPost {
			r.Body = http.MaxBytesReader(w, r.Body, 0)
		}
		mux.ServeHTTP(w, r)
	})
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, wire.Error{Error: msg})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	w.Write(append(b, '\n'))
}

func (ck *ClusterKit) handleCluster(w http.ResponseWriter, r *http.Request) {
	if s, a, ok := ck.pollCluster(w, r); ok {
		s.encoded(ck, a).body.write(w, r, http.StatusOK)
	}
}

func (ck *ClusterKit) handleNodes(w http.ResponseWriter, r *http.Request) {
	if s, a, ok := ck.pollCluster(w, r); ok {
		doc := wire.ClusterNodes{ID: ck.env.config.ClusterID, Name: ck.env.clusterName, Epoch: s.epoch,
			Nodes: s.nodeDocs(a), Maintenance: a.maintenance, Down: s.down()}
		writeJSON(w, http.StatusOK, doc)
	}
}

// pollCluster is what GET /cluster and /cluster/nodes share: it returns the map and the admin
// view to answer with, after the long poll when the request asks for one, with the ETag header
// set. It returns false when it has answered itself: an error status, or 304 when the client
// holds that state already (the tag in If-None-Match).
func (ck *ClusterKit) pollCluster(w http.ResponseWriter, r *http.Request) (*snapshot, *adminView, bool) {
	wait, err := parseWait(r.URL.Query().Get("wait"))
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return nil, nil, false
	}
	s, a := ck.maps.snapshot(), ck.admin.current()
	if s == nil {
		writeError(w, http.StatusServiceUnavailable, "no partition map yet")
		return nil, nil, false
	}
	tag := clusterETag(ck.env.config.ClusterID, s.epoch, a)
	match := r.Header.Get("If-None-Match")
	if wait > 0 && match != "" && etagMatches(match, tag) {
		code, msg := ck.waitFor(w, r, wait, func() bool {
			return clusterETag(ck.env.config.ClusterID, ck.maps.snapshot().epoch, ck.admin.current()) != tag
		})
		if code != 0 {
			writeError(w, code, msg)
			return nil, nil, false
		}
		s, a = ck.maps.snapshot(), ck.admin.current()
		tag = clusterETag(ck.env.config.ClusterID, s.epoch, a)
	}
	w.Header().Set("ETag", tag)
	w.Header().Set("Cache-Control", "no-cache")
	if match != "" && etagMatches(match, tag) {
		w.WriteHeader(http.StatusNotModified)
		return nil, nil, false
	}
	return s, a, true
}

// parseWait parses the wait parameter of GET /cluster and /cluster/map: a Go duration
// ("30s"), capped at maxClusterWait; "" is no wait.
func parseWait(v string) (time.Duration, error) {
	if v == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("parameter wait=%q: want a duration such as 30s (at most %v)", v, maxClusterWait)
	}
	return min(d, maxClusterWait), nil
}

// waitFor is the long poll of GET /cluster, /cluster/nodes and /cluster/map with wait: it blocks
// until changed reports true (asked at once, then whenever the node applies a map or what it
// shows of the operators' actions changes), wait passes or the client goes away (status 0 both),
// or the node stops or fences itself (an error status: its map may then be stale, so the client
// should ask another node). When Options.MaxLongPolls already wait, it answers 503 at once, with
// Retry-After.
func (ck *ClusterKit) waitFor(w http.ResponseWriter, r *http.Request, wait time.Duration, changed func() bool) (int, string) {
	// Each waiting poll holds a goroutine and a connection (a client holds one); beyond
	// Options.MaxLongPolls one more is sent to another node.
	if ck.api.polls.Add(1) > int64(ck.env.opts.MaxLongPolls) {
		ck.api.polls.Add(-1)
		w.Header().Set("Retry-After", "1")
		return http.StatusServiceUnavailable, "too many long polls wait on this node: ask another"
	}
	defer ck.api.polls.Add(-1)
	// The server's WriteTimeout counts from the request: extend it past the wait. A writer
	// that cannot (the handler mounted on another server) keeps that server's timeout.
	http.NewResponseController(w).SetWriteDeadline(time.Now().Add(wait + writeTimeout))
	timer := time.NewTimer(wait)
	defer timer.Stop()
	// A node cut off from etcd keeps its last map without knowing it is stale; it fences
	// itself within its lease TTL, and the poll then sends the client elsewhere.
	fence := time.NewTicker(fenceCheckEvery)
	defer fence.Stop()
	for {
		// The channels before the check: a change in between closes them, so none is missed.
		mapChanged, adminChanged := ck.maps.changes(), ck.admin.changes()
		if ck.clock.Fenced() {
			return http.StatusServiceUnavailable, "node is fenced (lease not renewed): its map may be stale"
		}
		if changed() {
			return 0, ""
		}
		select {
		case <-mapChanged:
		case <-adminChanged:
		case <-timer.C:
			return 0, ""
		case <-r.Context().Done():
			return 0, ""
		case <-ck.stopping:
			return http.StatusServiceUnavailable, "node is stopping"
		case <-fence.C:
		}
	}
}

func etagMatches(header, etag string) bool {
	for _, t := range strings.Split(header, ",") {
		t = strings.TrimSpace(t)
		if t == "*" || strings.TrimPrefix(t, "W/") == etag {
			return true
		}
	}
	return false
}

// encoded returns the /cluster body of s with the operators' actions of a, building it on first
// use and again when a shows other actions than the body last built.
func (s *snapshot) encoded(ck *ClusterKit, a *adminView) *encodedCluster {
	s.encMu.Lock()
	defer s.encMu.Unlock()
	if s.enc != nil && s.enc.admin == a.tag {
		return s.enc
	}
	body := wire.Cluster{
		Cluster: wire.ClusterState{
			ID:           ck.env.config.ClusterID,
			Name:         ck.env.clusterName,
			Epoch:        s.epoch,
			Leader:       s.leader,
			UpdatedAt:    s.updatedAt,
			Cause:        s.raw.Cause,
			Nodes:        s.nodeDocs(a),
			PartitionMap: make(map[string]wire.Partition, len(s.partitions)),
			Handoffs:     []wire.Handoff{},
			Maintenance:  a.maintenance,
			Down:         s.down(),
		},
		HashConfig: ck.env.config.Hash,
	}
	for i := range s.partitions {
		p := &s.partitions[i]
		body.Cluster.PartitionMap[p.ID] = wire.Partition{
			ID: p.ID, PrimaryNode: p.PrimaryNode, ReplicaNodes: p.ReplicaNodes,
			PrimaryEpoch: p.PrimaryEpoch, Epoch: p.Epoch, PendingNodes: p.PendingNodes,
		}
	}
	for i := range s.raw.Partitions {
		e := &s.raw.Partitions[i]
		for _, pd := range e.Pending {
			age := s.updatedAt.Sub(pd.Started)
			body.Cluster.Handoffs = append(body.Cluster.Handoffs, wire.Handoff{
				Partition: s.partitions[i].ID, Node: pd.Node, From: e.Holders, Since: pd.Since,
				Started: pd.Started, Attempt: pd.Attempt, Age: age.Round(time.Millisecond).String(),
				Overdue: pd.Attempt > 1,
			})
		}
	}
	if q := nextmap.Queued(s.raw); len(q) > 0 {
		body.Cluster.Queued = q
	}
	b, err := json.Marshal(body)
	if err != nil {
		b, _ = json.Marshal(wire.Error{Error: err.Error()})
	}
	s.enc = &encodedCluster{body: newBody(append(b, '\n')), etag: clusterETag(ck.env.config.ClusterID, s.epoch, a), admin: a.tag}
	return s.enc
}

// nodeDocs are the documents of s's nodes, with their weight and state as a says.
func (s *snapshot) nodeDocs(a *adminView) map[string]wire.Node {
	out := make(map[string]wire.Node, len(s.nodes))
	for id, n := range s.nodes {
		out[id] = a.node(n, s.raw.Nodes[id])
	}
	return out
}

// down lists the crashed nodes whose places the map keeps; nil when there are none.
func (s *snapshot) down() map[string]wire.DownNode {
	if len(s.raw.Absent) == 0 {
		return nil
	}
	out := make(map[string]wire.DownNode, len(s.raw.Absent))
	for id, a := range s.raw.Absent {
		out[id] = wire.DownNode{Since: a.Since, Zone: a.Zone}
	}
	return out
}

// mapETag is the ETag of the map of epoch in GET /cluster/map. The cluster ID makes the tag
// differ between two clusters (or a recreated one) at the same epoch; the epoch makes every
// published map differ.
func mapETag(clusterID string, epoch uint64) string {
	return fmt.Sprintf(`"%s-%d"`, clusterID, epoch)
}

// clusterETag is the ETag of GET /cluster and /cluster/nodes: the map's tag, with the admin
// view's appended when any operator's action it shows stands, since the bodies show them too.
// Nodes that hold the same map and read the same actions give the same tag.
func clusterETag(clusterID string, epoch uint64, a *adminView) string {
	if a.tag == "" {
		return mapETag(clusterID, epoch)
	}
	return fmt.Sprintf(`"%s-%d-%s"`, clusterID, epoch, a.tag)
}

func (ck *ClusterKit) handleJoin(w http.ResponseWriter, r *http.Request) {
	// The snapshot first: it is stored only after Start has set the client, so once it is
	// there the client is too.
	if ck.maps.snapshot() == nil || ck.env.client == nil {
		writeError(w, http.StatusServiceUnavailable, "node is not started")
		return
	}
	info := wire.JoinInfo{
		ClusterName:       ck.env.clusterName,
		ClusterID:         ck.env.config.ClusterID,
		EtcdEndpoints:     ck.env.client.Endpoints(),
		PartitionCount:    ck.env.config.PartitionCount,
		ReplicationFactor: ck.env.config.ReplicationFactor,
	}
	if ck.env.secure != nil {
		ck.handleSecureJoin(w, r, info)
		return
	}
	writeJSON(w, http.StatusOK, info)
}

func (ck *ClusterKit) handleHealth(w http.ResponseWriter, r *http.Request) {
	h := wire.Health{Status: "ok", NodeID: ck.env.opts.NodeID, Epoch: ck.Epoch(), Leader: ck.Leader(), IsLeader: ck.IsLeader(), Fenced: ck.clock.Fenced()}
	left := time.Until(ck.clock.Deadline())
	h.LeaseValidFor = left.Round(time.Millisecond).String()
	code := http.StatusOK
	if ck.maps.snapshot() != nil { // the cluster's config is known from then on
		h.EtcdMember = ck.members.memberState()
	}
	switch {
	case ck.maps.snapshot() == nil:
		h.Status, code = "no partition map yet", http.StatusServiceUnavailable
	case left <= 0:
		h.Status, code = "lease not renewed: etcd unreachable?", http.StatusServiceUnavailable
	case h.Fenced:
		// The lease was lost and the node registers again: it claims no role until it has read
		// the map under its new lease.
		h.Status, code = "lease lost: registering again", http.StatusServiceUnavailable
	}
	writeJSON(w, code, h)
}

// fetchJoinInfo asks the node at addr for its cluster's etcd endpoints: over https with the
// join token and the pinned CA in secure mode (s not nil), over https with clientTLS when the
// cluster's API is served over TLS, else over http.
func fetchJoinInfo(ctx context.Context, addr string, s *secure, clientTLS *tls.Config) (*wire.JoinInfo, error) {
	url, httpc, token := "http://"+addr+"/cluster/join", http.DefaultClient, ""
	switch {
	case s != nil:
		url, token = "https://"+addr+"/cluster/join", s.token
		httpc = &http.Client{Transport: &http.Transport{TLSClientConfig: pinned(s.ca.Pool())}}
		defer httpc.CloseIdleConnections()
	case clientTLS != nil:
		url = "https://" + addr + "/cluster/join"
		httpc = &http.Client{Transport: &http.Transport{TLSClientConfig: clientTLS}}
		defer httpc.CloseIdleConnections()
	}
	var info *wire.JoinInfo
	err := retryJoinAddr(ctx, addr, "", func() (err error) {
		info, err = getJoinInfo(ctx, httpc, url, token)
		return err
	})
	return info, err
}

// retryJoinAddr calls ask until it succeeds or ctx ends, waiting a little longer after each
// failure (up to a second): the node at JoinAddr may itself be starting. The error names addr,
// the attempts and hint.
func retryJoinAddr(ctx context.Context, addr, hint string, ask func() error) error {
	for attempt := 0; ; attempt++ {
		err := ask()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("clusterkit: JoinAddr %s: %w (after %d attempts%s)", addr, err, attempt+1, hint)
		case <-time.After(min(time.Duration(attempt+1)*100*time.Millisecond, time.Second)):
		}
	}
}

// getBody GETs url with httpc, token as a bearer token when not empty, and returns the body of a
// 200 answer, at most maxJoinInfoBytes of it.
func getBody(ctx context.Context, httpc *http.Client, url, token string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := httpc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJoinInfoBytes))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s: %s", url, resp.Status, strings.TrimSpace(string(body)))
	}
	return body, nil
}

func getJoinInfo(ctx context.Context, httpc *http.Client, url, token string) (*wire.JoinInfo, error) {
	body, err := getBody(ctx, httpc, url, token)
	if err != nil {
		return nil, err
	}
	info, err := joininfo.Decode(body)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", url, err)
	}
	return info, nil
}

func (ck *ClusterKit) handleClaims(w http.ResponseWriter, r *http.Request) {
	out := wire.Claims{NodeID: ck.env.opts.NodeID, Fenced: ck.clock.Fenced(), Primaries: map[string]uint64{}}
	if s := ck.maps.snapshot(); s != nil {
		out.Epoch = s.epoch
		for i := range s.partitions {
			p := &s.partitions[i]
			if ck.IsPrimaryAt(p, p.PrimaryEpoch) {
				out.Primaries[p.ID] = p.PrimaryEpoch
			}
		}
	}
	writeJSON(w, http.StatusOK, out)
}
