package clusterkit

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"sync"

	"github.com/clusterkit-go/clusterkit/internal/state"
	"github.com/clusterkit-go/clusterkit/pkg/wire"
)

// keptAnswers is how many GET /cluster/map bodies a node keeps: after a new map, the clients
// that held the previous one all ask for the same body, and a few lag behind.
const keptAnswers = 4

// handleClusterMap answers GET /cluster/map?since=<epoch>[&wait=<duration>]: the map the node
// holds as the partitions that changed since the map of epoch since (wire.MapDelta), or every
// partition (full) when since is 0 or a map the node does not keep. When the node's map is
// still the one of epoch since, it answers 304, after waiting for a newer map as GET /cluster
// does when wait is given; a since above the node's epoch (a node behind its client) waits
// too, and is answered in full if the wait passes first.
func (ck *ClusterKit) handleClusterMap(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	since, err := parseSince(q.Get("since"))
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	wait, err := parseWait(q.Get("wait"))
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	s := ck.maps.snapshot()
	if s == nil {
		writeError(w, http.StatusServiceUnavailable, "no partition map yet")
		return
	}
	if wait > 0 && since >= s.epoch {
		code, msg := ck.waitFor(w, r, wait, func() bool { return ck.maps.snapshot().epoch > since })
		if code != 0 {
			writeError(w, code, msg)
			return
		}
		// A newer map, or the wait passed: a node behind its client may have caught up
		// meanwhile, to since or not.
		s = ck.maps.snapshot()
	}
	w.Header().Set("ETag", mapETag(ck.env.config.ClusterID, s.epoch))
	w.Header().Set("Cache-Control", "no-cache")
	if since == s.epoch {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	base := uint64(0)
	var diff []int
	if since != 0 && since < s.epoch {
		if c, ok := ck.maps.changedSince(since, s.epoch); ok {
			base, diff = since, c
		}
	}
	ck.api.answers.get(base, s, func() []byte { return ck.encodeDelta(base, diff, s) }).write(w, r, http.StatusOK)
}

// parseSince parses the since parameter of GET /cluster/map: a map epoch; "" is 0, the whole map.
func parseSince(v string) (uint64, error) {
	if v == "" {
		return 0, nil
	}
	e, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("parameter since=%q: want the epoch of the map the client holds (a number; 0 for the whole map)", v)
	}
	return e, nil
}

// encodeDelta returns the GET /cluster/map body of s relative to the map of epoch since, whose
// changes are changed, or of every partition when since is 0.
func (ck *ClusterKit) encodeDelta(since uint64, changed []int, s *snapshot) []byte {
	b, err := json.Marshal(delta(ck, since, changed, s))
	if err != nil {
		b, _ = json.Marshal(wire.Error{Error: err.Error()})
	}
	return append(b, '\n')
}

// delta is the GET /cluster/map document of s relative to the map of epoch since, whose
// changes are changed (every partition when since is 0): only those partitions are converted.
func delta(ck *ClusterKit, since uint64, changed []int, s *snapshot) wire.MapDelta {
	d := wire.MapDelta{
		ID:             ck.env.config.ClusterID,
		Name:           ck.env.clusterName,
		Epoch:          s.epoch,
		Since:          since,
		Full:           since == 0,
		Leader:         s.leader,
		UpdatedAt:      s.updatedAt,
		Nodes:          make(map[string]wire.Node, len(s.nodes)),
		PartitionCount: len(s.partitions),
		HashConfig:     ck.env.config.Hash,
		Partitions:     []wire.Partition{},
	}
	for id, n := range s.nodes {
		// Without weight and state: the answer follows the map alone.
		d.Nodes[id] = wire.Node{ID: n.ID, IP: n.IP, Zone: n.Zone, Metadata: n.Metadata}
	}
	add := func(i int) {
		p := &s.partitions[i]
		d.Partitions = append(d.Partitions, wire.Partition{
			ID: p.ID, PrimaryNode: p.PrimaryNode, ReplicaNodes: p.ReplicaNodes,
			PrimaryEpoch: p.PrimaryEpoch, Epoch: s.epoch, PendingNodes: p.PendingNodes,
		})
	}
	if since == 0 {
		for i := range s.partitions {
			add(i)
		}
		return d
	}
	for _, i := range changed {
		if i < len(s.partitions) {
			add(i)
		}
	}
	return d
}

// mapAnswers keeps the last GET /cluster/map bodies, so that the clients long-polling a node,
// which all ask for the same change when a map arrives, get one body built once.
type mapAnswers struct {
	mu   sync.Mutex
	kept [keptAnswers]*mapAnswer
	next int
}

// mapAnswer is the body of the map of epoch relative to since (0: the whole map).
type mapAnswer struct {
	since, epoch uint64
	once         sync.Once
	body         *body
}

// get returns the body of s relative to the map of epoch since (0: the whole map), built by
// build the first time it is asked for.
func (a *mapAnswers) get(since uint64, s *snapshot, build func() []byte) *body {
	a.mu.Lock()
	var ans *mapAnswer
	for _, k := range a.kept {
		if k != nil && k.since == since && k.epoch == s.epoch {
			ans = k
			break
		}
	}
	if ans == nil {
		ans = &mapAnswer{since: since, epoch: s.epoch}
		a.kept[a.next] = ans
		a.next = (a.next + 1) % keptAnswers
	}
	a.mu.Unlock()
	ans.once.Do(func() { ans.body = newBody(build()) })
	return ans.body
}

// visibleChanges lists the partitions whose GET /cluster shape differs between old and s, when
// s was built from old; nil when it was not (any may differ).
func visibleChanges(old, s *snapshot) []int {
	if old == nil || s.changed == nil || s.since != old.epoch {
		return nil
	}
	out := []int{}
	for _, i := range s.changed {
		if !sameEntry(&old.raw.Partitions[i], &s.raw.Partitions[i]) {
			out = append(out, i)
		}
	}
	return out
}

// sameEntry reports whether a and b look the same in GET /cluster: the same holders in order,
// primary epoch and pending nodes. What only the leader uses (targets, the times and attempts
// of copies) is not compared.
func sameEntry(a, b *state.Entry) bool {
	if a.PrimaryEpoch != b.PrimaryEpoch || !slices.Equal(a.Holders, b.Holders) || len(a.Pending) != len(b.Pending) {
		return false
	}
	for i := range a.Pending {
		if a.Pending[i].Node != b.Pending[i].Node {
			return false
		}
	}
	return true
}
