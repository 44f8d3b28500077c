package state

import (
	"bytes"
	"encoding/json"
	"strconv"
)

// Entries is the partitions of a map. It decodes the form json.Marshal writes for partitions
// that are not moving ({"holders":[...],"primary_epoch":n}, no spaces, no escapes) without
// reflection, and anything else through encoding/json: every node decodes every published map,
// so this is on the path from a map write to the hooks.
type Entries []Entry

// UnmarshalJSON implements json.Unmarshaler.
func (es *Entries) UnmarshalJSON(b []byte) error {
	if out, ok := decodeEntries(b); ok {
		*es = out
		return nil
	}
	var plain []Entry
	if err := json.Unmarshal(b, &plain); err != nil {
		return err
	}
	*es = plain
	return nil
}

var (
	entryStart = []byte(`{"holders":[`)
	entryEpoch = []byte(`],"primary_epoch":`)
)

// decodeEntries parses the common form, and reports false for anything else.
func decodeEntries(b []byte) (Entries, bool) {
	if len(b) < 2 || b[0] != '[' {
		return nil, false
	}
	b = b[1:]
	names := map[string]string{} // node IDs repeat: keep one copy of each
	// One allocation for the entries and one for every holder list: each entry has a '{' and
	// each holder two '"' (the count is an upper bound when an entry is not in this form, which
	// then falls back anyway).
	out := make(Entries, 0, bytes.Count(b, []byte{'{'}))
	backing := make([]string, 0, bytes.Count(b, []byte{'"'})/2)
	if len(b) > 0 && b[0] == ']' {
		return out, len(b) == 1
	}
	for {
		if !bytes.HasPrefix(b, entryStart) {
			return nil, false
		}
		b = b[len(entryStart):]
		var e Entry
		first := len(backing)
		for len(b) > 0 && b[0] == '"' {
			end := bytes.IndexByte(b[1:], '"')
			if end < 0 {
				return nil, false
			}
			raw := b[1 : 1+end]
			if bytes.IndexByte(raw, '\\') >= 0 {
				return nil, false
			}
			name, ok := names[string(raw)]
			if !ok {
				name = string(raw)
				names[name] = name
			}
			backing = append(backing, name)
			b = b[2+end:]
			if len(b) > 0 && b[0] == ',' {
				b = b[1:]
			}
		}
		if len(backing) > first {
			// Full slice expression: an append to one entry's holders must never write into
			// the next entry's.
			e.Holders = backing[first:len(backing):len(backing)]
		}
		if !bytes.HasPrefix(b, entryEpoch) {
			return nil, false
		}
		b = b[len(entryEpoch):]
		n := 0
		for n < len(b) && b[n] >= '0' && b[n] <= '9' {
			n++
		}
		epoch, err := strconv.ParseUint(string(b[:n]), 10, 64)
		if err != nil || n >= len(b) || b[n] != '}' {
			return nil, false
		}
		e.PrimaryEpoch = epoch
		out = append(out, e)
		b = b[n+1:]
		switch {
		case len(b) == 1 && b[0] == ']':
			return out, true
		case len(b) > 0 && b[0] == ',':
			b = b[1:]
		default:
			return nil, false
		}
	}
}
