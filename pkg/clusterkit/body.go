package clusterkit

import (
	"bytes"
	"compress/gzip"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// gzipAbove is the size from which a cached response body is kept gzip-compressed. GET /cluster
// is 8.5 MB of JSON at 65536 partitions and a node keeps one per map it has served, plus a few
// GET /cluster/map bodies; compressed, the same body is about a tenth of that, in memory and on
// the wire.
const gzipAbove = 64 << 10

// body is a cached JSON response body: as built when small, gzip-compressed when large.
type body struct {
	data []byte
	// gzipped says data is compressed; size is then the length of the JSON.
	gzipped bool
	size    int
}

// newBody caches b, compressing it when it is large.
func newBody(b []byte) *body {
	if len(b) <= gzipAbove {
		return &body{data: b, size: len(b)}
	}
	var buf bytes.Buffer
	buf.Grow(len(b) / 8)
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
	if _, err := zw.Write(b); err != nil {
		return &body{data: b, size: len(b)}
	}
	if err := zw.Close(); err != nil {
		return &body{data: b, size: len(b)}
	}
	return &body{data: bytes.Clone(buf.Bytes()), gzipped: true, size: len(b)}
}

// write answers r with the body and status: compressed to a client that accepts gzip (as Go's
// http.Client does by default), as JSON to any other. A HEAD request gets the headers alone.
func (b *body) write(w http.ResponseWriter, r *http.Request, status int) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Add("Vary", "Accept-Encoding")
	if b.gzipped && acceptsGzip(r.Header.Get("Accept-Encoding")) {
		h.Set("Content-Encoding", "gzip")
		h.Set("Content-Length", strconv.Itoa(len(b.data)))
		w.WriteHeader(status)
		if r.Method != http.MethodHead {
			w.Write(b.data)
		}
		return
	}
	h.Set("Content-Length", strconv.Itoa(b.size))
	w.WriteHeader(status)
	if r.Method == http.MethodHead {
		return
	}
	if !b.gzipped {
		w.Write(b.data)
		return
	}
	zr, err := gzip.NewReader(bytes.NewReader(b.data))
	if err != nil {
		return // cannot happen: data was compressed by newBody
	}
	io.Copy(w, zr)
}

// acceptsGzip reports whether an Accept-Encoding header value accepts gzip (RFC 9110 12.5.3):
// gzip listed without q=0, or else "*" listed without q=0.
func acceptsGzip(header string) bool {
	gzipQ, starQ := -1.0, -1.0
	for item := range strings.SplitSeq(header, ",") {
		name, params, _ := strings.Cut(item, ";")
		q := 1.0
		if v, ok := strings.CutPrefix(strings.ReplaceAll(strings.ToLower(params), " ", ""), "q="); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				continue
			}
			q = f
		}
		switch strings.ToLower(strings.TrimSpace(name)) {
		case "gzip", "x-gzip":
			gzipQ = q
		case "*":
			starQ = q
		}
	}
	if gzipQ >= 0 {
		return gzipQ > 0
	}
	return starQ > 0
}
