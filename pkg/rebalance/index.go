package rebalance

import "unsafe"

// idIndex maps node IDs to node numbers. Compute looks up every holder of the previous map, P·R
// lookups per call, which is most of its time on a large map. Two things make that cheap:
//   - an open-addressing table with a short hash, about twice as fast as a Go map here;
//   - a memo keyed by the address of the string's bytes. In a map that Compute returned, or that was
//     built from one list of IDs, every mention of a node shares the same bytes, so after the first
//     mention a lookup is a pointer comparison. The memo holds the pointer, so the bytes it points to
//     stay alive and cannot be reused for another string during the call. A map whose every entry
//     has its own bytes (freshly decoded, say) just misses the memo.
type idIndex struct {
	keys []string // "" marks a free cell: IDs are never empty
	vals []int32
	mask uint64

	memo      []memoEntry // open addressing on the address, at most half full
	memoShift uint        // the memo has 1<<(64-memoShift) cells
	memoUsed  int
}

type memoEntry struct {
	data *byte
	n    int
	v    int32
}

func newIDIndex(n int) *idIndex {
	size := 8
	for size < 4*n {
		size <<= 1
	}
	t := &idIndex{keys: make([]string, size), vals: make([]int32, size), mask: uint64(size - 1)}
	bits := uint(6)
	for 1<<bits < 4*n && bits < 16 {
		bits++
	}
	t.memo, t.memoShift = make([]memoEntry, 1<<bits), 64-bits
	return t
}

// lookup is get with the memo in front of it.
func (t *idIndex) lookup(id string) (int32, bool) {
	if id == "" {
		return -1, false
	}
	p := unsafe.StringData(id)
	mask := len(t.memo) - 1
	j := int((uint64(uintptr(unsafe.Pointer(p))) * 0x9e3779b97f4a7c15) >> t.memoShift)
	for ; t.memo[j].data != nil; j = (j + 1) & mask {
		if e := &t.memo[j]; e.data == p && e.n == len(id) {
			return e.v, true
		}
	}
	v, ok := t.get(id)
	if ok && 2*(t.memoUsed+1) <= len(t.memo) {
		t.memo[j] = memoEntry{data: p, n: len(id), v: v}
		t.memoUsed++
	}
	return v, ok
}

// idHash is FNV-1a with a final xor-shift, enough to spread short IDs over the table.
func idHash(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h ^ h>>29
}

func (t *idIndex) put(id string, v int32) {
	j := idHash(id) & t.mask
	for t.keys[j] != "" {
		j = (j + 1) & t.mask
	}
	t.keys[j], t.vals[j] = id, v
}

func (t *idIndex) get(id string) (int32, bool) {
	for j := idHash(id) & t.mask; ; j = (j + 1) & t.mask {
		switch t.keys[j] {
		case id:
			return t.vals[j], true
		case "":
			return -1, false
		}
	}
}
