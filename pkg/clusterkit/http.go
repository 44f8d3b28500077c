package clusterkit

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/clusterkit-go/clusterkit/internal/state"
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

// clusterResponse is the body of GET /cluster: the original ClusterKit shape plus the epoch,
// the leader and the cluster's identity.
type clusterResponse struct {
	Cluster    clusterBody      `json:"cluster"`
	HashConfig state.HashConfig `json:"hash_config"`
}

type clusterBody struct {
	ID           string                `json:"id"`
	Name         string                `json:"name"`
	Epoch        uint64                `json:"epoch"`
	Leader       string                `json:"leader"`
	UpdatedAt    time.Time             `json:"updated_at"`
	Cause        state.Cause           `json:"cause"`
	Nodes        map[string]*Node      `json:"nodes"`
	PartitionMap map[string]*Partition `json:"partition_map"`
	Handoffs     []handoffStatus       `json:"handoffs"`
}

// handoffStatus is one pending copy in GET /cluster.
type handoffStatus struct {
	Partition string    `json:"partition"`
	Node      string    `json:"node"`
	From      []string  `json:"from"`
	Since     uint64    `json:"since_epoch"`
	Started   time.Time `json:"started"`
	Attempt   int       `json:"attempt"`
	// Age is how long the copy had been running when the map was published.
	Age     string `json:"age"`
	Overdue bool   `json:"overdue"`
}

// joinInfo is the body of GET /cluster/join: what a node started with JoinAddr needs.
type joinInfo struct {
	ClusterName       string   `json:"cluster_name"`
	ClusterID         string   `json:"cluster_id"`
	EtcdEndpoints     []string `json:"etcd_endpoints"`
	PartitionCount    int      `json:"partition_count"`
	ReplicationFactor int      `json:"replication_factor"`
}

// encodedCluster caches the /cluster body of one snapshot: it is built once per map.
type encodedCluster struct {
	body []byte
	etag string
}

// Handler returns the node's HTTP API, read-only:
//
//	GET /cluster       the cluster's nodes and partition map, with an ETag derived from the epoch;
//	                   with ?wait=30s and If-None-Match: <tag>, a long poll that answers as soon as
//	                   the node holds another map (200), or 304 after the wait (at most 60s)
//	GET /cluster/join  the etcd endpoints and cluster name, for nodes started with JoinAddr
//	GET /health        200 when the node is registered and holds a map, 503 otherwise
//	GET /cluster/claims the partitions this node claims to lead right now, with their primary
//	                   epochs (none while it is self-fenced), for operators and invariant checks
//
// Start serves it on HTTPAddr; it can also be mounted on another server. Every other method is
// refused with 405: nothing in this API changes the cluster.
func (ck *ClusterKit) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/cluster", ck.handleCluster)
	mux.HandleFunc("/cluster/join", ck.handleJoin)
	mux.HandleFunc("/health", ck.handleHealth)
	mux.HandleFunc("/cluster/claims", ck.handleClaims)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			writeError(w, http.StatusMethodNotAllowed, "this API is read-only: use GET")
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, 0)
		mux.ServeHTTP(w, r)
	})
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
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
	wait, err := parseWait(r.URL.Query().Get("wait"))
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	// The channel before the snapshot: a map applied in between closes it, so no change is
	// missed while waiting.
	changed := *ck.changed.Load()
	s := ck.snap.Load()
	if s == nil {
		writeError(w, http.StatusServiceUnavailable, "no partition map yet")
		return
	}
	enc := s.encoded(ck)
	match := r.Header.Get("If-None-Match")
	if wait > 0 && match != "" && etagMatches(match, enc.etag) {
		next, code, msg := ck.waitNewMap(w, r, changed, enc.etag, wait)
		if code != 0 {
			writeError(w, code, msg)
			return
		}
		if next != nil {
			enc, match = next, ""
		}
	}
	w.Header().Set("ETag", enc.etag)
	w.Header().Set("Cache-Control", "no-cache")
	if match != "" && etagMatches(match, enc.etag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(enc.body)))
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		w.Write(enc.body)
	}
}

// parseWait parses the wait parameter of GET /cluster: a Go duration ("30s"), capped at
// maxClusterWait; "" is no wait.
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

// waitNewMap is the long poll of GET /cluster?wait=: it blocks until the node holds a map
// whose tag differs from etag (and returns it), wait passes or the client goes away (nil), or
// the node stops or fences itself (an error status: its map may then be stale, so the client
// should ask another node).
func (ck *ClusterKit) waitNewMap(w http.ResponseWriter, r *http.Request, changed <-chan struct{}, etag string, wait time.Duration) (*encodedCluster, int, string) {
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
		if ck.selfFenced() {
			return nil, http.StatusServiceUnavailable, "node is fenced (lease not renewed): its map may be stale"
		}
		select {
		case <-changed:
			changed = *ck.changed.Load()
			if enc := ck.snap.Load().encoded(ck); enc.etag != etag {
				return enc, 0, ""
			}
		case <-timer.C:
			return nil, 0, ""
		case <-r.Context().Done():
			return nil, 0, ""
		case <-ck.runCtx.Done():
			return nil, http.StatusServiceUnavailable, "node is stopping"
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

// encoded returns the /cluster body of s, building it on first use.
func (s *snapshot) encoded(ck *ClusterKit) *encodedCluster {
	s.encOnce.Do(func() {
		body := clusterResponse{
			Cluster: clusterBody{
				ID:           ck.config.ClusterID,
				Name:         ck.opts.ClusterName,
				Epoch:        s.epoch,
				Leader:       s.leader,
				UpdatedAt:    s.updatedAt,
				Nodes:        s.nodes,
				PartitionMap: make(map[string]*Partition, len(s.partitions)),
			},
			HashConfig: ck.config.Hash,
		}
		for i := range s.partitions {
			body.Cluster.PartitionMap[s.partitions[i].ID] = &s.partitions[i]
		}
		body.Cluster.Cause = s.raw.Cause
		body.Cluster.Handoffs = []handoffStatus{}
		for i := range s.raw.Partitions {
			e := &s.raw.Partitions[i]
			for _, pd := range e.Pending {
				age := s.updatedAt.Sub(pd.Started)
				body.Cluster.Handoffs = append(body.Cluster.Handoffs, handoffStatus{
					Partition: s.partitions[i].ID, Node: pd.Node, From: e.Holders, Since: pd.Since,
					Started: pd.Started, Attempt: pd.Attempt, Age: age.Round(time.Millisecond).String(),
					Overdue: pd.Attempt > 1,
				})
			}
		}
		b, err := json.Marshal(body)
		if err != nil {
			b = []byte(fmt.Sprintf(`{"error":%q}`, err.Error()))
		}
		// The cluster ID makes the tag differ between two clusters (or a recreated one) at the
		// same epoch; the epoch makes every published map differ.
		s.enc = &encodedCluster{body: append(b, '\n'), etag: fmt.Sprintf(`"%s-%d"`, ck.config.ClusterID, s.epoch)}
	})
	return s.enc
}

func (ck *ClusterKit) handleJoin(w http.ResponseWriter, r *http.Request) {
	// The snapshot first: it is stored only after Start has set the client, so once it is
	// there the client is too.
	if ck.snap.Load() == nil || ck.client == nil {
		writeError(w, http.StatusServiceUnavailable, "node is not started")
		return
	}
	writeJSON(w, http.StatusOK, joinInfo{
		ClusterName:       ck.opts.ClusterName,
		ClusterID:         ck.config.ClusterID,
		EtcdEndpoints:     ck.client.Endpoints(),
		PartitionCount:    ck.config.PartitionCount,
		ReplicationFactor: ck.config.ReplicationFactor,
	})
}

type healthResponse struct {
	Status        string `json:"status"`
	NodeID        string `json:"node_id"`
	Epoch         uint64 `json:"epoch"`
	Leader        string `json:"leader"`
	IsLeader      bool   `json:"is_leader"`
	Fenced        bool   `json:"fenced"`
	LeaseDeadline string `json:"lease_valid_for"`
}

func (ck *ClusterKit) handleHealth(w http.ResponseWriter, r *http.Request) {
	h := healthResponse{Status: "ok", NodeID: ck.opts.NodeID, Epoch: ck.Epoch(), Leader: ck.Leader(), IsLeader: ck.IsLeader(), Fenced: ck.selfFenced()}
	left := time.Until(ck.deadline())
	h.LeaseDeadline = left.Round(time.Millisecond).String()
	code := http.StatusOK
	switch {
	case ck.snap.Load() == nil:
		h.Status, code = "no partition map yet", http.StatusServiceUnavailable
	case left <= 0:
		h.Status, code = "lease not renewed: etcd unreachable?", http.StatusServiceUnavailable
	}
	writeJSON(w, code, h)
}

// fetchJoinInfo asks the node at addr for its cluster's etcd endpoints.
func fetchJoinInfo(ctx context.Context, addr string) (*joinInfo, error) {
	url := "http://" + addr + "/cluster/join"
	var lastErr error
	// The node being joined may itself be starting: retry until ctx ends.
	for attempt := 0; ; attempt++ {
		info, err := getJoinInfo(ctx, url)
		if err == nil {
			return info, nil
		}
		lastErr = err
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("clusterkit: JoinAddr %s: %w (after %d attempts)", addr, lastErr, attempt+1)
		case <-time.After(min(time.Duration(attempt+1)*100*time.Millisecond, time.Second)):
		}
	}
}

func getJoinInfo(ctx context.Context, url string) (*joinInfo, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
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
	var info joinInfo
	if err := json.Unmarshal(body, &info); err != nil {
		return nil, fmt.Errorf("GET %s: not a ClusterKit node: %v", url, err)
	}
	if len(info.EtcdEndpoints) == 0 || info.ClusterName == "" {
		return nil, fmt.Errorf("GET %s: answer lacks etcd endpoints or cluster name", url)
	}
	return &info, nil
}

// claimsResponse is the body of GET /cluster/claims.
type claimsResponse struct {
	NodeID string `json:"node_id"`
	Epoch  uint64 `json:"epoch"`
	Fenced bool   `json:"fenced"`
	// Primaries maps each partition this node claims to lead to its primary epoch.
	Primaries map[string]uint64 `json:"primaries"`
}

func (ck *ClusterKit) handleClaims(w http.ResponseWriter, r *http.Request) {
	out := claimsResponse{NodeID: ck.opts.NodeID, Fenced: ck.selfFenced(), Primaries: map[string]uint64{}}
	if s := ck.snap.Load(); s != nil {
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
