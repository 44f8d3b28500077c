package dashboard

import (
	"io/fs"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

// The page's files are served with their types and the policy, /ui is sent to /ui/ with a
// relative Location (which keeps a mount prefix), and an unknown file is a 404 under the same
// policy.
func TestHandler(t *testing.T) {
	tests := []struct {
		path     string
		code     int
		typ      string
		location string
	}{
		{"/ui/", http.StatusOK, "text/html; charset=utf-8", ""},
		{"/ui/dashboard.js", http.StatusOK, "text/javascript; charset=utf-8", ""},
		{"/ui/dashboard.css", http.StatusOK, "text/css; charset=utf-8", ""},
		{"/ui/favicon.svg", http.StatusOK, "image/svg+xml", ""},
		{"/ui", http.StatusMovedPermanently, "", "ui/"},
		{"/ui/index.html", http.StatusMovedPermanently, "", "./"},
		{"/ui/missing.js", http.StatusNotFound, "text/plain; charset=utf-8", ""},
	}
	h := Handler()
	for _, tt := range tests {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, tt.path, nil))
		if w.Code != tt.code {
			t.Errorf("GET %s: status %d, want %d", tt.path, w.Code, tt.code)
		}
		if got := w.Header().Get("Content-Type"); tt.typ != "" && got != tt.typ {
			t.Errorf("GET %s: Content-Type %q, want %q", tt.path, got, tt.typ)
		}
		if got := w.Header().Get("Location"); got != tt.location {
			t.Errorf("GET %s: Location %q, want %q", tt.path, got, tt.location)
		}
		if got := w.Header().Get("Content-Security-Policy"); !strings.HasPrefix(got, "default-src 'self';") {
			t.Errorf("GET %s: Content-Security-Policy %q, want default-src 'self' first", tt.path, got)
		}
		if got := w.Header().Get("X-Content-Type-Options"); got != "nosniff" {
			t.Errorf("GET %s: X-Content-Type-Options %q, want nosniff", tt.path, got)
		}
	}
}

// Nothing in the page is fetched from elsewhere, and nothing in it needs what the policy
// refuses: no URL with a host (the SVG namespace is a name, not a fetch), no inline script,
// style attribute or event handler, no HTML parsed from strings.
func TestFilesLoadNothingFromElsewhere(t *testing.T) {
	forbidden := []struct {
		name string
		re   *regexp.Regexp
	}{
		{"a URL with a host", regexp.MustCompile(`(?i)(https?:)?//[a-z0-9.-]+\.[a-z]{2,}|@import|url\(`)},
		{"an inline script", regexp.MustCompile(`(?i)<script(\s[^>]*)?>\s*[^<\s]`)},
		{"a script without src", regexp.MustCompile(`(?i)<script(\s+(defer|async|type="[^"]*"))*\s*>`)},
		{"a style element or attribute", regexp.MustCompile(`(?i)<style|\sstyle=`)},
		{"an inline event handler", regexp.MustCompile(`(?i)\son[a-z]+=`)},
		{"HTML parsed from a string", regexp.MustCompile(`innerHTML|outerHTML|insertAdjacentHTML|document\.write|eval\(|new Function`)},
	}
	n := 0
	err := fs.WalkDir(files, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		n++
		b, err := fs.ReadFile(files, path)
		if err != nil {
			return err
		}
		text := strings.ReplaceAll(string(b), `xmlns="http://www.w3.org/2000/svg"`, "")
		for _, f := range forbidden {
			if m := f.re.FindString(text); m != "" {
				t.Errorf("%s has %s: %q", path, f.name, m)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 4 {
		t.Fatalf("found %d files, want index.html, dashboard.js, dashboard.css and favicon.svg", n)
	}
}
