// Package dashboard is the read-only web page a node serves at /ui/ of its HTTP API: the cluster,
// its nodes and their load, the partition map as a grid of cells coloured by primary node, the
// handoffs running and the history of the last maps. It follows the map with the API's long
// poll, so it changes as soon as the node holds another map.
//
// The page is static HTML, CSS and plain JavaScript embedded in the binary: it loads nothing from
// anywhere but the node, and its responses carry a Content-Security-Policy that enforces it. It
// only reads the API (GET /cluster/map, /cluster, /cluster/history, /health).
package dashboard

import (
	"embed"
	"io/fs"
	"net/http"
	"strings"
)

//go:embed static
var static embed.FS

// files are the page's files; fs.Sub fails only for an invalid name, and "static" is valid.
var files, _ = fs.Sub(static, "static")

// Path is where Handler serves the page on the mux it is mounted on: Path+"/" serves the files,
// and Path redirects there.
const Path = "/ui"

// policy is the Content-Security-Policy of every response of Handler: scripts, styles, images
// and requests only from the node itself, no inline script or style, no plugins, no framing,
// and DOM sinks that take HTML refused (the page builds its elements with the DOM API).
const policy = "default-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; " +
	"frame-ancestors 'none'; require-trusted-types-for 'script'"

// Handler serves the dashboard's files at Path+"/" and redirects Path there; mount it on both.
// It serves whatever method it is asked with as a GET: the API's handler refuses the others
// before it is reached. It is safe for concurrent use.
func Handler() http.Handler {
	fileServer := http.StripPrefix(Path, http.FileServerFS(files))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", policy)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		// The files change with the binary: a browser checks again rather than keep an old page.
		h.Set("Cache-Control", "no-cache")
		if !strings.HasPrefix(r.URL.Path, Path+"/") {
			// Relative, so that the redirect also works when the API is mounted under a prefix
			// (the request's path is then not the browser's).
			h.Set("Location", strings.TrimPrefix(Path, "/")+"/")
			w.WriteHeader(http.StatusMovedPermanently)
			return
		}
		fileServer.ServeHTTP(w, r)
	})
}
