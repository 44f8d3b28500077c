package clusterkit

import (
	"bytes"
	"compress/gzip"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
)

// plain returns the JSON of b, decompressing it when it is kept compressed.
func (b *body) plain(t *testing.T) []byte {
	t.Helper()
	if !b.gzipped {
		return b.data
	}
	zr, err := gzip.NewReader(bytes.NewReader(b.data))
	if err != nil {
		t.Fatal(err)
	}
	out, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// A large body is kept compressed, sent compressed to a client that accepts gzip and as JSON to
// any other, with a Content-Length that matches what is sent; a small one is kept as it is.
func TestCachedBodyCompression(t *testing.T) {
	large := []byte(`{"partitions":[` + strings.Repeat(`{"id":"partition-1","primary_node":"node-1"},`, 4000) + `{}]}` + "\n")
	small := []byte(`{"epoch":7}` + "\n")
	if b := newBody(small); b.gzipped || !bytes.Equal(b.data, small) {
		t.Fatalf("small body: gzipped %v", b.gzipped)
	}
	b := newBody(large)
	if !b.gzipped || b.size != len(large) || len(b.data) >= len(large)/4 {
		t.Fatalf("large body: gzipped %v, %d bytes kept for %d", b.gzipped, len(b.data), len(large))
	}
	if !bytes.Equal(b.plain(t), large) {
		t.Fatal("large body does not decompress to itself")
	}

	for _, tt := range []struct {
		method, accept string
		gzipped        bool
	}{
		{"GET", "", false},
		{"GET", "gzip", true},
		{"GET", "br, gzip;q=0.5", true},
		{"GET", "gzip;q=0", false},
		{"GET", "*", true},
		{"GET", "gzip;q=0, *", false},
		{"GET", "identity", false},
		{"HEAD", "gzip", true},
		{"HEAD", "", false},
	} {
		r := httptest.NewRequest(tt.method, "/cluster", nil)
		if tt.accept != "" {
			r.Header.Set("Accept-Encoding", tt.accept)
		}
		w := httptest.NewRecorder()
		b.write(w, r, http.StatusOK)
		res := w.Result()
		got := w.Body.Bytes()
		if enc := res.Header.Get("Content-Encoding"); (enc == "gzip") != tt.gzipped {
			t.Errorf("%s Accept-Encoding %q: Content-Encoding %q", tt.method, tt.accept, enc)
			continue
		}
		want := large
		if tt.gzipped {
			want = b.data
		}
		if cl := res.Header.Get("Content-Length"); cl != strconv.Itoa(len(want)) {
			t.Errorf("%s Accept-Encoding %q: Content-Length %s, want %d", tt.method, tt.accept, cl, len(want))
		}
		if tt.method == "HEAD" {
			want = nil
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s Accept-Encoding %q: body of %d bytes, want %d", tt.method, tt.accept, len(got), len(want))
		}
		if res.Header.Get("Vary") != "Accept-Encoding" || res.Header.Get("Content-Type") != "application/json" {
			t.Errorf("%s Accept-Encoding %q: headers %v", tt.method, tt.accept, res.Header)
		}
	}
}
