package state

import (
	"encoding/json"
	"errors"
	"fmt"
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

// A map that fits stays inline; a larger one is cut into chunks no larger than the limit, and
// reassembles to the same map.
func TestEncodeChunks(t *testing.T) {
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
			enc, err := Encode(m, tt.maxValue)
			if err != nil {
				t.Fatal(err)
			}
			if (len(enc.Chunks) > 0) != tt.chunked {
				t.Fatalf("%d chunks, chunked=%v wanted", len(enc.Chunks), tt.chunked)
			}
			for i, c := range enc.Chunks {
				if len(c) > tt.maxValue {
					t.Fatalf("chunk %d is %d bytes, over %d", i, len(c), tt.maxValue)
				}
			}
			if len(enc.Head) > tt.maxValue {
				t.Fatalf("head is %d bytes", len(enc.Head))
			}
			got, err := DecodeHead(enc.Head)
			if err != nil {
				t.Fatal(err)
			}
			if err := AttachChunks(got, enc.Chunks); err != nil {
				t.Fatal(err)
			}
			if err := got.Validate(tt.partitions); err != nil {
				t.Fatal(err)
			}
			if !got.SamePlacement(m) || got.Epoch != m.Epoch {
				t.Fatal("decoded map differs")
			}
		})
	}
}

func TestAttachChunksRefusesMissingChunk(t *testing.T) {
	enc, err := Encode(bigMap(50, 5), 600)
	if err != nil {
		t.Fatal(err)
	}
	m, _ := DecodeHead(enc.Head)
	if err := AttachChunks(m, enc.Chunks[1:]); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("half a map accepted: %v", err)
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
			if !fast[i].equal(&plain[i]) {
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
	for i := range plain {
		if !fast[i].equal(&plain[i]) {
			t.Fatalf("entry %d = %+v, want %+v", i, fast[i], plain[i])
		}
	}
}

// BenchmarkEntriesDecode decodes a chunk of 4096 partitions, half of them moving, as
// AttachChunks does (DecodeEntries) and with encoding/json, in the same run.
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
