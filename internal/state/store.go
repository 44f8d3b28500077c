package state

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/clusterkit-go/clusterkit/internal/keys"
)

// How a map is stored, so that writing and reading a new epoch cost what changed:
//
//   - A small map (up to maxValue/16 bytes, 64 KiB by default: a few hundred partitions) is
//     stored whole, inline in the partitions key.
//   - A larger one is a head under the partitions key (epoch, cause, node table, and where the
//     partitions are), a checkpoint (every partition as of epoch Checkpoint, in chunks under
//     partitions/<checkpoint>/<chunk>), and one delta per epoch since (the partitions that
//     changed at that epoch, in pieces under partitions/<epoch>/delta-<piece>).
//
// The leader writes the chunks or the pieces first, each in its own transaction guarded by its
// leader key, then the head in a transaction guarded by the leader key and the head's revision.
// A reader reads the head, then what it needs at the head's revision: it never sees half a map,
// and nothing a deposed leader wrote is ever referenced by a head. A reader that holds the map
// of an epoch at or after the checkpoint reads only the deltas after it; any other reads the
// checkpoint and every delta since. A new checkpoint is written when the deltas since the last
// one would outweigh it (so what a newcomer reads stays under twice the map), or after
// maxDeltaEpochs deltas; the head that references it deletes every older chunk and delta.

// maxDeltaEpochs bounds the number of deltas after a checkpoint.
const maxDeltaEpochs = 1024

// minEntryBytes is the least an entry encodes to ({"holders":["a"],"primary_epoch":1}).
const minEntryBytes = 35

// inlineMax is the largest map stored inline when values may take maxValue bytes.
func inlineMax(maxValue int) int { return maxValue / 16 }

// Encoded is a map ready to be written.
type Encoded struct {
	// Head goes under the partitions key.
	Head []byte
	// Chunks, when the map starts a new checkpoint, go under Chunk(epoch, i).
	Chunks [][]byte
	// Deltas, when the map is stored as a change, go under Delta(epoch, i).
	Deltas [][]byte
	// Changed is the number of partitions written: those that changed for a delta, all of
	// them otherwise.
	Changed int
}

// Checkpoint reports whether the map starts a new checkpoint: every chunk and delta of an
// older epoch can then be deleted.
func (e Encoded) Checkpoint() bool { return len(e.Chunks) > 0 }

// EncodeNext encodes next, the map that follows prev (the map stored now, as read or written,
// or nil), so that no value exceeds maxValue bytes. It sets next's storage fields (Chunks,
// Checkpoint, CheckpointBytes, DeltaBytes), so that next can be the prev of the map after it.
func EncodeNext(prev, next *Map, maxValue int) (Encoded, error) {
	next.Chunks, next.Checkpoint, next.CheckpointBytes, next.DeltaBytes = 0, 0, 0, 0
	if len(next.Partitions)*minEntryBytes <= inlineMax(maxValue) {
		whole, err := json.Marshal(next)
		if err != nil {
			return Encoded{}, err
		}
		if len(whole) <= inlineMax(maxValue) {
			return Encoded{Head: whole, Changed: len(next.Partitions)}, nil
		}
	}
	if prev != nil && prev.Chunks > 0 && prev.Epoch+1 == next.Epoch && len(prev.Partitions) == len(next.Partitions) &&
		next.Epoch-prev.checkpoint() <= maxDeltaEpochs {
		var changed []int
		for i := range next.Partitions {
			if !next.Partitions[i].Equal(&prev.Partitions[i]) {
				changed = append(changed, i)
			}
		}
		pieces, size, err := encodeDelta(next.Epoch, changed, next.Partitions, maxValue)
		if err != nil {
			return Encoded{}, err
		}
		if prev.DeltaBytes+size <= prev.CheckpointBytes {
			next.Chunks, next.Checkpoint = prev.Chunks, prev.checkpoint()
			next.CheckpointBytes, next.DeltaBytes = prev.CheckpointBytes, prev.DeltaBytes+size
			head, err := encodeHead(next, maxValue)
			if err != nil {
				return Encoded{}, err
			}
			return Encoded{Head: head, Deltas: pieces, Changed: len(changed)}, nil
		}
	}
	chunks, size, err := encodeChunks(next.Partitions, maxValue)
	if err != nil {
		return Encoded{}, err
	}
	next.Chunks, next.Checkpoint, next.CheckpointBytes = len(chunks), next.Epoch, size
	head, err := encodeHead(next, maxValue)
	if err != nil {
		return Encoded{}, err
	}
	return Encoded{Head: head, Chunks: chunks, Changed: len(next.Partitions)}, nil
}

// Writes lists how to store enc, the map of epoch: each of before in a transaction of its own,
// in order, then head in one transaction with the caller's guard on the partitions key's
// revision. What a failed attempt at this epoch may have left is deleted first (a reader of the
// epoch must find exactly the chunks and pieces its head names): in a transaction before the
// others, or in the head's when the last chunk or piece goes with the head (when both fit in
// one request). An inline map needs no deletion: no reader looks for its chunks or pieces, and
// the next checkpoint's head deletes them. A new checkpoint's head deletes every older chunk
// and delta.
func (e Encoded) Writes(s keys.Schema, epoch uint64, maxValue int) (before []clientv3.Op, head []clientv3.Op) {
	var puts []clientv3.Op
	for i, c := range e.Chunks {
		puts = append(puts, clientv3.OpPut(s.Chunk(epoch, i), string(c)))
	}
	for i, d := range e.Deltas {
		puts = append(puts, clientv3.OpPut(s.Delta(epoch, i), string(d)))
	}
	head = []clientv3.Op{clientv3.OpPut(s.Partitions(), string(e.Head))}
	if e.Checkpoint() {
		head = append(head, clientv3.OpDelete(s.AllChunksPrefix(), clientv3.WithRange(s.ChunksPrefix(epoch))))
	}
	switch n := len(puts); {
	case n == 0:
		return nil, head
	case n == 1 && len(e.Deltas) == 1 && len(e.Head)+len(e.Deltas[0]) <= maxValue:
		// Everything of the epoch but piece 0 goes, in the same transaction.
		head = append(head, puts[0], clientv3.OpDelete(s.Delta(epoch, 1), clientv3.WithRange(s.ChunksPrefix(epoch+1))))
		return nil, head
	}
	before = append([]clientv3.Op{clientv3.OpDelete(s.ChunksPrefix(epoch), clientv3.WithPrefix())}, puts...)
	return before, head
}

// checkpoint is the epoch of the checkpoint a stored-out-of-line map builds on; a head written
// before deltas existed is its own checkpoint.
func (m *Map) checkpoint() uint64 {
	if m.Checkpoint == 0 {
		return m.Epoch
	}
	return m.Checkpoint
}

func encodeHead(m *Map, maxValue int) ([]byte, error) {
	head := *m
	head.Partitions = nil
	b, err := json.Marshal(&head)
	if err != nil {
		return nil, err
	}
	if len(b) > maxValue {
		return nil, fmt.Errorf("state: map head of %d bytes exceeds %d bytes (too many nodes)", len(b), maxValue)
	}
	return b, nil
}

// encodeEntry encodes one entry, refusing one that cannot fit in a value with room to spare.
func encodeEntry(parts []Entry, i, maxValue int) ([]byte, error) {
	b, err := json.Marshal(&parts[i])
	if err != nil {
		return nil, err
	}
	if len(b)+128 > maxValue {
		return nil, fmt.Errorf("state: partition %d alone encodes to %d bytes, over %d", i, len(b), maxValue)
	}
	return b, nil
}

// encodeChunks cuts the partitions into JSON arrays of whole entries of at most maxValue bytes.
func encodeChunks(parts []Entry, maxValue int) (chunks [][]byte, size int, err error) {
	var cur bytes.Buffer
	flush := func() {
		cur.WriteByte(']')
		chunks = append(chunks, bytes.Clone(cur.Bytes()))
		size += cur.Len()
		cur.Reset()
	}
	for i := range parts {
		b, err := encodeEntry(parts, i, maxValue)
		if err != nil {
			return nil, 0, err
		}
		if cur.Len() > 0 && cur.Len()+1+len(b)+1 > maxValue {
			flush()
		}
		if cur.Len() == 0 {
			cur.WriteByte('[')
		} else {
			cur.WriteByte(',')
		}
		cur.Write(b)
	}
	if cur.Len() > 0 {
		flush()
	}
	return chunks, size, nil
}

// deltaPiece is one value of a delta: Entries[i] is the new entry of partition Partitions[i].
// Pieces is the number of pieces of the epoch's delta, so that a reader can tell it has all.
type deltaPiece struct {
	Epoch      uint64  `json:"epoch"`
	Piece      int     `json:"piece"`
	Pieces     int     `json:"pieces"`
	Partitions []int   `json:"partitions"`
	Entries    Entries `json:"entries"`
}

// pieceOverhead bounds the bytes of a piece besides its partitions and entries.
const pieceOverhead = 128

// encodeDelta encodes the entries of the changed partitions in pieces of at most maxValue bytes.
// A delta with no change is one empty piece: every epoch after a checkpoint has a delta.
func encodeDelta(epoch uint64, changed []int, parts []Entry, maxValue int) (pieces [][]byte, size int, err error) {
	type run struct{ idx, ents [][]byte }
	runs := []run{{}}
	used := pieceOverhead
	for _, p := range changed {
		b, err := encodeEntry(parts, p, maxValue)
		if err != nil {
			return nil, 0, err
		}
		idx := strconv.AppendInt(nil, int64(p), 10)
		need := len(idx) + len(b) + 2
		if last := &runs[len(runs)-1]; len(last.ents) > 0 && used+need > maxValue {
			runs = append(runs, run{})
			used = pieceOverhead
		}
		last := &runs[len(runs)-1]
		last.idx = append(last.idx, idx)
		last.ents = append(last.ents, b)
		used += need
	}
	for i, r := range runs {
		var buf bytes.Buffer
		fmt.Fprintf(&buf, `{"epoch":%d,"piece":%d,"pieces":%d,"partitions":[`, epoch, i, len(runs))
		buf.Write(bytes.Join(r.idx, []byte{','}))
		buf.WriteString(`],"entries":[`)
		buf.Write(bytes.Join(r.ents, []byte{','}))
		buf.WriteString(`]}`)
		pieces = append(pieces, buf.Bytes())
		size += buf.Len()
	}
	return pieces, size, nil
}

var (
	pieceStart      = []byte(`{"epoch":`)
	piecePiece      = []byte(`,"piece":`)
	piecePieces     = []byte(`,"pieces":`)
	piecePartitions = []byte(`,"partitions":[`)
	pieceEntries    = []byte(`],"entries":`)
)

// decodePiece decodes a delta piece: the form encodeDelta writes without reflection, anything
// else through encoding/json.
func decodePiece(b []byte) (deltaPiece, error) {
	if p, ok := decodePieceFast(b); ok {
		return p, nil
	}
	var p deltaPiece
	if err := json.Unmarshal(b, &p); err != nil {
		return deltaPiece{}, err
	}
	return p, nil
}

func decodePieceFast(b []byte) (p deltaPiece, ok bool) {
	d := &entryDecoder{b: b}
	var n uint64
	if !d.eatBytes(pieceStart) {
		return p, false
	}
	if p.Epoch, ok = d.uint(); !ok || !d.eatBytes(piecePiece) {
		return p, false
	}
	if n, ok = d.uint(); !ok || n > 1<<30 || !d.eatBytes(piecePieces) {
		return p, false
	}
	p.Piece = int(n)
	if n, ok = d.uint(); !ok || n > 1<<30 || !d.eatBytes(piecePartitions) {
		return p, false
	}
	p.Pieces = int(n)
	for len(d.b) > 0 && d.b[0] != ']' {
		if n, ok = d.uint(); !ok || n > 1<<30 {
			return p, false
		}
		p.Partitions = append(p.Partitions, int(n))
		if !d.eat(",") {
			break
		}
	}
	if !d.eatBytes(pieceEntries) || len(d.b) < 1 || d.b[len(d.b)-1] != '}' {
		return p, false
	}
	p.Entries, ok = decodeEntries(d.b[:len(d.b)-1])
	return p, ok
}

// DecodeHead decodes the value of the partitions key.
func DecodeHead(b []byte) (*Map, error) {
	var m Map
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%w: partition map: %v", ErrCorrupt, err)
	}
	if m.Chunks < 0 || m.Chunks > 0 && (m.Checkpoint > m.Epoch || len(m.Partitions) > 0) {
		return nil, fmt.Errorf("%w: partition map epoch %d: %d chunks at checkpoint %d", ErrCorrupt, m.Epoch, m.Chunks, m.Checkpoint)
	}
	return &m, nil
}

// ReadNext fills the partitions of h, a head read at revision rev, reading at that revision.
// With prev, a map the reader holds from an epoch between h's checkpoint and h, it reads only
// the deltas after prev, and returns the partitions that changed since prev, in order. Otherwise
// it reads the checkpoint and every delta since, and changed is nil (everything may differ). An
// inline map is read whole, and compared with prev when there is one.
// prev is not modified: unchanged entries are shared with it.
func ReadNext(ctx context.Context, kv clientv3.KV, s keys.Schema, h *Map, rev int64, prev *Map) (changed []int, err error) {
	if h.Chunks == 0 {
		// A small map, read whole: the change is found by comparing.
		if prev == nil || len(prev.Partitions) != len(h.Partitions) || prev.Epoch >= h.Epoch {
			return nil, nil
		}
		changed = []int{}
		for i := range h.Partitions {
			if !h.Partitions[i].Equal(&prev.Partitions[i]) {
				changed = append(changed, i)
			}
		}
		return changed, nil
	}
	from := h.checkpoint()
	incremental := prev != nil && prev.Epoch >= from && prev.Epoch < h.Epoch && len(prev.Partitions) > 0
	if incremental {
		from = prev.Epoch + 1
	}
	resp, err := kv.Get(ctx, s.ChunksPrefix(from), clientv3.WithRange(s.ChunksPrefix(h.Epoch+1)), clientv3.WithRev(rev))
	if err != nil {
		return nil, fmt.Errorf("read map epoch %d: %w", h.Epoch, err)
	}
	var parts []Entry
	var chunks, deltas [][]byte
	deltaEpochs := make([]uint64, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		k, ok := s.ParseMapKey(string(kv.Key))
		switch {
		case !ok:
		case !k.Delta && !incremental && k.Epoch == from && k.Index < h.Chunks:
			chunks = append(chunks, kv.Value)
		case k.Delta && k.Epoch > h.checkpoint():
			deltas = append(deltas, kv.Value)
			deltaEpochs = append(deltaEpochs, k.Epoch)
		}
	}
	if incremental {
		parts = slices.Clone(prev.Partitions)
	} else {
		if len(chunks) != h.Chunks {
			return nil, fmt.Errorf("%w: map epoch %d has %d of the %d chunks of checkpoint %d", ErrCorrupt, h.Epoch, len(chunks), h.Chunks, from)
		}
		for i, c := range chunks {
			part, err := DecodeEntries(c)
			if err != nil {
				return nil, fmt.Errorf("%w: map epoch %d checkpoint %d chunk %d: %v", ErrCorrupt, h.Epoch, from, i, err)
			}
			parts = append(parts, part...)
		}
	}
	next := from
	if !incremental {
		next = from + 1
	}
	seen := 0
	if incremental {
		changed = make([]int, 0, len(deltas)*16)
	}
	for i, b := range deltas {
		p, err := decodePiece(b)
		if err != nil || p.Epoch != deltaEpochs[i] || len(p.Partitions) != len(p.Entries) || p.Piece >= p.Pieces {
			return nil, fmt.Errorf("%w: map epoch %d: delta of epoch %d: %v", ErrCorrupt, h.Epoch, deltaEpochs[i], err)
		}
		if p.Epoch != next {
			return nil, fmt.Errorf("%w: map epoch %d: delta of epoch %d missing", ErrCorrupt, h.Epoch, next)
		}
		if seen++; seen == p.Pieces {
			next, seen = next+1, 0
		}
		for j, idx := range p.Partitions {
			if idx < 0 || idx >= len(parts) {
				return nil, fmt.Errorf("%w: map epoch %d: delta of epoch %d names partition %d of %d", ErrCorrupt, h.Epoch, p.Epoch, idx, len(parts))
			}
			parts[idx] = p.Entries[j]
			if incremental {
				changed = append(changed, idx)
			}
		}
	}
	if next != h.Epoch+1 || seen != 0 {
		return nil, fmt.Errorf("%w: map epoch %d: delta of epoch %d missing or incomplete", ErrCorrupt, h.Epoch, next)
	}
	h.Partitions = parts
	if incremental {
		slices.Sort(changed)
		changed = slices.Compact(changed)
		if changed == nil {
			changed = []int{}
		}
	}
	return changed, nil
}
