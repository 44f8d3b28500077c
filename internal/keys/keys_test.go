package keys

import "testing"

// The per-node keys give back their node ID, and nothing else does.
func TestPerNodeKeys(t *testing.T) {
	s := New("c1")
	for _, tt := range []struct {
		name  string
		parse func(string) (string, bool)
		key   string
		id    string
	}{
		{"node", s.NodeID, s.Node("n-1"), "n-1"},
		{"handoffs", s.HandoffNode, s.Handoff("n-1"), "n-1"},
		{"held", s.HeldNode, s.Held("n-1"), "n-1"},
		{"held, other cluster", s.HeldNode, New("c2").Held("n-1"), ""},
		{"held, nested", s.HeldNode, s.HeldPrefix() + "a/b", ""},
		{"held, prefix alone", s.HeldNode, s.HeldPrefix(), ""},
		{"node key is not held", s.HeldNode, s.Node("n-1"), ""},
	} {
		id, ok := tt.parse(tt.key)
		if id != tt.id || ok != (tt.id != "") {
			t.Errorf("%s: %q gives %q, %v; want %q", tt.name, tt.key, id, ok, tt.id)
		}
	}
}

// Node IDs and cluster names share one character set, whatever their source.
func TestNames(t *testing.T) {
	for _, ok := range []string{"node-1", "a", "N_2.x", "10.0.0.7", "web-0.web.default"} {
		if err := ValidNodeID(ok); err != nil {
			t.Errorf("ValidNodeID(%q): %v", ok, err)
		}
		if err := ValidClusterName(ok); err != nil {
			t.Errorf("ValidClusterName(%q): %v", ok, err)
		}
	}
	long := make([]byte, MaxNameLen+1)
	for i := range long {
		long[i] = 'a'
	}
	for _, bad := range []string{"", "a=b", "..", ".", ".hidden", "-x", "a/b", "a b", "a,b", "né", "a:1", string(long)} {
		if ValidNodeID(bad) == nil {
			t.Errorf("ValidNodeID(%q) accepted", bad)
		}
		if ValidClusterName(bad) == nil {
			t.Errorf("ValidClusterName(%q) accepted", bad)
		}
	}
}

// The range of an epoch's keys holds its chunks, pieces and node table, and no key of another
// epoch.
func TestChunksRange(t *testing.T) {
	s := New("c1")
	const e = 41
	start, end := s.ChunksPrefix(e), s.ChunksEnd(e)
	for _, k := range []string{s.ChunksPrefix(e), s.Chunk(e, 0), s.Chunk(e, 999999), s.Delta(e, 0), s.Delta(e, 999999), s.NodeTable(e)} {
		if k < start || k >= end {
			t.Errorf("%s is outside [%s, %s)", k, start, end)
		}
	}
	for _, k := range []string{s.Partitions(), s.NodeTable(e - 1), s.Delta(e-1, 999999), s.ChunksPrefix(e + 1), s.Chunk(e+1, 0)} {
		if k >= start && k < end {
			t.Errorf("%s is inside [%s, %s)", k, start, end)
		}
	}
}
