package state

import (
	"bytes"
	"encoding/json"
	"strconv"
	"unicode/utf8"
)

// Entries is the partitions of a map. It decodes the form json.Marshal writes for them
// ({"holders":[...],"primary_epoch":n} with, while a partition moves, "pending":[{"node",
// "since","started","attempt"}...] and "target":[...]; no spaces, no escapes) without reflection,
// and anything else through encoding/json: every node decodes every published map, so this is on
// the path from a map write to the hooks, and maps with copies in flight are the large ones.
type Entries []Entry

// DecodeEntries decodes a JSON array of entries (a chunk of a map): the common form directly,
// without the validating pass json.Unmarshal makes over the whole input first, and anything
// else through encoding/json.
func DecodeEntries(b []byte) (Entries, error) {
	if out, ok := decodeEntries(b); ok {
		return out, nil
	}
	var plain []Entry
	if err := json.Unmarshal(b, &plain); err != nil {
		return nil, err
	}
	return plain, nil
}

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
	entryStart    = []byte(`{"holders":[`)
	entryEpoch    = []byte(`,"primary_epoch":`)
	entryPending  = []byte(`,"pending":[`)
	entryTarget   = []byte(`,"target":[`)
	pendingNode   = []byte(`{"node":`)
	pendingSince  = []byte(`,"since":`)
	pendingStart  = []byte(`,"started":`)
	pendingAttmpt = []byte(`,"attempt":`)
)

// entryDecoder parses the common form; any method reports false on anything else.
type entryDecoder struct {
	b []byte
	// names keeps one copy of each node ID, which repeat across entries.
	names map[string]string
	// backing holds every holder and target list: one allocation for all of them.
	backing []string
}

// decodeEntries parses the common form, and reports false for anything else.
func decodeEntries(b []byte) (Entries, bool) {
	if len(b) < 2 || b[0] != '[' {
		return nil, false
	}
	d := &entryDecoder{b: b[1:], names: map[string]string{}}
	// Exact sizes for the common form (when an entry is not in this form the decoder falls
	// back anyway).
	out := make(Entries, 0, bytes.Count(b, entryStart[1:11]))
	d.backing = make([]string, 0, nameCount(b))
	if d.eat("]") {
		return out, len(d.b) == 0
	}
	for {
		e, ok := d.entry()
		if !ok {
			return nil, false
		}
		out = append(out, e)
		switch {
		case len(d.b) == 1 && d.b[0] == ']':
			return out, true
		case d.eat(","):
		default:
			return nil, false
		}
	}
}

// nameCount is the number of holder and target names in b, an array of entries in the common
// form: every quoted string but the keys and the pending copies' node and time.
func nameCount(b []byte) int {
	entries := bytes.Count(b, entryStart[1:11])
	pendings := bytes.Count(b, pendingNode)
	others := 2*entries + 6*pendings + bytes.Count(b, entryPending[1:]) + bytes.Count(b, entryTarget[1:])
	return max(0, bytes.Count(b, []byte{'"'})/2-others)
}

func (d *entryDecoder) entry() (e Entry, ok bool) {
	if !d.eatBytes(entryStart) {
		return e, false
	}
	if e.Holders, ok = d.list(); !ok {
		return e, false
	}
	if !d.eatBytes(entryEpoch) {
		return e, false
	}
	if e.PrimaryEpoch, ok = d.uint(); !ok {
		return e, false
	}
	if d.eatBytes(entryPending) {
		for {
			p, ok := d.pending()
			if !ok {
				return e, false
			}
			e.Pending = append(e.Pending, p)
			if d.eat("]") {
				break
			}
			if !d.eat(",") {
				return e, false
			}
		}
	}
	if d.eatBytes(entryTarget) {
		if e.Target, ok = d.list(); !ok {
			return e, false
		}
		// encoding/json decodes an empty list as an empty, non-nil slice.
		if e.Target == nil {
			e.Target = []string{}
		}
	}
	return e, d.eat("}")
}

// list parses `"a","b"]` (the opening bracket already eaten) into one slice of the backing
// array; nil for an empty list.
func (d *entryDecoder) list() ([]string, bool) {
	first := len(d.backing)
	for len(d.b) > 0 && d.b[0] == '"' {
		name, ok := d.str()
		if !ok {
			return nil, false
		}
		d.backing = append(d.backing, name)
		if !d.eat(",") {
			break
		}
	}
	if !d.eat("]") {
		return nil, false
	}
	if len(d.backing) == first {
		return nil, true
	}
	// Full slice expression: an append to one list must never write into the next.
	return d.backing[first:len(d.backing):len(d.backing)], true
}

func (d *entryDecoder) pending() (p Pending, ok bool) {
	if !d.eatBytes(pendingNode) {
		return p, false
	}
	if p.Node, ok = d.str(); !ok {
		return p, false
	}
	if !d.eatBytes(pendingSince) {
		return p, false
	}
	if p.Since, ok = d.uint(); !ok {
		return p, false
	}
	if !d.eatBytes(pendingStart) || len(d.b) == 0 || d.b[0] != '"' {
		return p, false
	}
	end := bytes.IndexByte(d.b[1:], '"')
	if end < 0 {
		return p, false
	}
	// time.Time's own decoder, so that the value is the one encoding/json would produce.
	if err := p.Started.UnmarshalJSON(d.b[:end+2]); err != nil {
		return p, false
	}
	d.b = d.b[end+2:]
	if !d.eatBytes(pendingAttmpt) {
		return p, false
	}
	n, ok := d.uint()
	if !ok || n > uint64(^uint(0)>>1) {
		return p, false
	}
	p.Attempt = int(n)
	return p, d.eat("}")
}

// str parses a string without escapes, interning it.
func (d *entryDecoder) str() (string, bool) {
	if len(d.b) == 0 || d.b[0] != '"' {
		return "", false
	}
	end := bytes.IndexByte(d.b[1:], '"')
	if end < 0 {
		return "", false
	}
	raw := d.b[1 : 1+end]
	if bytes.IndexByte(raw, '\\') >= 0 {
		return "", false
	}
	name, ok := d.names[string(raw)]
	if !ok {
		if !plainString(raw) {
			return "", false
		}
		name = string(raw)
		d.names[name] = name
	}
	d.b = d.b[2+end:]
	return name, true
}

// plainString reports whether b, the inside of a string without escapes, reads the same as a
// JSON string: encoding/json refuses control characters and replaces invalid UTF-8.
func plainString(b []byte) bool {
	for _, c := range b {
		if c < ' ' {
			return false
		}
		if c >= utf8.RuneSelf {
			return utf8.Valid(b)
		}
	}
	return true
}

func (d *entryDecoder) uint() (uint64, bool) {
	n := 0
	for n < len(d.b) && d.b[n] >= '0' && d.b[n] <= '9' {
		n++
	}
	v, err := strconv.ParseUint(string(d.b[:n]), 10, 64)
	if err != nil {
		return 0, false
	}
	d.b = d.b[n:]
	return v, true
}

func (d *entryDecoder) eat(s string) bool {
	if len(d.b) >= len(s) && string(d.b[:len(s)]) == s {
		d.b = d.b[len(s):]
		return true
	}
	return false
}

func (d *entryDecoder) eatBytes(p []byte) bool {
	if bytes.HasPrefix(d.b, p) {
		d.b = d.b[len(p):]
		return true
	}
	return false
}
