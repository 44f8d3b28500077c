package state

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"
)

func bigMap(partitions, nodes int) *Map {
	m := &Map{Epoch: 7, Leader: "node-0", Nodes: map[string]Node{}}
	for i := 0; i < nodes; i++ {
		id := fmt.Sprintf("node-%d", i)
		m.Nodes[id] = Node{ID: id, IP: "127.0.0.1:1"}
	}
	for p := 0; p < partitions; p++ {
		m.Partitions = append(m.Partitions, Entry{Holders: []string{
			fmt.Sprintf("node-%d", p%nodes), fmt.Sprintf("node-%d", (p+1)%nodes), fmt.Sprintf("node-%d", (p+2)%nodes),
		}, PrimaryEpoch: 3})
	}
	return m
}

// A small map stays inline; a larger one is a checkpoint cut into chunks no larger than the
// limit; a change to it is a delta of the changed partitions only, split into pieces no larger
// than the limit.
func TestEncodeNext(t *testing.T) {
	tests := []struct {
		name       string
		partitions int
		maxValue   int
		chunked    bool
	}{
		{"small inline", 64, MaxValue, false},
		{"large chunked", 65536, MaxValue, true},
		{"tiny limit", 50, 600, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := bigMap(tt.partitions, 5)
			enc, err := EncodeNext(nil, m, tt.maxValue)
			if err != nil {
				t.Fatal(err)
			}
			if enc.Checkpoint() != tt.chunked || m.Chunks != len(enc.Chunks) || len(enc.Deltas) != 0 {
				t.Fatalf("%d chunks (head says %d), %d deltas, chunked=%v wanted", len(enc.Chunks), m.Chunks, len(enc.Deltas), tt.chunked)
			}
			for i, c := range enc.Chunks {
				if len(c) > tt.maxValue {
					t.Fatalf("chunk %d is %d bytes, over %d", i, len(c), tt.maxValue)
				}
			}
			if len(enc.Head) > tt.maxValue {
				t.Fatalf("head is %d bytes", len(enc.Head))
			}
			if !tt.chunked {
				return
			}
			// One partition changes: the next map is a delta of that partition.
			next := *m
			next.Epoch++
			next.Partitions = slices.Clone(m.Partitions)
			next.Partitions[7] = Entry{Holders: []string{"node-4"}, PrimaryEpoch: next.Epoch}
			enc2, err := EncodeNext(m, &next, tt.maxValue)
			if err != nil {
				t.Fatal(err)
			}
			if enc2.Checkpoint() || len(enc2.Deltas) != 1 || enc2.Changed != 1 || next.Checkpoint != m.Epoch {
				t.Fatalf("one change: %d chunks, %d pieces, %d changed, checkpoint %d", len(enc2.Chunks), len(enc2.Deltas), enc2.Changed, next.Checkpoint)
			}
			p, err := decodePiece(enc2.Deltas[0])
			if err != nil || !slices.Equal(p.Partitions, []int{7}) || !p.Entries[0].Equal(&next.Partitions[7]) {
				t.Fatalf("delta %s decodes to %+v, %v", enc2.Deltas[0], p, err)
			}
		})
	}
}

// A delta too large for one value is cut into pieces, each within the limit and each saying how
// many there are, and each read back to the entries written.
func TestDeltaPieces(t *testing.T) {
	m := bigMap(400, 5)
	var changed []int
	for i := 0; i < 400; i += 3 {
		m.Partitions[i].Pending = []Pending{{Node: "node-4", Since: 9, Started: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Attempt: 1}}
		m.Partitions[i].Target = []string{"node-4", "node-1"}
		changed = append(changed, i)
	}
	pieces, size, err := encodeDelta(9, changed, nil, m.Partitions, 2000)
	if err != nil {
		t.Fatal(err)
	}
	if len(pieces) < 3 {
		t.Fatalf("%d pieces for %d changes under 2000 bytes", len(pieces), len(changed))
	}
	var got []int
	total := 0
	for i, b := range pieces {
		total += len(b)
		if len(b) > 2000 {
			t.Fatalf("piece %d is %d bytes", i, len(b))
		}
		p, err := decodePiece(b)
		if err != nil {
			t.Fatalf("piece %d: %v: %s", i, err, b)
		}
		if p.Epoch != 9 || p.Piece != i || p.Pieces != len(pieces) || len(p.Partitions) != len(p.Entries) {
			t.Fatalf("piece %d: %+v", i, p)
		}
		for j := range p.Entries {
			if !p.Entries[j].Equal(&m.Partitions[p.Partitions[j]]) {
				t.Fatalf("piece %d entry %d is %+v, want %+v", i, j, p.Entries[j], m.Partitions[p.Partitions[j]])
			}
		}
		got = append(got, p.Partitions...)
	}
	if !slices.Equal(got, changed) || total != size {
		t.Fatalf("pieces name %d partitions of %d, %d bytes counted as %d", len(got), len(changed), total, size)
	}
}

func TestRanges(t *testing.T) {
	for _, tt := range []struct {
		ps   []int
		text string
	}{
		{nil, ""},
		{[]int{0}, "0"},
		{[]int{0, 1, 2, 5, 7, 8}, "0-2,5,7-8"},
		{[]int{3, 9, 10, 11, 4095}, "3,9-11,4095"},
	} {
		if got := FormatRanges(tt.ps); got != tt.text {
			t.Errorf("FormatRanges(%v) = %q, want %q", tt.ps, got, tt.text)
		}
		back, err := ParseRanges(tt.text, 4096)
		if err != nil || !slices.Equal(back, tt.ps) && len(tt.ps) > 0 {
			t.Errorf("ParseRanges(%q) = %v, %v", tt.text, back, err)
		}
	}
	for _, bad := range []string{"x", "1-", "5-3", "-1", "4096", "0-4096", "1,,2"} {
		if _, err := ParseRanges(bad, 4096); err == nil {
			t.Errorf("ParseRanges(%q) accepted", bad)
		}
	}
}

func TestAcksRecord(t *testing.T) {
	acked := map[int]uint64{0: 5, 1: 5, 2: 5, 9: 5, 3: 7, 4095: 7}
	b, err := EncodeAcks("node-4", acked)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"node":"node-4","copies":[{"since":5,"partitions":"0-2,9"},{"since":7,"partitions":"3,4095"}]}`; string(b) != want {
		t.Fatalf("record %s, want %s", b, want)
	}
	node, got, err := DecodeAcks(b, 4096)
	if err != nil || node != "node-4" || !maps.Equal(got, acked) {
		t.Fatalf("decoded %q %v, %v", node, got, err)
	}
	if _, _, err := DecodeAcks(b, 4000); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("a partition beyond the count accepted: %v", err)
	}
	if _, _, err := DecodeAcks([]byte("{"), 4096); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("garbage accepted: %v", err)
	}
}

func TestValidate(t *testing.T) {
	base := func() *Map { return bigMap(4, 3) }
	tests := []struct {
		name string
		edit func(*Map)
		want string
	}{
		{"ok", func(*Map) {}, ""},
		{"wrong count", func(m *Map) { m.Partitions = m.Partitions[:3] }, "has 3 partitions"},
		{"no holder", func(m *Map) { m.Partitions[1].Holders = nil }, "partition-1 has no holder"},
		{"unknown node", func(m *Map) { m.Partitions[2].Holders[1] = "ghost" }, `"ghost" is not in the node table`},
		{"twice", func(m *Map) { m.Partitions[0].Holders = []string{"node-0", "node-0"} }, "lists \"node-0\" twice"},
		{"pending holder", func(m *Map) { m.Partitions[0].Pending = []Pending{{Node: "node-0"}} }, "already a holder"},
		{"pending unknown", func(m *Map) { m.Partitions[0].Pending = []Pending{{Node: "ghost"}} }, "unknown"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := base()
			tt.edit(m)
			err := m.Validate(4)
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want %q", err, tt.want)
			}
		})
	}
}

func TestConfigDiffers(t *testing.T) {
	a := Config{ClusterID: "x", PartitionCount: 64, ReplicationFactor: 3, Hash: HashConfig{Algorithm: HashMD5}}
	b := a
	b.ClusterID = "y"
	if s, _, _ := a.Differs(b); s != "" {
		t.Fatalf("cluster IDs are not settings, got %q", s)
	}
	b.ReplicationFactor = 2
	if s, ours, theirs := a.Differs(b); s != "ReplicationFactor" || ours != 3 || theirs != 2 {
		t.Fatalf("got %q %v %v", s, ours, theirs)
	}
}

// The fast decoder and encoding/json agree on every shape, and the fast one declines what it
// does not handle rather than misreading it.
func TestEntriesDecode(t *testing.T) {
	tests := []string{
		`[]`,
		`[{"holders":["a","b"],"primary_epoch":3}]`,
		`[{"holders":["a"],"primary_epoch":1},{"holders":["b","a","c"],"primary_epoch":12}]`,
		`[{"holders":["a","b"],"primary_epoch":3,"pending":[{"node":"c","since":4,"started":"2026-01-01T00:00:00Z","attempt":1}],"target":["c","b"]}]`,
		`[{"holders":["a\"b"],"primary_epoch":3}]`,
		`[ {"holders": ["a"], "primary_epoch": 3} ]`,
		`[{"primary_epoch":3,"holders":["a"]}]`,
		`[{"holders":["a","b"],"primary_epoch":3,"pending":[{"node":"c","since":4,"started":"2026-01-01T00:00:00.123456789Z","attempt":1},{"node":"d","since":5,"started":"2026-01-01T00:00:01+02:00","attempt":12}],"target":["c","d","a"]},{"holders":["b"],"primary_epoch":9}]`,
		`[{"holders":["a"],"primary_epoch":3,"target":["b"]}]`,
		`[{"holders":["a"],"primary_epoch":3,"target":[]}]`,
		`[{"holders":[],"primary_epoch":3}]`,
	}
	for _, in := range tests {
		var fast Entries
		if err := json.Unmarshal([]byte(in), &fast); err != nil {
			t.Fatalf("%s: %v", in, err)
		}
		var plain []Entry
		if err := json.Unmarshal([]byte(in), &plain); err != nil {
			t.Fatalf("%s: %v", in, err)
		}
		if len(fast) != len(plain) {
			t.Fatalf("%s: %d entries, want %d", in, len(fast), len(plain))
		}
		for i := range plain {
			if !fast[i].Equal(&plain[i]) {
				t.Fatalf("%s: entry %d = %+v, want %+v", in, i, fast[i], plain[i])
			}
		}
	}
	for _, bad := range []string{`[{"holders":["a"],"primary_epoch":x}]`, `[{"holders":["a"]`, `{}`,
		`[{"holders":["a"],"primary_epoch":3,"pending":[{"node":"c","since":4,"started":"not a time","attempt":1}]}]`} {
		var es Entries
		if err := json.Unmarshal([]byte(bad), &es); err == nil {
			t.Fatalf("%s decoded", bad)
		}
	}
}

// Maps as the leader writes them, copies in flight included, take the fast path, and decode to
// exactly what encoding/json gives (time values included: the leader compares entries with ==).
func TestEntriesFastPathCoversWrittenMaps(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 678000000, time.UTC)
	es := Entries{
		{Holders: []string{"a", "b", "c"}, PrimaryEpoch: 7},
		{Holders: []string{"b", "c"}, PrimaryEpoch: 9, Target: []string{"d", "b", "c"},
			Pending: []Pending{{Node: "d", Since: 9, Started: at, Attempt: 1}}},
		{Holders: []string{"c", "a", "b"}, PrimaryEpoch: 3, Target: []string{"d", "e", "c"},
			Pending: []Pending{{Node: "d", Since: 8, Started: at.Add(-time.Minute), Attempt: 2}, {Node: "e", Since: 9, Started: at, Attempt: 1}}},
	}
	b, err := json.Marshal(es)
	if err != nil {
		t.Fatal(err)
	}
	fast, ok := decodeEntries(b)
	if !ok {
		t.Fatalf("the fast path declined %s", b)
	}
	var plain []Entry
	if err := json.Unmarshal(b, &plain); err != nil {
		t.Fatal(err)
	}
	if len(fast) != len(plain) {
		t.Fatalf("%d entries, want %d", len(fast), len(plain))
	}
	names := 0
	for i := range plain {
		if !fast[i].Equal(&plain[i]) {
			t.Fatalf("entry %d = %+v, want %+v", i, fast[i], plain[i])
		}
		names += len(plain[i].Holders) + len(plain[i].Target)
	}
	// The decoder sizes its one array of names exactly.
	if got := nameCount(b); got != names {
		t.Fatalf("nameCount = %d, want %d", got, names)
	}
}

// BenchmarkEntriesDecode decodes a chunk of 4096 partitions, half of them moving, as
// a reader does (DecodeEntries) and with encoding/json, in the same run.
func BenchmarkEntriesDecode(b *testing.B) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	es := make(Entries, 4096)
	for i := range es {
		es[i] = Entry{Holders: []string{"node-1", "node-2", "node-3"}, PrimaryEpoch: uint64(i)}
		if i%2 == 0 {
			es[i].Target = []string{"node-4", "node-2", "node-3"}
			es[i].Pending = []Pending{{Node: "node-4", Since: 40, Started: at, Attempt: 1}}
		}
	}
	raw, err := json.Marshal(es)
	if err != nil {
		b.Fatal(err)
	}
	var fast, plain time.Duration
	for b.Loop() {
		start := time.Now()
		if _, err := DecodeEntries(raw); err != nil {
			b.Fatal(err)
		}
		fast += time.Since(start)
		start = time.Now()
		var want []Entry
		if err := json.Unmarshal(raw, &want); err != nil {
			b.Fatal(err)
		}
		plain += time.Since(start)
	}
	b.ReportMetric(float64(fast.Microseconds())/float64(b.N), "fast-us/op")
	b.ReportMetric(float64(plain.Microseconds())/float64(b.N), "encoding-json-us/op")
	b.ReportMetric(float64(plain)/float64(fast), "speedup")
}

// A change is checked where it changed; when a node leaves the table, everywhere.
func TestValidateChange(t *testing.T) {
	prev := bigMap(64, 5)
	next := *prev
	next.Epoch++
	next.Partitions = slices.Clone(prev.Partitions)
	next.Partitions[3] = Entry{Holders: []string{"node-9"}, PrimaryEpoch: 8}
	if err := next.ValidateChange(64, prev, []int{3}); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("a changed partition naming an unknown node: %v", err)
	}
	next.Partitions[3] = Entry{Holders: []string{"node-1"}, PrimaryEpoch: 8}
	if err := next.ValidateChange(64, prev, []int{3}); err != nil {
		t.Fatal(err)
	}
	next.Nodes = maps.Clone(prev.Nodes)
	delete(next.Nodes, "node-4")
	if err := next.ValidateChange(64, prev, []int{3}); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("unchanged partitions naming a node that left: %v", err)
	}
	if err := next.ValidateChange(63, prev, []int{3}); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("a partition count that differs: %v", err)
	}
}
