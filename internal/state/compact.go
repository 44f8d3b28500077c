package state

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"time"
)

// The compact form of entries, in which the chunks and delta pieces of a large map are stored.
// A value names the nodes it uses once, in "names", and its entries refer to them by position;
// the start time of the copies asked at one epoch is written once, in "started":
//
//	{"names":["node-1","node-2","node-3","node-4"],"started":{"46":1764979200123},
//	 "entries":[[[0,1,2],45],[[1,2],45,[[3,46]],[1,3,2]]]}
//
// An entry is [holders, primary_epoch] or, while it moves, [holders, primary_epoch, pending,
// target], where target is left out when it is the holders but the last len(pending), followed
// by the pending nodes (a copy replacing the holder that goes: the common move). A pending copy
// is [node] when asked at the value's epoch (the delta's, or the checkpoint's), [node, since]
// otherwise, with [node, since, attempt] after a timeout and [node, since, attempt, started]
// (Unix milliseconds) when its start time is not the one of its epoch. Settled nodes cost a few bytes each instead of their IDs, and a copy in flight no
// longer carries a time as text: a map of 65536 partitions is about a quarter of its JSON.
// The table is local to each value, so a value is read on its own, and names absent from the
// node table (crashed nodes kept in targets) need nothing special.

// compactWriter numbers the names and start times of the entries of one value.
type compactWriter struct {
	epoch   uint64
	index   map[string]int
	names   []string
	started map[uint64]int64
}

func newCompactWriter(epoch uint64) *compactWriter {
	return &compactWriter{epoch: epoch, index: map[string]int{}, started: map[uint64]int64{}}
}

// add registers what e refers to. Every entry of a value is added before any is written, so
// that the tables are complete.
func (w *compactWriter) add(e *Entry) {
	for _, h := range e.Holders {
		w.name(h)
	}
	for _, p := range e.Pending {
		w.name(p.Node)
		if _, ok := w.started[p.Since]; !ok {
			w.started[p.Since] = p.Started.UnixMilli()
		}
	}
	for _, t := range e.Target {
		w.name(t)
	}
}

func (w *compactWriter) name(n string) {
	if _, ok := w.index[n]; !ok {
		w.index[n] = len(w.names)
		w.names = append(w.names, n)
	}
}

// appendTables appends `"names":[...]` and, when a copy is in flight, `,"started":{...}`.
func (w *compactWriter) appendTables(b []byte) ([]byte, error) {
	names, err := json.Marshal(w.names)
	if err != nil {
		return nil, err
	}
	if w.names == nil {
		names = []byte("[]")
	}
	b = append(b, `"names":`...)
	b = append(b, names...)
	if len(w.started) > 0 {
		b = append(b, `,"started":{`...)
		for i, since := range slices.Sorted(maps.Keys(w.started)) {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, '"')
			b = strconv.AppendUint(b, since, 10)
			b = append(b, `":`...)
			b = strconv.AppendInt(b, w.started[since], 10)
		}
		b = append(b, '}')
	}
	return b, nil
}

// appendEntry appends e in the compact form; e must have been added.
func (w *compactWriter) appendEntry(b []byte, e *Entry) []byte {
	b = append(b, '[')
	b = w.appendList(b, e.Holders)
	b = append(b, ',')
	b = strconv.AppendUint(b, e.PrimaryEpoch, 10)
	if len(e.Pending) > 0 || e.Target != nil {
		b = append(b, ",["...)
		for j, p := range e.Pending {
			if j > 0 {
				b = append(b, ',')
			}
			b = append(b, '[')
			b = strconv.AppendInt(b, int64(w.index[p.Node]), 10)
			ms := p.Started.UnixMilli()
			explicit := ms != w.started[p.Since]
			if p.Since == w.epoch && p.Attempt == 1 && !explicit {
				b = append(b, ']')
				continue
			}
			b = append(b, ',')
			b = strconv.AppendUint(b, p.Since, 10)
			if p.Attempt != 1 || explicit {
				b = append(b, ',')
				b = strconv.AppendInt(b, int64(p.Attempt), 10)
			}
			if explicit {
				b = append(b, ',')
				b = strconv.AppendInt(b, ms, 10)
			}
			b = append(b, ']')
		}
		b = append(b, ']')
		// Left out only when the reader implies it: without pending copies, or with fewer holders
		// than copies, it implies none and refuses the entry, whatever its target.
		if t := impliedTarget(e.Holders, e.Pending); t == nil || !slices.Equal(t, e.Target) {
			b = append(b, ',')
			b = w.appendList(b, e.Target)
		}
	}
	return append(b, ']')
}

// impliedTarget is the target an entry without one moves to: its holders but the last
// len(pending), then the pending nodes; nil when there are not that many holders.
func impliedTarget(holders []string, pending []Pending) []string {
	keep := len(holders) - len(pending)
	if keep < 0 || len(pending) == 0 {
		return nil
	}
	t := make([]string, 0, len(holders))
	t = append(t, holders[:keep]...)
	for _, p := range pending {
		t = append(t, p.Node)
	}
	return t
}

func (w *compactWriter) appendList(b []byte, ids []string) []byte {
	b = append(b, '[')
	for i, id := range ids {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendInt(b, int64(w.index[id]), 10)
	}
	return append(b, ']')
}

// compactReader parses the entries of one value, resolving numbers through its tables. It
// accepts whitespace between tokens (a value re-indented by hand reads the same) and nothing
// else: a number outside the names, a copy whose epoch has no start time, or a missing
// bracket is an error.
type compactReader struct {
	epoch   uint64
	b       []byte
	names   []string
	started map[uint64]int64
	// backing holds every holder and target list: one allocation for all of them.
	backing []string
}

// decodeCompact parses raw, a JSON array of compact entries.
func decodeCompact(raw []byte, epoch uint64, names []string, started map[uint64]int64) (Entries, error) {
	r := &compactReader{epoch: epoch, b: raw, names: names, started: started}
	r.ws()
	if !r.eat('[') {
		return nil, fmt.Errorf("entries: not an array")
	}
	// Two list-opening brackets per entry at least; sized once, grown rarely.
	opens := 0
	for _, c := range raw {
		if c == '[' {
			opens++
		}
	}
	r.backing = make([]string, 0, 3*opens/2)
	var out Entries
	if r.eat(']') {
		return out, r.end()
	}
	out = make(Entries, 0, opens/2)
	for {
		e, err := r.entry()
		if err != nil {
			return nil, fmt.Errorf("entry %d: %w", len(out), err)
		}
		out = append(out, e)
		if r.eat(']') {
			return out, r.end()
		}
		if !r.eat(',') {
			return nil, fmt.Errorf("entry %d: %w", len(out), r.unexpected())
		}
	}
}

func (r *compactReader) end() error {
	r.ws()
	if len(r.b) > 0 {
		return fmt.Errorf("entries: %d bytes after the array", len(r.b))
	}
	return nil
}

func (r *compactReader) entry() (e Entry, err error) {
	if !r.eat('[') {
		return e, r.unexpected()
	}
	if e.Holders, err = r.list(); err != nil {
		return e, fmt.Errorf("holders: %w", err)
	}
	if !r.eat(',') {
		return e, r.unexpected()
	}
	if e.PrimaryEpoch, err = r.uint(); err != nil {
		return e, fmt.Errorf("primary_epoch: %w", err)
	}
	if r.eat(']') {
		return e, nil
	}
	if !r.eat(',') || !r.eat('[') {
		return e, r.unexpected()
	}
	for !r.eat(']') {
		if len(e.Pending) > 0 && !r.eat(',') {
			return e, r.unexpected()
		}
		p, err := r.pending()
		if err != nil {
			return e, fmt.Errorf("pending: %w", err)
		}
		e.Pending = append(e.Pending, p)
	}
	if r.eat(']') {
		if e.Target = impliedTarget(e.Holders, e.Pending); e.Target == nil {
			return e, fmt.Errorf("no target, and fewer holders than pending copies")
		}
		return e, nil
	}
	if !r.eat(',') {
		return e, r.unexpected()
	}
	if e.Target, err = r.list(); err != nil {
		return e, fmt.Errorf("target: %w", err)
	}
	if !r.eat(']') {
		return e, r.unexpected()
	}
	return e, nil
}

func (r *compactReader) pending() (p Pending, err error) {
	if !r.eat('[') {
		return p, r.unexpected()
	}
	if p.Node, err = r.name(); err != nil {
		return p, err
	}
	p.Since, p.Attempt = r.epoch, 1
	if r.eat(',') {
		if p.Since, err = r.uint(); err != nil {
			return p, err
		}
	}
	ms, ok := r.started[p.Since]
	if r.eat(',') {
		a, err := r.uint()
		if err != nil || a < 1 || a > 1<<31 {
			return p, fmt.Errorf("attempt out of range")
		}
		p.Attempt = int(a)
		if r.eat(',') {
			if ms, err = r.int(); err != nil {
				return p, err
			}
			ok = true
		}
	}
	if !ok {
		return p, fmt.Errorf("no start time for epoch %d", p.Since)
	}
	p.Started = time.UnixMilli(ms).UTC()
	if !r.eat(']') {
		return p, r.unexpected()
	}
	return p, nil
}

// list parses an array of name numbers into one slice of the backing array; nil when empty.
func (r *compactReader) list() ([]string, error) {
	if !r.eat('[') {
		return nil, r.unexpected()
	}
	first := len(r.backing)
	for !r.eat(']') {
		if len(r.backing) > first && !r.eat(',') {
			return nil, r.unexpected()
		}
		n, err := r.name()
		if err != nil {
			return nil, err
		}
		r.backing = append(r.backing, n)
	}
	if len(r.backing) == first {
		return nil, nil
	}
	// Full slice expression: an append to one list must never write into the next.
	return r.backing[first:len(r.backing):len(r.backing)], nil
}

func (r *compactReader) name() (string, error) {
	i, err := r.uint()
	if err != nil {
		return "", err
	}
	if i >= uint64(len(r.names)) {
		return "", fmt.Errorf("node number %d, but %d names", i, len(r.names))
	}
	return r.names[i], nil
}

func (r *compactReader) uint() (uint64, error) {
	r.ws()
	n := 0
	for n < len(r.b) && r.b[n] >= '0' && r.b[n] <= '9' {
		n++
	}
	v, err := strconv.ParseUint(string(r.b[:n]), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("want a number: %w", r.unexpected())
	}
	r.b = r.b[n:]
	return v, nil
}

func (r *compactReader) int() (int64, error) {
	r.ws()
	n := 0
	if n < len(r.b) && r.b[n] == '-' {
		n++
	}
	for n < len(r.b) && r.b[n] >= '0' && r.b[n] <= '9' {
		n++
	}
	v, err := strconv.ParseInt(string(r.b[:n]), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("want a number: %w", r.unexpected())
	}
	r.b = r.b[n:]
	return v, nil
}

func (r *compactReader) ws() {
	for len(r.b) > 0 && (r.b[0] == ' ' || r.b[0] == '\n' || r.b[0] == '\t' || r.b[0] == '\r') {
		r.b = r.b[1:]
	}
}

func (r *compactReader) eat(c byte) bool {
	r.ws()
	if len(r.b) > 0 && r.b[0] == c {
		r.b = r.b[1:]
		return true
	}
	return false
}

func (r *compactReader) unexpected() error {
	if len(r.b) == 0 {
		return fmt.Errorf("unexpected end")
	}
	near := r.b[:min(len(r.b), 16)]
	return fmt.Errorf("unexpected %q", near)
}

// settle is the entry that follows e once every copy e waits for has arrived, at epoch: its
// target serves, and the primary epoch moves on only if the primary changes. A delta lists the
// partitions that settled this way instead of writing their entries. The holders share e's
// target: entries are never modified in place.
func settle(e *Entry, epoch uint64) (Entry, bool) {
	if len(e.Target) == 0 || len(e.Holders) == 0 {
		return Entry{}, false
	}
	out := Entry{Holders: e.Target, PrimaryEpoch: e.PrimaryEpoch}
	if e.Target[0] != e.Holders[0] {
		out.PrimaryEpoch = epoch
	}
	return out, true
}
