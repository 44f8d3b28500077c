package store

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"

	"go.uber.org/zap"

	"github.com/clusterkit-go/clusterkit/pkg/clusterkit"
)

// onPartitionChange runs on every node for every (partition, new holder). Every node learns the
// addresses it names; the new holder copies the partition in. ClusterKit routes to the new
// holder only once this hook has returned, so it returns only when the copy is done.
func (s *Store) onPartitionChange(id string, from []*clusterkit.Node, to *clusterkit.Node) {
	s.learn(to)
	for _, n := range from {
		s.learn(n)
	}
	if to == nil || to.ID != s.me {
		return
	}
	s.copyIn(id, from)
}

// onEvent drops this node's copy of a partition once a handoff away from it has completed.
func (s *Store) onEvent(ev clusterkit.Event) {
	if !ev.Released {
		return
	}
	s.mu.Lock()
	part := s.parts[ev.Partition]
	delete(s.parts, ev.Partition)
	s.mu.Unlock()
	if part == nil {
		return
	}
	part.mu.Lock()
	n := len(part.entries)
	part.mu.Unlock()
	s.stats.partitionsReleased.Add(1)
	s.stats.keysReleased.Add(int64(n))
	s.log.Debug("released partition", zap.String("partition", ev.Partition), zap.Int("keys", n))
}

// copyIn fetches partition id from every source and merges by version. A source that fails is
// asked again until it answers or is no longer a holder of the partition (it died or was
// released: what it held is then held by the others, or lost with it). The exports ask each
// source to wait until its map is as new as this node's, and tell it this node's address, so
// that every write the source makes after the export is also sent here (see Put).
//
// If the copy cannot be completed within CopyTimeout, or the store is closed, copyIn panics: a
// panicking hook is ClusterKit's documented way to withhold the handoff acknowledgement (it is
// recovered and logged, and the copy is asked for again after HandoffTimeout). Returning would
// acknowledge a copy that was not made.
func (s *Store) copyIn(id string, from []*clusterkit.Node) {
	minEpoch := s.ck.Epoch()
	ctx, cancel := context.WithTimeout(s.ctx, s.opts.CopyTimeout)
	defer cancel()
	start := time.Now()
	copied := 0
	for _, src := range from {
		if src.ID == s.me {
			continue
		}
		backoff := 20 * time.Millisecond
		for {
			n, err := s.fetch(ctx, src, id, minEpoch)
			if err == nil {
				copied += n
				break
			}
			if !s.isHolder(src.ID, id) {
				s.stats.sourcesSkipped.Add(1)
				s.log.Info("copy source gone, skipped", zap.String("partition", id), zap.String("source", src.ID), zap.Error(err))
				break
			}
			select {
			case <-ctx.Done():
				panic(fmt.Sprintf("store: copying %s in from %s not done: %v (last error: %v)", id, src.ID, ctx.Err(), err))
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 500*time.Millisecond)
		}
	}
	// A brand-new partition (no source) is not a migration.
	if slices.ContainsFunc(from, func(n *clusterkit.Node) bool { return n.ID != s.me }) {
		s.stats.partitionsCopiedIn.Add(1)
		s.stats.keysCopiedIn.Add(int64(copied))
	}
	s.log.Debug("copied partition in", zap.String("partition", id), zap.Int("keys_changed", copied),
		zap.Int("sources", len(from)), zap.Duration("took", time.Since(start)))
}

// isHolder reports whether node is a holder of partition id in this node's current map.
func (s *Store) isHolder(node, id string) bool {
	return slices.ContainsFunc(s.ck.GetNodes(&clusterkit.Partition{ID: id}), func(n clusterkit.Node) bool { return n.ID == node })
}

// fetch copies partition id in from src and returns how many keys it changed here.
func (s *Store) fetch(ctx context.Context, src *clusterkit.Node, id string, minEpoch uint64) (int, error) {
	addr := src.Metadata[AddrKey]
	if addr == "" {
		return 0, fmt.Errorf("node %s publishes no %q in its metadata", src.ID, AddrKey)
	}
	q := url.Values{
		"partition": {id},
		"min_epoch": {strconv.FormatUint(minEpoch, 10)},
		"node":      {s.me},
		"addr":      {s.addrOf(s.me)},
	}
	resp, err := do(ctx, s.httpc, http.MethodGet, addr, "/store/export?"+q.Encode(), nil, nil)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	// The export is read as a stream, an entry at a time (see handleExport): a partition is
	// not bounded by the size of a request, and its source is a node this node chose to ask.
	// Entries merged before a failure stay (merging by version never loses a newer write); the
	// caller asks again.
	part := s.partition(id)
	changed := 0
	dec := json.NewDecoder(resp.Body)
	err = readExport(dec, func(e Entry) {
		part.mu.Lock()
		if part.merge(e) {
			changed++
		}
		part.mu.Unlock()
	})
	if err != nil {
		return changed, fmt.Errorf("export of %s from %s: %w", id, src.ID, err)
	}
	return changed, nil
}

// readExport reads an ExportResponse from dec and calls merge with each of its entries as it
// is decoded.
func readExport(dec *json.Decoder, merge func(Entry)) error {
	if err := expectDelim(dec, '{'); err != nil {
		return err
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		if tok != "entries" {
			var skip json.RawMessage // partition, node
			if err := dec.Decode(&skip); err != nil {
				return err
			}
			continue
		}
		switch tok, err := dec.Token(); {
		case err != nil:
			return err
		case tok == nil: // "entries": null, no entry
			continue
		case tok != json.Delim('['):
			return fmt.Errorf("want [ after \"entries\" in the JSON, got %v", tok)
		}
		for dec.More() {
			var e Entry
			if err := dec.Decode(&e); err != nil {
				return err
			}
			merge(e)
		}
		if err := expectDelim(dec, ']'); err != nil {
			return err
		}
	}
	return expectDelim(dec, '}')
}

func expectDelim(dec *json.Decoder, want json.Delim) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	if tok != want {
		return fmt.Errorf("want %v in the JSON, got %v", want, tok)
	}
	return nil
}
