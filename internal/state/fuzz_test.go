package state

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/clusterkit-go/clusterkit/internal/keys"
)

// Fuzz targets for every decoder of a value read from etcd. Each checks that the decoder returns
// an error, never panics, on any input; that what it accepts survives a round trip through the
// package's encoder; and, for the fast decoders, that they agree with encoding/json. The seeds
// are values the package's own encoders write, and a few broken ones. go test runs the seeds;
// internal/fuzztest fuzzes each target for a short while; run one longer with
//
//	go test ./internal/state -run '^$' -fuzz '^FuzzDecodeHead$' -fuzztime 5m

// fuzzAt is the time of the seeds' copies in flight.
var fuzzAt = time.Date(2026, 1, 2, 3, 4, 5, 678000000, time.UTC)

// fuzzSchema is the key schema of the maps the fuzz targets store.
var fuzzSchema = keys.New("fuzz")

// fuzzMap is a map of 24 partitions on 4 nodes with copies in flight and an absent node, as a
// leader publishes it during a join.
func fuzzMap() *Map {
	m := bigMap(24, 4)
	m.UpdatedAt = fuzzAt
	m.Cause = Cause{Reason: ReasonJoin, Nodes: []string{"node-3"}}
	m.Nodes["node-1"] = Node{ID: "node-1", IP: "10.0.0.1:7946", Zone: "z1", Weight: 2,
		Metadata: map[string]string{"data_addr": "10.0.0.1:9000"}, Instance: "i-1", StartedAt: fuzzAt}
	m.Absent = map[string]Absent{"node-9": {Since: fuzzAt, Zone: "z2", Weight: 1}}
	for p := 0; p < len(m.Partitions); p += 5 {
		e := &m.Partitions[p]
		joining := fmt.Sprintf("node-%d", (p+3)%4)
		e.Pending = []Pending{{Node: joining, Since: 6, Started: fuzzAt, Attempt: 1 + p%3}}
		e.Target = []string{joining, e.Holders[1], e.Holders[2]}
	}
	return m
}

// fuzzNext is the map after m: two copies finished, their partitions on their targets.
func fuzzNext(m *Map) *Map {
	next := *m
	next.Epoch++
	next.Cause = Cause{Reason: ReasonHandoff}
	next.Partitions = slices.Clone(m.Partitions)
	for _, p := range []int{0, 5} {
		next.Partitions[p] = Entry{Holders: next.Partitions[p].Target, PrimaryEpoch: next.Epoch}
	}
	return &next
}

// fuzzStored is fuzzMap and the map after it stored out of line under maxValue: the second head,
// the checkpoint's chunks and the second map's delta pieces, one per line, and the node table,
// as FuzzReadMap takes them; and the first head.
func fuzzStored(tb testing.TB, maxValue int) (head, chunks, deltas, nodes, firstHead []byte) {
	m := fuzzMap()
	enc, err := EncodeNext(nil, m, maxValue)
	if err != nil {
		tb.Fatal(err)
	}
	next := fuzzNext(m)
	enc2, err := EncodeNext(m, next, maxValue)
	if err != nil {
		tb.Fatal(err)
	}
	if !enc.Checkpoint() || len(enc2.Deltas) == 0 {
		tb.Fatalf("the seed maps are not stored as a checkpoint and a delta: %d chunks, %d pieces", len(enc.Chunks), len(enc2.Deltas))
	}
	return enc2.Head, bytes.Join(enc.Chunks, []byte("\n")), bytes.Join(enc2.Deltas, []byte("\n")), enc.Nodes, enc.Head
}

// inlineHead is m encoded whole, as the partitions key holds a small map.
func inlineHead(tb testing.TB, m *Map) []byte {
	enc, err := EncodeNext(nil, m, MaxValue)
	if err != nil || enc.Checkpoint() {
		tb.Fatalf("map of epoch %d not stored inline: %v", m.Epoch, err)
	}
	return enc.Head
}

// sameEntries reports whether a and b hold the same entries by Entry.Equal. A time with a zone
// offset other than a whole hour decodes to a *time.Location of its own every time, which the ==
// in Entry.Equal tells apart: entries Equal calls different are compared again with their
// copies' start times compared by instant and zone.
func sameEntries(a, b []Entry) bool {
	return slices.EqualFunc(a, b, func(x, y Entry) bool {
		return x.Equal(&y) || x.PrimaryEpoch == y.PrimaryEpoch && slices.Equal(x.Holders, y.Holders) &&
			slices.Equal(x.Target, y.Target) && slices.EqualFunc(x.Pending, y.Pending, samePending)
	})
}

func samePending(a, b Pending) bool {
	az, ao := a.Started.Zone()
	bz, bo := b.Started.Zone()
	return a.Node == b.Node && a.Since == b.Since && a.Attempt == b.Attempt && a.Started.Equal(b.Started) && az == bz && ao == bo
}

// sameTargets reports whether the entries of a and b have a Target at the same places: Placement
// tells a nil Target from an empty one.
func sameTargets(a, b []Entry) bool {
	return slices.EqualFunc(a, b, func(x, y Entry) bool { return (x.Target == nil) == (y.Target == nil) })
}

// sameMap reports how b differs from a as a map: its head, node table, absent nodes and
// partitions, and with storage the fields that say where its partitions are stored.
func sameMap(a, b *Map, storage bool) error {
	switch {
	case a.Epoch != b.Epoch || a.Leader != b.Leader || !a.UpdatedAt.Equal(b.UpdatedAt):
		return fmt.Errorf("epoch %d by %q at %v, then %d by %q at %v", a.Epoch, a.Leader, a.UpdatedAt, b.Epoch, b.Leader, b.UpdatedAt)
	case a.Cause.Reason != b.Cause.Reason || !slices.Equal(a.Cause.Nodes, b.Cause.Nodes):
		return fmt.Errorf("cause %+v, then %+v", a.Cause, b.Cause)
	case !maps.EqualFunc(a.Nodes, b.Nodes, Node.Equal):
		return fmt.Errorf("nodes %+v, then %+v", a.Nodes, b.Nodes)
	case !maps.EqualFunc(a.Absent, b.Absent, func(x, y Absent) bool { return x.Since.Equal(y.Since) && x.Zone == y.Zone && x.Weight == y.Weight }):
		return fmt.Errorf("absent %+v, then %+v", a.Absent, b.Absent)
	case !sameEntries(a.Partitions, b.Partitions):
		return fmt.Errorf("partitions %+v, then %+v", a.Partitions, b.Partitions)
	case storage && (a.Chunks != b.Chunks || a.Checkpoint != b.Checkpoint || a.CheckpointBytes != b.CheckpointBytes || a.DeltaBytes != b.DeltaBytes):
		return fmt.Errorf("stored in %d chunks at %d (%d bytes, %d of deltas), then %d at %d (%d, %d)", a.Chunks, a.Checkpoint,
			a.CheckpointBytes, a.DeltaBytes, b.Chunks, b.Checkpoint, b.CheckpointBytes, b.DeltaBytes)
	}
	return nil
}

// memKV is the keys and values of a cluster at one revision.
type memKV map[string][]byte

// readMap reads the map stored in kv as mapstore.ReadMap reads it from etcd: the head, then what
// NextReads names.
func (kv memKV) readMap() (*Map, error) {
	h, err := DecodeHead(kv[fuzzSchema.Partitions()])
	if err != nil {
		return nil, err
	}
	if _, err := kv.readNext(h, nil); err != nil {
		return nil, err
	}
	return h, nil
}

// readNext fills in h as mapstore.ReadNext does, from kv.
func (kv memKV) readNext(h, prev *Map) ([]int, error) {
	r := NextReads(fuzzSchema, h, prev)
	var kvs []KV
	for _, k := range slices.Sorted(maps.Keys(kv)) {
		if r.End != "" && k >= r.Start && k < r.End || r.Table != "" && k == r.Table {
			kvs = append(kvs, KV{Key: k, Value: kv[k]})
		}
	}
	return DecodeNext(fuzzSchema, h, prev, kvs)
}

// storedKV holds head under the partitions key and, when head decodes to a map stored out of
// line, each line of chunks as a chunk of its checkpoint, each line of deltas as the one piece
// of the delta of each epoch after the checkpoint, and nodes as the node table it names.
func storedKV(head, chunks, deltas, nodes []byte) memKV {
	kv := memKV{fuzzSchema.Partitions(): head}
	h, err := DecodeHead(head)
	if err != nil || h.Chunks == 0 {
		return kv
	}
	if h.NodesBase > 0 && nodes != nil {
		kv[fuzzSchema.NodeTable(h.NodesBase)] = nodes
	}
	cp := h.checkpoint()
	if len(chunks) > 0 {
		for i, c := range bytes.Split(chunks, []byte("\n")) {
			kv[fuzzSchema.Chunk(cp, i)] = c
		}
	}
	if len(deltas) > 0 {
		for i, d := range bytes.Split(deltas, []byte("\n")) {
			kv[fuzzSchema.Delta(cp+1+uint64(i), 0)] = d
		}
	}
	return kv
}

// writtenKV is m as EncodeNext stores it with no map before it, under maxValue. It sets m's
// storage fields.
func writtenKV(m *Map, maxValue int) (memKV, error) {
	enc, err := EncodeNext(nil, m, maxValue)
	if err != nil {
		return nil, err
	}
	kv := memKV{fuzzSchema.Partitions(): enc.Head}
	for i, c := range enc.Chunks {
		kv[fuzzSchema.Chunk(m.Epoch, i)] = c
	}
	if enc.Nodes != nil {
		kv[fuzzSchema.NodeTable(m.Epoch)] = enc.Nodes
	}
	return kv, nil
}

// The value of the partitions key: an inline map or the head of one stored out of line.
func FuzzDecodeHead(f *testing.F) {
	head, _, _, _, firstHead := fuzzStored(f, 4096)
	f.Add(head)
	f.Add(firstHead)
	f.Add(inlineHead(f, fuzzMap()))
	f.Add(inlineHead(f, bigMap(3, 3)))
	f.Add([]byte(`{"epoch":3,"leader":"a","nodes":{"a":{"id":"a","ip":"x:1"}},"partitions":[{"holders":["a"],"primary_epoch":1}]}`))
	f.Add([]byte(`{"epoch":3,"chunks":2,"checkpoint":4}`))
	f.Add([]byte(`{"epoch":3,"chunks":-1}`))
	f.Add([]byte(`{"epoch":3,"chunks":1,"partitions":[{"holders":["a"],"primary_epoch":1}]}`))
	f.Add([]byte(`{"partitions":[{"holders":["a","a"],"primary_epoch":1,"pending":[{"node":"a"}]}]}`))
	f.Add([]byte(`{"partitions":[{"holders":[]}]}`))
	f.Add([]byte(`null`))
	f.Add([]byte(`{"epoch":`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := DecodeHead(b)
		if err != nil {
			return
		}
		if m.Chunks < 0 || m.Chunks > 0 && (m.Checkpoint > m.Epoch || len(m.Partitions) > 0) {
			t.Fatalf("accepted a head with %d chunks at checkpoint %d of epoch %d and %d partitions inline",
				m.Chunks, m.Checkpoint, m.Epoch, len(m.Partitions))
		}
		n := len(m.Partitions)
		valid := m.Validate(n)
		_ = m.Validate(n + 1)
		_ = m.ValidateChange(n, m, []int{})
		// What DecodeHead accepts encodes, and decodes again to the same map.
		out, err := json.Marshal(m)
		if err != nil {
			t.Fatalf("a decoded head does not encode: %v", err)
		}
		again, err := DecodeHead(out)
		if err != nil {
			t.Fatalf("the encoding of a decoded head does not decode: %v\n%s", err, out)
		}
		if err := sameMap(m, again, true); err != nil {
			t.Fatalf("a head changes in a round trip: %v\n%q\n%s", err, b, out)
		}
		if (again.Validate(n) == nil) != (valid == nil) {
			t.Fatalf("a round trip changes whether the map is valid: %v, then %v", valid, again.Validate(n))
		}
	})
}

// The partitions of an inline map (and a checkpoint's chunk as written before the compact form):
// the fast decoder agrees with encoding/json whenever both accept the input, and DecodeEntries'
// result round-trips.
func FuzzDecodeEntries(f *testing.F) {
	whole, err := json.Marshal(fuzzMap().Partitions)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(whole)
	for _, s := range []string{
		`[]`,
		`[{"holders":["a","b"],"primary_epoch":3,"pending":[{"node":"c","since":4,"started":"2026-01-01T00:00:00.123456789Z","attempt":1},{"node":"d","since":5,"started":"2026-01-01T00:00:01+02:00","attempt":12}],"target":["c","d","a"]},{"holders":["b"],"primary_epoch":9}]`,
		`[{"holders":["a"],"primary_epoch":3,"pending":[{"node":"c","since":4,"started":"2026-01-01T00:00:00+05:30","attempt":1}]}]`,
		`[{"holders":["a"],"primary_epoch":3,"target":[]}]`,
		`[{"holders":[],"primary_epoch":3}]`,
		`[{"holders":["a\"b"],"primary_epoch":3}]`,
		// Invalid UTF-8 and a control character: encoding/json replaces the first and refuses
		// the second, and so must the fast decoder.
		"[{\"holders\":[\"\x80\"],\"primary_epoch\":0}]",
		"[{\"holders\":[\"a\x01\"],\"primary_epoch\":0}]",
		`[ {"holders": ["a"], "primary_epoch": 3} ]`,
		`[{"primary_epoch":3,"holders":["a"]}]`,
		`[{"holders":["a"],"primary_epoch":18446744073709551616}]`,
		`[{"holders":["a"],"primary_epoch":3,"pending":[{"node":"c","since":4,"started":"not a time","attempt":1}]}]`,
		`[{"holders":["a"],"primary_epoch":3,"pending":[]}]`,
		`[{"holders":["a"]`,
		`{}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		fast, fastOK := decodeEntries(b)
		var plain []Entry
		plainErr := json.Unmarshal(b, &plain)
		if fastOK && plainErr == nil && (!sameEntries(fast, plain) || !sameTargets(fast, plain)) {
			t.Fatalf("the fast decoder and encoding/json disagree on %q:\n%+v\n%+v", b, fast, plain)
		}
		got, err := DecodeEntries(b)
		if err != nil {
			if fastOK {
				t.Fatalf("DecodeEntries refuses what the fast decoder accepts: %v", err)
			}
			return
		}
		out, err := json.Marshal(got)
		if err != nil {
			t.Fatalf("decoded entries do not encode: %v", err)
		}
		again, err := DecodeEntries(out)
		if err != nil {
			t.Fatalf("the encoding of decoded entries does not decode: %v\n%s", err, out)
		}
		if !sameEntries(again, got) {
			t.Fatalf("entries change in a round trip:\n%q\n%s", b, out)
		}
	})
}

// A delta piece: refused or decoded, never a panic, and a piece of distinct partitions within a
// map's bounds encodes again to one that decodes the same.
func FuzzDecodePiece(f *testing.F) {
	_, _, deltas, _, _ := fuzzStored(f, 4096)
	for d := range bytes.SplitSeq(deltas, []byte("\n")) {
		f.Add(d)
	}
	m := fuzzNext(fuzzMap())
	pieces, _, err := encodeDelta(m.Epoch, []int{0, 3, 5, 20}, nil, m.Partitions, 400)
	if err != nil {
		f.Fatal(err)
	}
	for _, p := range pieces {
		f.Add(p)
	}
	for _, s := range []string{
		`{"epoch":9,"piece":0,"pieces":1,"names":[],"partitions":[],"entries":[]}`,
		`{"epoch":9,"piece":0,"pieces":1,"names":["a","b"],"started":{"9":1767225600123},"settled":"1-3,7","partitions":[2,4],"entries":[[[0],9],[[0],8,[[1]]]]}`,
		`{"epoch":9,"piece":0,"pieces":1,"names":["a","b"],"partitions":[4],"entries":[[[0],8,[[1,7,2,1767225600123]],[1,0]]]}`,
		`{"epoch":9,"piece":0,"pieces":1,"names":["a"],"partitions":[2],"entries":[[[1],9]]}`,
		`{"epoch":9,"piece":0,"pieces":1,"names":["a","b"],"partitions":[2],"entries":[[[0],9,[[1]]]]}`,
		`{"epoch":9,"piece":0,"pieces":1,"names":["a"],"partitions":[2],"entries":[[[0],9,[[0,9,0]]]]}`,
		`{"epoch":9,"piece":0,"pieces":1,"partitions":[2],"entries":[{"holders":["a"],"primary_epoch":9}]}`,
		`{"epoch":9,"piece":0,"pieces":1,"partitions":[-1],"entries":[{"holders":["a"],"primary_epoch":9}]}`,
		`{"epoch":9,"piece":2,"pieces":1,"names":[],"partitions":[1,1],"entries":[]}`,
		`{"epoch":9,"piece":0,"pieces":1,"names":["a"],"partitions":[1],"entries":[[[0],18446744073709551616]]}`,
		`{"epoch":9,"piece":0,"pieces":1,"names":["a"],"partitions":[1],"entries":[[[0],1] ]  }`,
		`{"epoch":9,"piece":0,"pieces":1,"names":["a"],"partitions":[1],"entries":[[[0],1]`,
		`{"epoch":9,"piece":0`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := decodePiece(b)
		if err != nil || p.Settled != "" {
			return
		}
		if len(p.Partitions) != len(p.Entries) || len(p.Partitions) == 0 || len(b) > MaxValue/2 {
			return
		}
		// A piece as encodeDelta writes one: distinct partitions of a map of at most 65536.
		last := slices.Max(p.Partitions)
		if slices.Min(p.Partitions) < 0 || last >= 1<<16 || len(slices.Compact(slices.Sorted(slices.Values(p.Partitions)))) != len(p.Partitions) {
			return
		}
		parts := make([]Entry, last+1)
		for i, idx := range p.Partitions {
			parts[idx] = p.Entries[i]
		}
		out, _, err := encodeDelta(p.Epoch, p.Partitions, nil, parts, MaxValue)
		if err != nil || len(out) != 1 {
			t.Fatalf("a decoded piece does not encode as one piece: %d pieces, %v", len(out), err)
		}
		again, err := decodePiece(out[0])
		if err != nil || again.Epoch != p.Epoch || !slices.Equal(again.Partitions, p.Partitions) || !sameEntries(again.Entries, p.Entries) {
			t.Fatalf("a piece changes in a round trip (%v):\n%q\n%s", err, b, out[0])
		}
	})
}

// A checkpoint's chunk: refused or decoded, never a panic, and what decodes encodes again to a
// chunk that decodes the same.
func FuzzDecodeChunk(f *testing.F) {
	for _, maxValue := range []int{4096, 1024} {
		_, chunks, _, _, _ := fuzzStored(f, maxValue)
		for c := range bytes.SplitSeq(chunks, []byte("\n")) {
			f.Add(c)
		}
	}
	for _, s := range []string{
		`{"epoch":3,"names":[],"entries":[]}`,
		`{"epoch":3,"names":["a","b","c"],"started":{"3":1767225600123,"2":-5},"entries":[[[0,1],3],[[1],2,[[2],[0,2]]],[[1,2],1,[[0,2,3]],[]]]}`,
		`{"epoch":3,"names":["a"],"entries":[[[0],1,[[0,1,1,9]],[0]]]}`,
		`{"epoch":3,"names":["a"],"entries":[[[0],1,[[0]]]]}`,
		// An empty target where none is implied was left out when written again, and the
		// entry then read as one without a target.
		`{"epoch":3,"names":["a"],"started":{"3":0},"entries":[[[],0,[[0]],[]]]}`,
		`[{"holders":["a"],"primary_epoch":3,"target":[]}]`,
		`{"epoch":3,"names":["a"],"entries":[[[2],1]]}`,
		`{"epoch":3,"names":["a"],"entries":[[[0],-1]]}`,
		`[{"holders":["a"],"primary_epoch":3}]`,
		`{"epoch":3,"names":["a"],"entries":{}}`,
		`{"epoch":3,"names":["a"]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		es, err := decodeChunk(b)
		if err != nil || len(es) == 0 || len(es) > 1<<16 || len(b) > MaxValue/2 {
			return
		}
		out, _, err := encodeChunks(7, es, MaxValue)
		if err != nil {
			return // an entry too large for one value
		}
		var again []Entry
		for _, c := range out {
			part, err := decodeChunk(c)
			if err != nil {
				t.Fatalf("a decoded chunk, encoded again, does not decode: %v\n%s", err, c)
			}
			again = append(again, part...)
		}
		if !sameEntries(again, es) {
			t.Fatalf("a chunk changes in a round trip:\n%q\n%s", b, bytes.Join(out, []byte("\n")))
		}
	})
}

// A whole stored map, as mapstore.ReadMap reads it from a head, its checkpoint's chunks and the
// deltas since: it is refused or read, never a panic. A map read encodes and reads back the same, and
// reading its deltas against the checkpoint gives the same partitions and names every partition
// that changed.
func FuzzReadMap(f *testing.F) {
	for _, maxValue := range []int{4096, 1024} {
		head, chunks, deltas, nodes, firstHead := fuzzStored(f, maxValue)
		f.Add(head, chunks, deltas, nodes)
		f.Add(firstHead, chunks, []byte(nil), nodes)
		f.Add(head, chunks, []byte(nil), nodes)
		f.Add(head, chunks, deltas, []byte(nil))
	}
	f.Add(inlineHead(f, fuzzMap()), []byte(nil), []byte(nil), []byte(nil))
	head, chunks, _, nodes, _ := fuzzStored(f, 4096)
	// A negative partition in a delta piece (read by encoding/json) was an index out of range.
	f.Add(head, chunks, []byte(`{"epoch":8,"piece":0,"pieces":1,"partitions":[-1],"entries":[{"holders":["node-1"],"primary_epoch":8}]}`), nodes)
	f.Add(head, chunks, []byte(`{"epoch":8,"piece":0,"pieces":1,"partitions":[24],"entries":[{"holders":["node-1"],"primary_epoch":8}]}`), nodes)
	f.Add(head, chunks, []byte(`{"epoch":8,"piece":0,"pieces":1,"names":[],"settled":"0-30","partitions":[],"entries":[]}`), nodes)
	f.Add(head, chunks, []byte(`{"epoch":8,"piece":0,"pieces":1,"names":[],"settled":"1","partitions":[],"entries":[]}`), nodes)
	f.Add(head, chunks, []byte(`{"epoch":8,"piece":-1,"pieces":0,"partitions":[],"entries":[]}`), nodes)
	f.Add(head, chunks, []byte(nil), []byte(`{"node-1":{"id":"node-1","ip":"x:1"}}`))
	f.Add(head, []byte(`[]`), []byte(`{"epoch":8,"piece":0,"pieces":1,"partitions":[],"entries":[]}`), nodes)
	f.Add([]byte(`{"epoch":8,"chunks":1,"checkpoint":7,"nodes":{"a":{"id":"a","ip":"x:1"}}}`), []byte(`[{"holders":["a"],"primary_epoch":1}]`),
		[]byte(`{"epoch":8,"piece":0,"pieces":1,"partitions":[0],"entries":[{"holders":["b"],"primary_epoch":8}]}`), []byte(nil))
	f.Fuzz(func(t *testing.T, head, chunks, deltas, nodes []byte) {
		kv := storedKV(head, chunks, deltas, nodes)
		m, err := kv.readMap()
		if err != nil {
			return
		}

		// Written again, chunked where it is large enough, it reads back the same.
		w := *m
		written, err := writtenKV(&w, 4096)
		if err != nil {
			if written, err = writtenKV(&w, MaxValue); err != nil {
				t.Fatalf("a map read does not encode: %v", err)
			}
		}
		back, err := written.readMap()
		if err != nil {
			t.Fatalf("a map read, written again, does not read: %v", err)
		}
		if err := sameMap(m, back, false); err != nil {
			t.Fatalf("a map changes when written again: %v", err)
		}

		// Read as a change to its checkpoint, it is the same map, and the change names every
		// partition that differs.
		if m.Chunks == 0 || m.Epoch == m.checkpoint() {
			return
		}
		prev, _ := DecodeHead(head)
		prev.Epoch = prev.checkpoint()
		if _, err := kv.readNext(prev, nil); err != nil {
			t.Fatalf("the checkpoint of a map read does not read: %v", err)
		}
		prevBefore := *prev
		prevBefore.Partitions = slices.Clone(prev.Partitions)
		h, _ := DecodeHead(head)
		changed, err := kv.readNext(h, prev)
		if err != nil {
			t.Fatalf("a map read whole does not read as a change to its checkpoint: %v", err)
		}
		if !sameEntries(h.Partitions, m.Partitions) {
			t.Fatalf("read whole and read as a change, a map differs")
		}
		if err := sameMap(&prevBefore, prev, true); err != nil {
			t.Fatalf("DecodeNext modified the map before")
		}
		if changed == nil {
			return // the checkpoint has no partitions: read whole
		}
		if !slices.IsSorted(changed) || len(slices.Compact(slices.Clone(changed))) != len(changed) {
			t.Fatalf("changed partitions %v are not sorted and distinct", changed)
		}
		for i := range h.Partitions {
			if !h.Partitions[i].Equal(&prev.Partitions[i]) && !slices.Contains(changed, i) {
				t.Fatalf("partition %d changed but is not in %v", i, changed)
			}
		}
	})
}

// ValidateChange on decoded maps never panics, and, told exactly which partitions changed since
// a valid map, agrees with Validate.
func FuzzValidateChange(f *testing.F) {
	prev := fuzzMap()
	next := fuzzNext(prev)
	prevHead := inlineHead(f, prev)
	f.Add(prevHead, inlineHead(f, next), []byte{0, 5})
	gone := fuzzNext(prev)
	gone.Nodes = maps.Clone(prev.Nodes)
	delete(gone.Nodes, "node-2")
	f.Add(prevHead, inlineHead(f, gone), []byte{})
	ghost := fuzzNext(prev)
	ghost.Partitions[7] = Entry{Holders: []string{"ghost"}, PrimaryEpoch: ghost.Epoch}
	f.Add(prevHead, inlineHead(f, ghost), []byte{7})
	short := fuzzNext(prev)
	short.Partitions = short.Partitions[:20]
	f.Add(prevHead, inlineHead(f, short), []byte{1})
	f.Fuzz(func(t *testing.T, prevB, nextB, pick []byte) {
		prev, err := DecodeHead(prevB)
		if err != nil {
			return
		}
		next, err := DecodeHead(nextB)
		if err != nil {
			return
		}
		n := len(prev.Partitions)
		if err := prev.Validate(n); err != nil {
			return // ValidateChange takes a valid map before
		}
		var changed []int
		for i := range next.Partitions[:min(n, len(next.Partitions))] {
			if !next.Partitions[i].Equal(&prev.Partitions[i]) {
				changed = append(changed, i)
			}
		}
		var extra []int
		for _, b := range pick {
			if n > 0 {
				extra = append(extra, int(b)%n)
			}
		}
		whole := next.Validate(n)
		_ = next.ValidateChange(n, prev, extra)
		_ = next.ValidateChange(n, prev, nil)
		if len(next.Partitions) != n {
			if next.ValidateChange(n, prev, changed) == nil {
				t.Fatalf("a map of %d partitions accepted for %d", len(next.Partitions), n)
			}
			return
		}
		if part := next.ValidateChange(n, prev, changed); (part == nil) != (whole == nil) {
			t.Fatalf("with the exact change %v, ValidateChange says %v and Validate %v", changed, part, whole)
		}
		if part := next.ValidateChange(n, prev, append(slices.Clone(changed), extra...)); (part == nil) != (whole == nil) {
			t.Fatalf("with the change %v and more, ValidateChange says %v and Validate %v", changed, part, whole)
		}
	})
}

// A node record: what DecodeNode accepts passes Node.Check and round-trips.
func FuzzDecodeNode(f *testing.F) {
	for _, n := range fuzzMap().Nodes {
		b, err := json.Marshal(n)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	b, err := json.Marshal(Node{ID: "node-7", IP: "10.0.0.7:7946", State: NodeDraining, EtcdEndpoints: []string{"http://10.0.0.7:2379"}, StartedAt: fuzzAt})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	for _, s := range []string{
		`{"id":"a","ip":"x:1","weight":-1}`,
		`{"id":"a","ip":"x:1","state":"gone"}`,
		`{"id":"a/b","ip":"x:1"}`,
		`{"id":"a","ip":""}`,
		`{"id":"a","ip":"x:1","metadata":{"k":"` + string(bytes.Repeat([]byte("v"), MaxNodeRecord)) + `"}}`,
		`{"id":"a","ip":"x:1","started_at":"yesterday"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		n, err := DecodeNode(b)
		if err != nil {
			return
		}
		if err := n.Check(); err != nil {
			t.Fatalf("DecodeNode accepted a record Check refuses: %v", err)
		}
		out, err := json.Marshal(n)
		if err != nil {
			t.Fatalf("a decoded node record does not encode: %v", err)
		}
		if len(out) > MaxNodeRecord {
			return // escapes can make the encoding longer than the record read
		}
		again, err := DecodeNode(out)
		if err != nil || !again.Equal(n) {
			t.Fatalf("a node record changes in a round trip (%v):\n%q\n%s", err, b, out)
		}
	})
}

// A held-epoch report: what DecodeHeld accepts names a node and an epoch, and round-trips.
func FuzzDecodeHeld(f *testing.F) {
	b, err := json.Marshal(Held{Node: "node-2", Epoch: 41, Reason: "stored map is older"})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add([]byte(`{"node":"a","epoch":0}`))
	f.Add([]byte(`{"node":"","epoch":3}`))
	f.Add([]byte(`{"node":"a","epoch":-3}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := DecodeHeld(b)
		if err != nil {
			return
		}
		if h.Node == "" || h.Epoch == 0 {
			t.Fatalf("DecodeHeld accepted a report without node or epoch: %+v", h)
		}
		out, err := json.Marshal(h)
		if err != nil {
			t.Fatalf("a decoded report does not encode: %v", err)
		}
		if again, err := DecodeHeld(out); err != nil || again != h {
			t.Fatalf("a held-epoch report changes in a round trip (%v): %+v, then %+v", err, h, again)
		}
	})
}

// fuzzCount maps any int to a partition count a config allows, 1..65536.
func fuzzCount(n int) int { return 1 + int(uint(n)%(1<<16)) }

// An acknowledgement record: what DecodeAcks accepts names each partition once, within the
// partition count, and EncodeAcks writes it again to a record that decodes the same.
func FuzzDecodeAcks(f *testing.F) {
	for _, acked := range []map[int]uint64{
		{0: 5, 1: 5, 2: 5, 9: 5, 3: 7, 23: 7},
		{},
		{4095: 1},
	} {
		b, err := EncodeAcks("node-4", acked)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, 4095)
	}
	f.Add([]byte(`{"node":"a","copies":[{"since":1,"partitions":"0-5"},{"since":2,"partitions":"3"}]}`), 63)
	f.Add([]byte(`{"node":"a","copies":[{"since":1,"partitions":"0-999999999"}]}`), 63)
	f.Add([]byte(`{"node":"a","copies":[{"since":1,"partitions":"5-3,1"}]}`), 63)
	f.Add([]byte(`{"node":"a","copies":null}`), 0)
	f.Fuzz(func(t *testing.T, b []byte, count int) {
		n := fuzzCount(count)
		node, acked, err := DecodeAcks(b, n)
		if err != nil {
			return
		}
		if len(acked) > n {
			t.Fatalf("%d partitions acknowledged of %d", len(acked), n)
		}
		for p := range acked {
			if p < 0 || p >= n {
				t.Fatalf("partition %d acknowledged of %d", p, n)
			}
		}
		out, err := EncodeAcks(node, acked)
		if err != nil {
			t.Fatalf("a decoded record does not encode: %v", err)
		}
		node2, again, err := DecodeAcks(out, n)
		if err != nil || node2 != node || !maps.Equal(again, acked) {
			t.Fatalf("an acknowledgement record changes in a round trip (%v):\n%q\n%s", err, b, out)
		}
	})
}

// Partition ranges: ParseRanges returns distinct partitions within the count, in order, and
// FormatRanges writes them back to text that parses to the same partitions.
func FuzzRanges(f *testing.F) {
	for _, ps := range [][]int{nil, {0}, {0, 1, 2, 5, 7, 8}, {3, 9, 10, 11, 4095}} {
		f.Add(FormatRanges(ps), 4095)
	}
	for _, s := range []string{"x", "1-", "5-3", "-1", "4096", "0-4096", "1,,2", "0-999999999", "+1", "01"} {
		f.Add(s, 4095)
	}
	// Ranges that overlap or go back were read, each partition as often as named: a record
	// repeating "0-65535" cost 65536 partitions per 8 bytes.
	for _, s := range []string{"0-1,0-1", "3,1", "1-2,2-3", "0-65535,0-65535"} {
		f.Add(s, 65535)
	}
	f.Fuzz(func(t *testing.T, s string, count int) {
		n := fuzzCount(count)
		ps, err := ParseRanges(s, n)
		if err != nil {
			return
		}
		if len(ps) > n {
			t.Fatalf("ParseRanges(%q, %d) returned %d partitions", s, n, len(ps))
		}
		for i, p := range ps {
			if p < 0 || p >= n || i > 0 && p <= ps[i-1] {
				t.Fatalf("ParseRanges(%q, %d) = %v: not increasing within [0, %d)", s, n, ps, n)
			}
		}
		text := FormatRanges(ps)
		again, err := ParseRanges(text, n)
		if err != nil || !slices.Equal(again, ps) {
			t.Fatalf("ParseRanges(%q) = %v, formatted %q, parsed again %v, %v", s, ps, text, again, err)
		}
		if FormatRanges(again) != text {
			t.Fatalf("FormatRanges is not stable on %q", text)
		}
	})
}

// The config key, as DecodeConfig decodes it: a config that Check accepts encodes and decodes
// to the same settings.
func FuzzConfig(f *testing.F) {
	for _, c := range []Config{
		{ClusterID: "c1", PartitionCount: 64, ReplicationFactor: 3, Hash: HashConfig{Algorithm: HashMD5, Modulo: 64, Format: "partition-%d"}, CreatedAt: fuzzAt},
		{ClusterID: "c2", PartitionCount: 65536, ReplicationFactor: 16, Hash: HashConfig{Algorithm: HashMD5, Modulo: 65536, Format: "partition-%d"}, EmbeddedMembers: 3},
		{ClusterID: "c3", PartitionCount: 0, ReplicationFactor: 3, Hash: HashConfig{Algorithm: "sha1", Modulo: 0}},
	} {
		b, err := json.Marshal(c)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"cluster_id":"c","partition_count":99999999999,"replication_factor":3,"hash":{"algorithm":"md5","modulo":99999999999}}`))
	f.Add([]byte(`{"cluster_id":"c","partition_count":8,"replication_factor":3,"hash":{"algorithm":"md5","modulo":8},"embedded_members":2}`))
	f.Add([]byte(`{"cluster_id":"c","partition_count":"8"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := DecodeConfig(b)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("DecodeConfig: %v, not ErrCorrupt", err)
			}
			return
		}
		if err := c.Check(); err != nil {
			return
		}
		if c.PartitionCount < 1 || c.PartitionCount > 1<<16 || c.Hash.Modulo != c.PartitionCount {
			t.Fatalf("Check accepted %+v", c)
		}
		out, err := json.Marshal(c)
		if err != nil {
			t.Fatalf("a config Check accepts does not encode: %v", err)
		}
		again, err := DecodeConfig(out)
		if err != nil {
			t.Fatalf("the encoding of a config does not decode: %v", err)
		}
		if err := again.Check(); err != nil {
			t.Fatalf("a config Check accepts is refused after a round trip: %v", err)
		}
		if s, ours, theirs := c.Differs(*again); s != "" || again.ClusterID != c.ClusterID || again.Hash != c.Hash || again.EmbeddedMembers != c.EmbeddedMembers {
			t.Fatalf("a config changes in a round trip: %s %v, then %v", s, ours, theirs)
		}
	})
}
