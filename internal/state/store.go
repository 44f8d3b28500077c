package state

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"

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
	// Nodes, when the map starts a new node table, goes under NodeTable(epoch).
	Nodes []byte
	// Changed is the number of partitions written: those that changed for a delta, all of
	// them otherwise.
	Changed int
	// dropNodes is the epoch of the node table Nodes replaces, deleted with the head (0: none,
	// or a checkpoint, which deletes every older table anyway).
	dropNodes uint64
}

// Checkpoint reports whether the map starts a new checkpoint: every chunk and delta of an
// older epoch can then be deleted.
func (e Encoded) Checkpoint() bool { return len(e.Chunks) > 0 }

// Bytes is the size of every value of e.
func (e Encoded) Bytes() int {
	n := len(e.Head) + len(e.Nodes)
	for _, c := range e.Chunks {
		n += len(c)
	}
	for _, d := range e.Deltas {
		n += len(d)
	}
	return n
}

// EncodeNext encodes next, the map that follows prev (the map stored now, as read or written,
// or nil), so that no value exceeds maxValue bytes. It sets next's storage fields (Chunks,
// Checkpoint, CheckpointBytes, DeltaBytes, NodesBase, NodesChanged, NodeIDs), so that next
// can be the prev of the map after it.
func EncodeNext(prev, next *Map, maxValue int) (Encoded, error) {
	next.Chunks, next.Checkpoint, next.CheckpointBytes, next.DeltaBytes = 0, 0, 0, 0
	next.NodesBase, next.NodesChanged, next.NodeIDs, next.baseNodes, next.baseBytes = 0, nil, nil, nil, 0
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
		var changed, settled []int
		for i := range next.Partitions {
			if next.Partitions[i].Equal(&prev.Partitions[i]) {
				continue
			}
			if s, ok := settle(&prev.Partitions[i], next.Epoch); ok && s.Equal(&next.Partitions[i]) {
				settled = append(settled, i)
			} else {
				changed = append(changed, i)
			}
		}
		pieces, size, err := encodeDelta(next.Epoch, changed, settled, next.Partitions, maxValue)
		if err != nil {
			return Encoded{}, err
		}
		if prev.DeltaBytes+size <= prev.CheckpointBytes {
			next.Chunks, next.Checkpoint = prev.Chunks, prev.checkpoint()
			next.CheckpointBytes, next.DeltaBytes = prev.CheckpointBytes, prev.DeltaBytes+size
			enc := Encoded{Deltas: pieces, Changed: len(changed) + len(settled)}
			if err := encodeNodeTable(prev, next, &enc, maxValue); err != nil {
				return Encoded{}, err
			}
			if enc.Head, err = encodeHead(next, maxValue); err != nil {
				return Encoded{}, err
			}
			return enc, nil
		}
	}
	chunks, size, err := encodeChunks(next.Epoch, next.Partitions, maxValue)
	if err != nil {
		return Encoded{}, err
	}
	next.Chunks, next.Checkpoint, next.CheckpointBytes = len(chunks), next.Epoch, size
	enc := Encoded{Chunks: chunks, Changed: len(next.Partitions)}
	if err := encodeNodeTable(nil, next, &enc, maxValue); err != nil {
		return Encoded{}, err
	}
	if enc.Head, err = encodeHead(next, maxValue); err != nil {
		return Encoded{}, err
	}
	return enc, nil
}

// encodeNodeTable decides how the head of next, a map stored out of line, carries its node
// table: as the change from the table prev's head builds on, while that change is under half
// the table, or else as a new table written at next's epoch (always at a checkpoint, when prev
// is nil). The head lists the IDs of every node of the map either way. A node joining, draining
// or leaving then costs its own record (or its ID) in each head, not the whole table.
func encodeNodeTable(prev, next *Map, enc *Encoded, maxValue int) error {
	next.NodeIDs = slices.Sorted(maps.Keys(next.Nodes))
	if prev != nil && prev.NodesBase > 0 && prev.baseNodes != nil {
		var changed map[string]Node
		for id, n := range next.Nodes {
			if b, ok := prev.baseNodes[id]; !ok || !b.Equal(n) {
				if changed == nil {
					changed = map[string]Node{}
				}
				changed[id] = n
			}
		}
		size := 0
		if changed != nil {
			b, err := json.Marshal(changed)
			if err != nil {
				return err
			}
			size = len(b)
		}
		if 2*size <= prev.baseBytes {
			next.NodesBase, next.baseNodes, next.baseBytes = prev.NodesBase, prev.baseNodes, prev.baseBytes
			next.NodesChanged = changed
			return nil
		}
		enc.dropNodes = prev.NodesBase
	}
	b, err := json.Marshal(next.Nodes)
	if err != nil {
		return err
	}
	if len(b) > maxValue {
		return fmt.Errorf("state: node table of %d bytes exceeds %d bytes (too many nodes)", len(b), maxValue)
	}
	enc.Nodes = b
	next.NodesBase, next.baseNodes, next.baseBytes = next.Epoch, next.Nodes, len(b)
	return nil
}

// Write is one put or delete of a stored map.
type Write struct {
	// Delete is true for a delete, false for a put of Value under Key.
	Delete bool
	// Key is the key put or deleted, or the first key of the range deleted.
	Key   string
	Value []byte
	// End, for a delete, ends the range [Key, End) deleted; "" deletes Key alone.
	End string
}

func put(key string, value []byte) Write { return Write{Key: key, Value: value} }

// Writes lists how to store enc, the map of epoch: each of before in a transaction of its own,
// in order, then head in one transaction with the caller's guard on the partitions key's
// revision. What a failed attempt at this epoch may have left is deleted first (a reader of the
// epoch must find exactly the chunks, pieces and node table its head names): in a transaction
// before the others, or in the head's when the last piece goes with the head (when both fit in
// one request). An inline map needs no deletion: no reader looks for its chunks or pieces, and
// the next checkpoint's head deletes them. A new checkpoint's head deletes every older chunk,
// delta and node table; a new node table's head deletes the table it replaces.
func (e Encoded) Writes(s keys.Schema, epoch uint64, maxValue int) (before []Write, head []Write) {
	var puts []Write
	for i, c := range e.Chunks {
		puts = append(puts, put(s.Chunk(epoch, i), c))
	}
	for i, d := range e.Deltas {
		puts = append(puts, put(s.Delta(epoch, i), d))
	}
	if e.Nodes != nil {
		puts = append(puts, put(s.NodeTable(epoch), e.Nodes))
	}
	head = []Write{put(s.Partitions(), e.Head)}
	if e.Checkpoint() {
		head = append(head, Write{Delete: true, Key: s.AllChunksPrefix(), End: s.ChunksPrefix(epoch)})
	} else if e.dropNodes > 0 {
		head = append(head, Write{Delete: true, Key: s.NodeTable(e.dropNodes)})
	}
	switch n := len(puts); {
	case n == 0:
		return nil, head
	case n == 1 && len(e.Deltas) == 1 && len(e.Head)+len(e.Deltas[0]) <= maxValue:
		// Everything of the epoch but piece 0 goes, in the same transaction.
		head = append(head, puts[0], Write{Delete: true, Key: s.Delta(epoch, 1), End: s.ChunksPrefix(epoch + 1)})
		return nil, head
	}
	// Every key under the epoch's prefix: its chunks, pieces and node table.
	before = append([]Write{{Delete: true, Key: s.ChunksPrefix(epoch), End: s.ChunksEnd(epoch)}}, puts...)
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
	if head.NodesBase > 0 {
		head.Nodes = nil // in the node table and the head's change from it
	}
	b, err := json.Marshal(&head)
	if err != nil {
		return nil, err
	}
	if len(b) > maxValue {
		return nil, fmt.Errorf("state: map head of %d bytes exceeds %d bytes (too many nodes)", len(b), maxValue)
	}
	return b, nil
}

// entryRoom is what a value needs besides its entries and tables.
const entryRoom = 128

// encodeChunks cuts the partitions into values of whole compact entries of at most maxValue
// bytes, each with the names and start times of the whole map.
func encodeChunks(epoch uint64, parts []Entry, maxValue int) (chunks [][]byte, size int, err error) {
	w := newCompactWriter(epoch)
	for i := range parts {
		w.add(&parts[i])
	}
	open, err := w.appendTables(fmt.Appendf(nil, `{"epoch":%d,`, epoch))
	if err != nil {
		return nil, 0, err
	}
	open = append(open, `,"entries":[`...)
	var cur []byte
	var entry []byte
	flush := func() {
		cur = append(cur, "]}"...)
		chunks = append(chunks, cur)
		size += len(cur)
		cur = nil
	}
	for i := range parts {
		entry = w.appendEntry(entry[:0], &parts[i])
		if len(open)+len(entry)+entryRoom > maxValue {
			return nil, 0, fmt.Errorf("state: partition %d alone encodes to %d bytes with its tables, over %d", i, len(open)+len(entry), maxValue)
		}
		if cur != nil && len(cur)+1+len(entry)+2 > maxValue {
			flush()
		}
		if cur == nil {
			cur = append(make([]byte, 0, min(maxValue, len(open)+len(parts)*(len(entry)+1)+2)), open...)
		} else {
			cur = append(cur, ',')
		}
		cur = append(cur, entry...)
	}
	if cur != nil || chunks == nil {
		// At least one chunk, even for no partitions: a head with chunks is one stored out of line.
		if cur == nil {
			cur = open
		}
		flush()
	}
	return chunks, size, nil
}

// deltaPiece is one value of a delta: Entries[i] is the new entry of partition Partitions[i],
// and each partition of Settled settled at Epoch (see settle). Pieces is the number of pieces
// of the epoch's delta, so that a reader can tell it has all; only piece 0 lists settled ones.
type deltaPiece struct {
	Epoch      uint64           `json:"epoch"`
	Piece      int              `json:"piece"`
	Pieces     int              `json:"pieces"`
	Names      []string         `json:"names"`
	Started    map[uint64]int64 `json:"started"`
	Settled    string           `json:"settled"`
	Partitions []int            `json:"partitions"`
	RawEntries json.RawMessage  `json:"entries"`
	Entries    Entries          `json:"-"`
}

// encodeDelta encodes the change at epoch in pieces of at most maxValue bytes: the compact
// entries of the changed partitions, and the settled ones as ranges. A delta with no change is
// one empty piece: every epoch after a checkpoint has a delta.
func encodeDelta(epoch uint64, changed, settled []int, parts []Entry, maxValue int) (pieces [][]byte, size int, err error) {
	w := newCompactWriter(epoch)
	for _, p := range changed {
		w.add(&parts[p])
	}
	tables, err := w.appendTables(nil)
	if err != nil {
		return nil, 0, err
	}
	ranges := FormatRanges(settled)
	if len(tables)+len(ranges)+2*entryRoom > maxValue {
		// Too many to list in one piece: written as entries instead.
		return encodeDelta(epoch, slices.Sorted(slices.Values(append(slices.Clone(changed), settled...))), nil, parts, maxValue)
	}
	type run struct {
		idx, ents []byte
		n         int
	}
	runs := []run{{}}
	used := entryRoom + len(tables) + len(ranges)
	var entry []byte
	for _, p := range changed {
		entry = w.appendEntry(entry[:0], &parts[p])
		if entryRoom+len(tables)+len(entry) > maxValue {
			return nil, 0, fmt.Errorf("state: partition %d alone encodes to %d bytes with its tables, over %d", p, len(tables)+len(entry), maxValue)
		}
		need := 8 + len(entry)
		if last := &runs[len(runs)-1]; last.n > 0 && used+need > maxValue {
			runs = append(runs, run{})
			used = entryRoom + len(tables)
		}
		last := &runs[len(runs)-1]
		if last.n > 0 {
			last.idx = append(last.idx, ',')
			last.ents = append(last.ents, ',')
		}
		last.idx = strconv.AppendInt(last.idx, int64(p), 10)
		last.ents = append(last.ents, entry...)
		last.n++
		used += need
	}
	for i, r := range runs {
		buf := fmt.Appendf(nil, `{"epoch":%d,"piece":%d,"pieces":%d,`, epoch, i, len(runs))
		buf = append(buf, tables...)
		if i == 0 && ranges != "" {
			buf = fmt.Appendf(buf, `,"settled":%q`, ranges)
		}
		buf = append(buf, `,"partitions":[`...)
		buf = append(buf, r.idx...)
		buf = append(buf, `],"entries":[`...)
		buf = append(buf, r.ents...)
		buf = append(buf, "]}"...)
		pieces = append(pieces, buf)
		size += len(buf)
	}
	return pieces, size, nil
}

// decodePiece decodes a delta piece, in the compact form or in the form of maps written before
// it (entries as objects).
func decodePiece(b []byte) (deltaPiece, error) {
	var p deltaPiece
	if err := json.Unmarshal(b, &p); err != nil {
		return deltaPiece{}, err
	}
	var err error
	p.Entries, err = decodeStoredEntries(p.RawEntries, p.Epoch, p.Names, p.Started)
	p.RawEntries = nil
	return p, err
}

// storedChunk is one value of a checkpoint.
type storedChunk struct {
	Epoch   uint64           `json:"epoch"`
	Names   []string         `json:"names"`
	Started map[uint64]int64 `json:"started"`
	Entries json.RawMessage  `json:"entries"`
}

// decodeChunk decodes a checkpoint chunk, in the compact form or as the JSON array of entries
// written before it.
func decodeChunk(b []byte) (Entries, error) {
	if t := bytes.TrimLeft(b, " \t\r\n"); len(t) > 0 && t[0] == '[' {
		return DecodeEntries(b)
	}
	var c storedChunk
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, err
	}
	return decodeStoredEntries(c.Entries, c.Epoch, c.Names, c.Started)
}

// decodeStoredEntries decodes the entries of a chunk or piece: compact ones, or entries as
// objects (the form before it, which has no names).
func decodeStoredEntries(raw json.RawMessage, epoch uint64, names []string, started map[uint64]int64) (Entries, error) {
	if raw == nil {
		return nil, fmt.Errorf("no entries")
	}
	if t := bytes.TrimLeft(raw[1:], " \t\r\n"); raw[0] == '[' && len(t) > 0 && t[0] == '{' && names == nil {
		return DecodeEntries(raw)
	}
	return decodeCompact(raw, epoch, names, started)
}

// DecodeHead decodes the value of the partitions key. The partitions of a map stored out of
// line, and its node table, are not in it: DecodeNext fills them in.
func DecodeHead(b []byte) (*Map, error) {
	var m Map
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%w: partition map: %v", ErrCorrupt, err)
	}
	if m.Chunks < 0 || m.Chunks > 0 && (m.Checkpoint > m.Epoch || len(m.Partitions) > 0) {
		return nil, fmt.Errorf("%w: partition map epoch %d: %d chunks at checkpoint %d", ErrCorrupt, m.Epoch, m.Chunks, m.Checkpoint)
	}
	if m.NodesBase > 0 && (m.Chunks == 0 || m.NodesBase > m.Epoch || m.NodesBase < m.checkpoint() || m.Nodes != nil) {
		return nil, fmt.Errorf("%w: partition map epoch %d: node table of epoch %d with checkpoint %d", ErrCorrupt, m.Epoch, m.NodesBase, m.checkpoint())
	}
	return &m, nil
}

// KV is a key and its value, as read from etcd.
type KV struct {
	Key   string
	Value []byte
}

// Reads is what DecodeNext needs read, all at the revision the head was read at: every key in
// [Start, End) when End is not "", then the key Table when it is not "".
type Reads struct {
	Start, End string
	Table      string
}

// nextFrom is the first epoch whose chunks or delta a reader of h, holding prev, needs, and
// whether it reads only the deltas after prev.
func nextFrom(h, prev *Map) (from uint64, incremental bool) {
	from = h.checkpoint()
	incremental = prev != nil && prev.Epoch >= from && prev.Epoch < h.Epoch && len(prev.Partitions) > 0
	if incremental {
		from = prev.Epoch + 1
	}
	return from, incremental
}

// holdsTable reports whether prev holds the node table h builds on.
func holdsTable(h, prev *Map) bool {
	return prev != nil && prev.NodesBase == h.NodesBase && prev.baseNodes != nil
}

// NextReads says what DecodeNext needs to fill in h, a head, for a reader that holds prev (or
// nil): nothing for an inline map; else the keys from the chunks of h's checkpoint (or from the
// delta after prev, when prev can be brought up to h by deltas) up to h's own delta; and, apart,
// the node table h builds on when prev does not hold it and it lies before that range.
func NextReads(s keys.Schema, h, prev *Map) Reads {
	if h.Chunks == 0 {
		return Reads{}
	}
	from, _ := nextFrom(h, prev)
	r := Reads{Start: s.ChunksPrefix(from), End: s.ChunksPrefix(h.Epoch + 1)}
	if h.NodesBase > 0 && h.NodesBase < from && !holdsTable(h, prev) {
		r.Table = s.NodeTable(h.NodesBase)
	}
	return r
}

// DecodeNext fills the partitions and node table of h, a head read at some revision, from kvs:
// what NextReads(s, h, prev) names, read at that revision, in key order. With prev, a map the
// reader holds from an epoch between h's checkpoint and h, it applies only the deltas after
// prev, and returns the partitions that changed since prev, in order. Otherwise it decodes the
// checkpoint and applies every delta since, and changed is nil (everything may differ). An
// inline map needs nothing read: it is compared with prev when there is one. prev is not
// modified: unchanged entries are shared with it. A part missing from kvs is an error wrapping
// ErrCorrupt.
func DecodeNext(s keys.Schema, h *Map, prev *Map, kvs []KV) (changed []int, err error) {
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
	from, incremental := nextFrom(h, prev)
	var parts []Entry
	var chunks, deltas [][]byte
	var table []byte
	deltaEpochs := make([]uint64, 0, len(kvs))
	for _, kv := range kvs {
		k, ok := s.ParseMapKey(kv.Key)
		switch {
		case !ok:
		case k.Nodes:
			if k.Epoch == h.NodesBase {
				table = kv.Value
			}
		case !k.Delta && !incremental && k.Epoch == from && k.Index < h.Chunks:
			chunks = append(chunks, kv.Value)
		case k.Delta && k.Epoch > h.checkpoint():
			deltas = append(deltas, kv.Value)
			deltaEpochs = append(deltaEpochs, k.Epoch)
		}
	}
	if err := decodeNodeTable(h, prev, table); err != nil {
		return nil, err
	}
	if incremental {
		parts = slices.Clone(prev.Partitions)
	} else {
		if len(chunks) != h.Chunks {
			return nil, fmt.Errorf("%w: map epoch %d has %d of the %d chunks of checkpoint %d", ErrCorrupt, h.Epoch, len(chunks), h.Chunks, from)
		}
		for i, c := range chunks {
			part, err := decodeChunk(c)
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
		if err == nil && (p.Epoch != deltaEpochs[i] || len(p.Partitions) != len(p.Entries) || p.Piece >= p.Pieces || p.Piece > 0 && p.Settled != "") {
			err = fmt.Errorf("piece %d of %d names epoch %d, %d partitions and %d entries", p.Piece, p.Pieces, p.Epoch, len(p.Partitions), len(p.Entries))
		}
		if err != nil {
			return nil, fmt.Errorf("%w: map epoch %d: delta of epoch %d: %v", ErrCorrupt, h.Epoch, deltaEpochs[i], err)
		}
		if p.Epoch != next {
			return nil, fmt.Errorf("%w: map epoch %d: delta of epoch %d missing", ErrCorrupt, h.Epoch, next)
		}
		if seen++; seen == p.Pieces {
			next, seen = next+1, 0
		}
		settled, err := ParseRanges(p.Settled, len(parts))
		if err != nil {
			return nil, fmt.Errorf("%w: map epoch %d: delta of epoch %d: settled: %v", ErrCorrupt, h.Epoch, p.Epoch, err)
		}
		for _, idx := range settled {
			e, ok := settle(&parts[idx], p.Epoch)
			if !ok {
				return nil, fmt.Errorf("%w: map epoch %d: delta of epoch %d settles %d, which was not moving", ErrCorrupt, h.Epoch, p.Epoch, idx)
			}
			parts[idx] = e
		}
		for j, idx := range p.Partitions {
			if idx < 0 || idx >= len(parts) {
				return nil, fmt.Errorf("%w: map epoch %d: delta of epoch %d names partition %d of %d", ErrCorrupt, h.Epoch, p.Epoch, idx, len(parts))
			}
			parts[idx] = p.Entries[j]
		}
		if incremental {
			changed = append(changed, settled...)
			changed = append(changed, p.Partitions...)
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

// decodeNodeTable fills h.Nodes with the nodes h lists, each from the change in h or else the
// node table h builds on: the table prev already holds, or table, the one read. A head written before node tables existed
// carries its nodes itself.
func decodeNodeTable(h, prev *Map, table []byte) error {
	if h.NodesBase == 0 {
		return nil
	}
	var base map[string]Node
	switch {
	case holdsTable(h, prev):
		base = prev.baseNodes
	case table == nil:
		return fmt.Errorf("%w: map epoch %d: node table of epoch %d missing", ErrCorrupt, h.Epoch, h.NodesBase)
	default:
		if err := json.Unmarshal(table, &base); err != nil {
			return fmt.Errorf("%w: map epoch %d: node table of epoch %d: %v", ErrCorrupt, h.Epoch, h.NodesBase, err)
		}
	}
	nodes := make(map[string]Node, len(h.NodeIDs))
	for _, id := range h.NodeIDs {
		n, ok := h.NodesChanged[id]
		if !ok {
			if n, ok = base[id]; !ok {
				return fmt.Errorf("%w: map epoch %d: node %q has no record in the head or the node table of epoch %d", ErrCorrupt, h.Epoch, id, h.NodesBase)
			}
		}
		nodes[id] = n
	}
	if len(nodes) != len(h.NodeIDs) {
		return fmt.Errorf("%w: map epoch %d lists a node twice", ErrCorrupt, h.Epoch)
	}
	for id := range h.NodesChanged {
		if _, ok := nodes[id]; !ok {
			return fmt.Errorf("%w: map epoch %d: changed node %q is not in node_ids", ErrCorrupt, h.Epoch, id)
		}
	}
	h.Nodes, h.baseNodes, h.baseBytes = nodes, base, len(table)
	if table == nil {
		h.baseBytes = prev.baseBytes
	}
	return nil
}
