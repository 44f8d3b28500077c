package state

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
)

// Acks is a node's acknowledgement record, under handoffs/<node-id> and attached to the node's
// lease: the copies it has finished, grouped by the epoch of the map that asked for them (the
// Since of the pending entry each answers). One record per node, rewritten as copies finish,
// keeps the acknowledgements of a join with thousands of copies to a few writes.
type Acks struct {
	Node   string     `json:"node"`
	Copies []AckGroup `json:"copies"`
}

// AckGroup lists the partitions copied for the requests of one epoch, as ranges: "0-5,9,12-13".
type AckGroup struct {
	Since      uint64 `json:"since"`
	Partitions string `json:"partitions"`
}

// EncodeAcks encodes node's record of the copies in acked (partition -> the epoch of the
// request).
func EncodeAcks(node string, acked map[int]uint64) ([]byte, error) {
	bySince := map[uint64][]int{}
	for p, since := range acked {
		bySince[since] = append(bySince[since], p)
	}
	rec := Acks{Node: node, Copies: []AckGroup{}}
	for _, since := range slices.Sorted(maps.Keys(bySince)) {
		ps := bySince[since]
		slices.Sort(ps)
		rec.Copies = append(rec.Copies, AckGroup{Since: since, Partitions: FormatRanges(ps)})
	}
	return json.Marshal(&rec)
}

// DecodeAcks decodes an acknowledgement record into partition -> the epoch of the request.
// partitionCount bounds the partitions it may name; a partition named twice is refused, so that
// the work a record costs is bounded by partitionCount, not by its length.
func DecodeAcks(b []byte, partitionCount int) (node string, acked map[int]uint64, err error) {
	var rec Acks
	if err := json.Unmarshal(b, &rec); err != nil {
		return "", nil, fmt.Errorf("%w: acknowledgement record: %v", ErrCorrupt, err)
	}
	acked = map[int]uint64{}
	for _, g := range rec.Copies {
		ps, err := ParseRanges(g.Partitions, partitionCount)
		if err != nil {
			return "", nil, fmt.Errorf("%w: acknowledgement record of %q: %v", ErrCorrupt, rec.Node, err)
		}
		for _, p := range ps {
			if _, dup := acked[p]; dup {
				return "", nil, fmt.Errorf("%w: acknowledgement record of %q names partition %d twice", ErrCorrupt, rec.Node, p)
			}
			acked[p] = g.Since
		}
	}
	return rec.Node, acked, nil
}

// FormatRanges writes sorted, distinct partition numbers as ranges: [0 1 2 5] is "0-2,5".
func FormatRanges(ps []int) string {
	var b strings.Builder
	for i := 0; i < len(ps); {
		j := i
		for j+1 < len(ps) && ps[j+1] == ps[j]+1 {
			j++
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(ps[i]))
		if j > i {
			b.WriteByte('-')
			b.WriteString(strconv.Itoa(ps[j]))
		}
		i = j + 1
	}
	return b.String()
}

// ParseRanges reads what FormatRanges writes, refusing numbers outside [0, n), ranges that go
// backwards and ranges that do not start after the one before: it returns at most n partitions,
// however long s is.
func ParseRanges(s string, n int) ([]int, error) {
	var out []int
	if s == "" {
		return out, nil
	}
	for part := range strings.SplitSeq(s, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil {
			return nil, fmt.Errorf("partition range %q: %v", part, err)
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil {
				return nil, fmt.Errorf("partition range %q: %v", part, err)
			}
		}
		if a < 0 || b < a || b >= n {
			return nil, fmt.Errorf("partition range %q is not within [0, %d)", part, n)
		}
		if len(out) > 0 && a <= out[len(out)-1] {
			return nil, fmt.Errorf("partition range %q does not follow partition %d", part, out[len(out)-1])
		}
		for p := a; p <= b; p++ {
			out = append(out, p)
		}
	}
	return out, nil
}
