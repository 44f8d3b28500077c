// Package quorum is the replication protocol of the sync example: the client writes each key to
// every holder of its partition, and to the nodes copying the partition in, in parallel, and
// the write is acknowledged once a majority of the holders and every copying node stored it.
// Reads ask every holder and take the newest version among a majority.
//
// The nodes run the shared store (examples/internal/store) for storage, versions, epoch fencing
// and migration; this package adds the two endpoints a client-driven write needs:
//
//	POST /sync/write  a WriteRequest: the store's ReplicateRequest plus the nodes the client
//	                  wrote to; 409 map_changed when this node's map has a holder or a copying
//	                  node the client did not write to (the client re-reads its map and retries)
//	POST /sync/read   a ReadRequest: this node's copy of a key, under the same check
//
// Why the check: a node copying a partition in merges what every holder exported. A write that
// reached a holder after its export must reach the copying node directly, so the client must
// know of it. The check runs after the write is stored: if the holder's map did not list the
// copying node then, its export (which waits for the map that lists the copier) comes later
// and contains the write.
package quorum

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/clusterkit-go/clusterkit/examples/internal/store"
	"github.com/clusterkit-go/clusterkit/pkg/clusterkit"
)

// Paths of the endpoints Handler serves.
const (
	WritePath = "/sync/write"
	ReadPath  = "/sync/read"
)

// mapWait bounds how long a request waits for this node's map to reach the client's epoch.
const mapWait = 3 * time.Second

// WriteRequest is one client write: the entries (of one partition) stamped with the
// partition's primary epoch in the client's map, and every node the client sends them to.
type WriteRequest struct {
	store.ReplicateRequest
	// Targets are the IDs of the holders and copying nodes of the client's route.
	Targets []string `json:"targets"`
}

// ReadRequest asks for one node's copy of a key.
type ReadRequest struct {
	Key string `json:"key"`
	// MapEpoch is the epoch of the client's map; Targets the holders it asks.
	MapEpoch uint64   `json:"map_epoch"`
	Targets  []string `json:"targets"`
}

// ReadResponse is a node's copy of a key.
type ReadResponse struct {
	Found bool        `json:"found"`
	Entry store.Entry `json:"entry"`
}

// Handler serves WritePath and ReadPath for the node ck and its store st. Bodies are bounded by
// the store's limits (st.Decode), and a written value is checked against them (st.Apply): 413
// too_large. It checks no token: serve it behind store.RequireToken, as examples/internal/kvnode
// does with the whole data API.
func Handler(ck *clusterkit.ClusterKit, st *store.Store) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+WritePath, func(w http.ResponseWriter, r *http.Request) {
		var req WriteRequest
		if err := st.Decode(w, r, &req); err != nil {
			store.WriteError(w, err)
			return
		}
		if err := st.Apply(r.Context(), req.ReplicateRequest); err != nil {
			store.WriteError(w, err)
			return
		}
		if err := check(ck, req.Entries[0].Key, req.Targets, false); err != nil {
			writeMapChanged(w, err)
			return
		}
		store.WriteJSON(w, http.StatusOK, map[string]int{"entries": len(req.Entries)})
	})
	mux.HandleFunc("POST "+ReadPath, func(w http.ResponseWriter, r *http.Request) {
		var req ReadRequest
		if err := st.Decode(w, r, &req); err != nil {
			store.WriteError(w, err)
			return
		}
		if req.Key == "" {
			store.WriteError(w, fmt.Errorf("%w: the body needs a non-empty \"key\"", store.ErrBadRequest))
			return
		}
		if err := waitEpoch(r.Context(), ck, req.MapEpoch); err != nil {
			store.WriteError(w, err)
			return
		}
		e, found := st.Local(req.Key)
		// Checked after the read: a copy released by a handoff is dropped only once this
		// node's map no longer lists it, which the check would then see.
		if err := check(ck, req.Key, req.Targets, true); err != nil {
			writeMapChanged(w, err)
			return
		}
		store.WriteJSON(w, http.StatusOK, ReadResponse{Found: found, Entry: e})
	})
	return mux
}

// check fails when this node's map has a holder or copying node of key's partition that is not
// among targets, or (holderOnly) when this node does not hold the partition.
func check(ck *clusterkit.ClusterKit, key string, targets []string, holderOnly bool) error {
	p, err := ck.GetPartition(key)
	if err != nil {
		return err
	}
	var missing []string
	self := false
	for _, n := range ck.GetNodes(p) {
		self = self || n.ID == ck.GetMyNodeID()
		if !slices.Contains(targets, n.ID) {
			missing = append(missing, n.ID)
		}
	}
	for _, id := range p.PendingNodes {
		if !slices.Contains(targets, id) {
			missing = append(missing, id)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%s at map epoch %d also has %v", p.ID, p.Epoch, missing)
	}
	if holderOnly && !self {
		return fmt.Errorf("%s at map epoch %d is not held here", p.ID, p.Epoch)
	}
	return nil
}

func writeMapChanged(w http.ResponseWriter, err error) {
	store.WriteJSON(w, http.StatusConflict, store.APIError{Status: http.StatusConflict, Code: CodeMapChanged, Message: err.Error()})
}

// CodeMapChanged is the code of the answer of a node whose map differs from the client's.
const CodeMapChanged = "map_changed"

// waitEpoch waits until the node's map epoch is at least e.
func waitEpoch(ctx context.Context, ck *clusterkit.ClusterKit, e uint64) error {
	ctx, cancel := context.WithTimeout(ctx, mapWait)
	defer cancel()
	for ck.Epoch() < e {
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: at map epoch %d, the client at %d", store.ErrMapBehind, ck.Epoch(), e)
		case <-time.After(2 * time.Millisecond):
		}
	}
	return nil
}
